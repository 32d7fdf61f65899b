"""Files hwnas reads back never execute code: the no-pickle tree format and user state dicts."""
import pickle

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.tensorfile import dumps_tree, load_state_dict_file, load_tree, save_tree


class Boom:
    """Unpickling this runs os.system: the attack a checkpoint file can carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def malicious_pickle(path, marker):
    path.write_bytes(pickle.dumps({"n": 1, "strategy": Boom(marker)}))


def malicious_torch_file(path, marker):
    torch.save({"weight": torch.zeros(2), "x": Boom(marker)}, path)


def test_tree_round_trip_keeps_types(tmp_path):
    rng = np.random.default_rng(3)
    obj = {"n": 7, "f": float("inf"), "s": "x", "none": None, "t": torch.arange(6).reshape(2, 3),
           "a": rng.standard_normal(4).astype(np.float32), "tup": (1, [2, 3]), "int_keys": {0: {"m": torch.ones(2)}},
           "rng": rng.bit_generator.state, "np_scalar": np.float64(2.5), "nested": [{"k": torch.zeros(1)}]}
    save_tree(tmp_path / "f.safetensors", obj, "test")
    back = load_tree(tmp_path / "f.safetensors", "test")
    assert back["n"] == 7 and back["f"] == float("inf") and back["s"] == "x" and back["none"] is None
    assert torch.equal(back["t"], obj["t"]) and isinstance(back["a"], np.ndarray)
    assert np.array_equal(back["a"], obj["a"]) and back["tup"] == (1, [2, 3])
    assert list(back["int_keys"]) == [0] and torch.equal(back["int_keys"][0]["m"], torch.ones(2))
    assert back["rng"] == obj["rng"] and back["np_scalar"] == 2.5
    r2 = np.random.default_rng(0)
    r2.bit_generator.state = back["rng"]
    assert r2.random() == rng.random()


def test_tree_names_tensors_by_their_path(tmp_path):
    from safetensors.torch import load_file
    save_tree(tmp_path / "f.safetensors", {"state": {"conv.weight": torch.ones(2)}}, "test")
    assert list(load_file(str(tmp_path / "f.safetensors"))) == ["state/conv.weight"]


def test_a_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    malicious_pickle(tmp_path / "ckpt", marker)
    with pytest.raises(HwnasError, match="is a pickle.*no longer loads pickles"):
        load_tree(tmp_path / "ckpt", "search-strategy")
    malicious_torch_file(tmp_path / "ckpt.pt", marker)
    with pytest.raises(HwnasError, match="is a pickle"):
        load_tree(tmp_path / "ckpt.pt", "search-strategy")
    assert not marker.exists()


def test_wrong_kind_damaged_and_missing_files(tmp_path):
    p = tmp_path / "f.safetensors"
    p.write_bytes(dumps_tree({"x": 1}, "supernet"))
    with pytest.raises(HwnasError, match="holds a 'supernet', not a 'search-strategy'"):
        load_tree(p, "search-strategy")
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(HwnasError, match="damaged or not an hwnas file"):
        load_tree(p, "supernet")
    from safetensors.torch import save_file
    save_file({"w": torch.ones(1)}, str(p))
    with pytest.raises(HwnasError, match="not an hwnas checkpoint"):
        load_tree(p, "supernet")
    with pytest.raises(HwnasError, match="does not exist"):
        load_tree(tmp_path / "nope", "supernet")


def test_user_weights_state_dicts_load_and_modules_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    net = torch.nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    from safetensors.torch import save_file
    save_file(net.state_dict(), str(tmp_path / "sd.safetensors"))
    for f in ("sd.pt", "ckpt.pt", "sd.safetensors"):
        sd = load_state_dict_file(tmp_path / f)
        assert set(sd) == {"weight", "bias"} and torch.equal(sd["weight"], net.weight.detach())
    torch.save(net, tmp_path / "module.pt")
    with pytest.raises(HwnasError, match=r"hold more than tensors.*model.state_dict\(\)"):
        load_state_dict_file(tmp_path / "module.pt")
    malicious_torch_file(tmp_path / "evil.pt", marker)
    with pytest.raises(HwnasError, match="hold more than tensors"):
        load_state_dict_file(tmp_path / "evil.pt")
    malicious_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(HwnasError):
        load_state_dict_file(tmp_path / "evil.pkl")
    (tmp_path / "garbage.pt").write_bytes(b"not weights at all")
    with pytest.raises(HwnasError, match="not a torch state dict"):
        load_state_dict_file(tmp_path / "garbage.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"xx")
    with pytest.raises(HwnasError, match="not a valid safetensors"):
        load_state_dict_file(tmp_path / "bad.safetensors")
    assert not marker.exists()


def test_a_header_length_starting_like_a_pickle_is_still_read(tmp_path):
    """A safetensors header length whose first byte is 0x80 (a pickle's first byte) is not taken for one."""
    for n in range(600):
        data = dumps_tree({"x": "y" * n, "t": torch.ones(1)}, "test")
        if data[0] == 0x80:
            (tmp_path / "f").write_bytes(data)
            assert load_tree(tmp_path / "f", "test")["x"] == "y" * n
            return
    pytest.fail("no header length starting with 0x80 was produced")
