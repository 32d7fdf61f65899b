"""The weight-sharing supernet estimator on mnasnet-tiny: shared modules, accuracy off the supernet,
resume after an interruption with the same weights, and the Spearman report."""
import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.search.estimators import get_estimator
from hwnas.search.estimators.supernet import SupernetEstimator
from hwnas.search.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet-tiny")


def make(space, tmp_path, **kw):
    opts = dict(steps=4, batch_size=16, bn_batches=1, validate=3, validate_steps=2, checkpoint_every=2,
                checkpoint=str(tmp_path / "sn.safetensors"))
    opts.update(kw)
    return get_estimator("supernet", space, data="digits", seed=0, **opts)


def test_paths_share_modules_and_estimates_are_accuracies(space, tmp_path):
    est = make(space, tmp_path)
    net = est.supernet()
    assert est.trained_steps_now == 4 and (tmp_path / "sn.safetensors").exists()
    a = space.sample(np.random.default_rng(1))
    b = list(a)
    b[-6] = (b[-6] + 1) % len(space.decisions()[-6].choices)  # another op in the last block only
    pa, _ = net.path(a)
    pb, _ = net.path(tuple(b))
    assert pa[0] is pb[0] and pa[1] is pb[1]  # stem and first block: the same shared modules
    before = {k: v.clone() for k, v in net.state_dict().items()}
    v1, v2 = est.estimate(a), est.estimate(a)
    assert 0.0 <= v1 <= 1.0 and v1 == v2
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # reading leaves the supernet unchanged
    # a second estimator with the same settings reuses the trained supernet
    again = make(space, tmp_path)
    again.supernet()
    assert again.trained_steps_now == 0 and again.estimate(a) == v1


def interrupted(cls, monkeypatch, train, at: int = 4) -> None:
    """`train()` killed (KeyboardInterrupt) when it draws batch `at` of estimator class `cls`; then undone."""
    real = cls._batches
    count = {"n": 0}

    def dying(self, rng):
        for b in real(self, rng):
            count["n"] += 1
            if count["n"] == at:
                raise KeyboardInterrupt
            yield b

    monkeypatch.setattr(cls, "_batches", dying)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(cls, "_batches", real)


def test_resume_after_interruption_gives_the_same_supernet(space, tmp_path, monkeypatch):
    whole = make(space, tmp_path / "a")
    whole.supernet()
    ref = whole.supernet().state_dict()
    # killed during step 4, after the checkpoint of step 2
    interrupted(SupernetEstimator, monkeypatch, lambda: make(space, tmp_path / "b").supernet())
    resumed = make(space, tmp_path / "b")
    net = resumed.supernet()
    assert resumed.trained_steps_now == 2
    got = net.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.allclose(got[k].float(), ref[k].float(), atol=1e-6), k


def test_spearman_report(space, tmp_path):
    est = make(space, tmp_path)
    info = est.info()
    r = info["rank_correlation"]
    assert r["architectures"] == 3 and len(r["pairs"]) == 3
    assert -1.0 <= r["spearman"] <= 1.0
    assert all(0 <= p["supernet"] <= 1 and 0 <= p["short_train"] <= 1 for p in r["pairs"])
    assert list(tmp_path.glob("sn.spearman-*.json"))  # kept beside the checkpoint


def test_bad_options_and_spaces(space, tmp_path):
    with pytest.raises(HwnasError):
        make(space, tmp_path, steps=0)
    with pytest.raises(HwnasError, match="no option"):
        make(space, tmp_path, epochs=3)
    with pytest.raises(HwnasError, match="at least 3"):
        make(space, tmp_path).spearman(n=2)


def test_a_pickled_supernet_checkpoint_is_refused_without_running_it(space, tmp_path):
    from tests.hwnas.test_tensorfile import malicious_torch_file
    marker = tmp_path / "pwned"
    malicious_torch_file(tmp_path / "sn.safetensors", marker)
    with pytest.raises(HwnasError, match="supernet checkpoint .* is a pickle"):
        make(space, tmp_path).supernet()
    assert not marker.exists()
