"""`hwnas train`: a network trained stand-alone at the training size, exported and measured at the deployment
size; a killed run resumes to the very weights of an uninterrupted one; bad input is one line."""
import json

import pytest
import torch
from safetensors.torch import load_file

import hwnas.tensorfile as tensorfile
from hwnas.train_run import TrainConfig, train_network
from tests.cli_helpers import assert_one_line_error, hwnas

ARCH = [0, 0, 0, 1, 0, 0] * 7  # mnasnet-tiny: dwconv k3, no SE, no skip, one layer per block


def config(out, **kw):
    return TrainConfig(**{"space": "mnasnet-tiny", "arch": ARCH, "steps": 12, "batch_size": 32,
                          "checkpoint_every": 4, "train_size": 16, "out": str(out), "train_device": "cpu", **kw})


def test_train_export_and_measure(tmp_path):
    s = train_network(config(tmp_path / "run"), log=lambda m: None, show_progress=False)
    assert s["train_size"] == 16 and s["input_size"] == 32 and 0.0 <= s["top1"] <= 1.0
    assert s["latency_ms"] > 0 and s["latency_statistic"]
    files = s["files"]
    import onnx
    m = onnx.load(files["onnx"])
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]  # exported at the deployment size
    from hwnas.search.spaces import get_space
    assert set(load_file(files["weights"])) == set(get_space("mnasnet-tiny").build(tuple(ARCH), num_classes=10)
                                                   .state_dict())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["top1"] == s["top1"]


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    train_network(config(whole), log=lambda m: None, show_progress=False)
    real = tensorfile.save_tree
    saved = []

    def dying(path, obj, kind):
        real(path, obj, kind)
        saved.append(obj["step"])
        if obj["step"] == 8:
            raise KeyboardInterrupt  # killed right after the checkpoint of step 8

    monkeypatch.setattr(tensorfile, "save_tree", dying)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_network(config(cut), log=lambda m: None, show_progress=False)
    monkeypatch.setattr(tensorfile, "save_tree", real)
    assert saved == [4, 8]
    with pytest.raises(Exception, match="resume"):
        train_network(config(cut), log=lambda m: None, show_progress=False)
    logs = []
    train_network(config(cut, resume=True), log=logs.append, show_progress=False)
    assert any("at step 8 of 12" in m for m in logs)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_measure_false_trains_and_scores_without_export_or_timing(tmp_path):
    s = train_network(config(tmp_path / "run", measure=False), log=lambda m: None, show_progress=False)
    assert 0.0 <= s["top1"] <= 1.0 and "latency_ms" not in s and set(s["files"]) == {"weights"}
    assert sorted(p.name for p in (tmp_path / "run").glob("model.*")) == ["model.safetensors"]


@pytest.mark.parametrize("args,match", [
    (["--model", "mobilenet_v2", "--space", "mnasnet"], "one network"),
    (["--space", "mnasnet"], "--arch"),
    (["--space", "mnasnet", "--arch", "[0, 1"], "JSON list"),
    (["--space", "mnasnet-tiny", "--arch", "[0, 1]"], "42 decisions"),
    (["--model", "resnet18", "--width", "0.5"], "no width multiplier"),
    (["--model", "nonet"], "unknown model"),
    (["--run", "nowhere"], "not a finished search run"),
    (["--model", "mobilenet_v2", "--sample", "2"], "--run"),
])
def test_bad_input_is_one_line(args, match, tmp_path):
    assert_one_line_error(hwnas("train", "--out", str(tmp_path / "run"), *args), match)
