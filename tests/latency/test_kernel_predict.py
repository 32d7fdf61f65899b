"""Prediction from a kernel table (the session's small table, built on the real cpu device): a zoo network
predicted in full with every kernel's source, regressors refitted from the stored samples on load (no pickle)
giving the same figures, a table imported elsewhere predicting the same, and ops that cannot be predicted listed by
name, never counted as 0 ms."""
import json

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency import kernel_predict
from hwnas.latency.devices import get_device
from hwnas.latency.kernel_predict import KernelPredictor, predict_latency
from hwnas.latency.lut import LutStore
from hwnas.latency.lut.kernel_table import KernelTable
from tests.latency.test_kernels import CumulativeNet


def test_a_zoo_network_is_predicted_in_full_with_each_kernel_s_source(built):
    db, _ = built
    p = predict_latency("cpu", "resnet18", (1, 3, 64, 64), db=db)
    assert p.complete and p.unpredictable == []
    assert len(p.rows) == 25 and all(r["ms"] > 0 for r in p.rows)
    assert {r["kind"] for r in p.rows} == {"conv", "maxpool", "gap", "reorder", "reshape", "fc"}
    assert all(r["source"].startswith(f"kernel table: {r['kind']} forest on ") for r in p.rows)
    assert p.raw_ms == pytest.approx(p.overhead_ms + sum(r["ms"] for r in p.rows))
    assert p.nodes == 25 and p.overhead_ms >= 0
    assert 0 < p.ms < 100  # a 64x64 resnet18 runs in a few ms here: the figure is a latency, not a sum of junk


def test_a_bigger_input_is_predicted_slower(built):
    db, _ = built
    small = predict_latency("cpu", "mobilenet_v2", (1, 3, 64, 64), db=db).ms
    big = predict_latency("cpu", "mobilenet_v2", (1, 3, 160, 160), db=db).ms
    assert big > 2 * small


def test_the_regressors_are_refitted_from_stored_samples_on_load(built, tmp_path):
    db, rep = built
    dev = get_device("cpu")
    kernel_predict._CACHE.clear()
    first = KernelPredictor.load(dev, db)
    kernel_predict._CACHE.clear()
    second = KernelPredictor.load(dev, db)
    assert first is not second  # fitted again, from the samples
    from hwnas.latency.kernels import decompose
    kernels = decompose(dev, "resnet18", (1, 3, 64, 64)).kernels
    a = [ms for ms, _ in first.kernel_ms(kernels)]
    assert a == [ms for ms, _ in second.kernel_ms(kernels)]
    # the database holds samples and measurements only: no model object, nothing to unpickle
    cols = LutStore(db).db.execute("SELECT name FROM sqlite_master WHERE sql LIKE '%BLOB%'").fetchall()
    assert cols == []
    # a table exported and imported into another database predicts the same
    out = tmp_path / "k.json"
    LutStore(db).export(out)
    other = tmp_path / "other.db"
    LutStore(other).import_(out)
    third = KernelPredictor.load(dev, other)
    assert [ms for ms, _ in third.kernel_ms(kernels)] == a
    assert third.overhead == first.overhead and third.correction == first.correction


def test_an_op_no_kernel_kind_covers_is_listed_and_the_figure_is_a_lower_bound(built):
    db, _ = built
    p = predict_latency("cpu", CumulativeNet().eval(), (1, 3, 16, 16), db=db)
    assert not p.complete
    assert [u["op"] for u in p.unpredictable] == ["ai.onnx:CumSum"] and p.unpredictable[0]["name"]
    assert p.raw_ms == pytest.approx(p.overhead_ms + sum(r["ms"] for r in p.rows))  # the CumSum is not in it as 0


def test_a_kind_without_enough_samples_is_listed_not_guessed(built):
    db, _ = built
    dev = get_device("cpu")
    full = KernelPredictor.load(dev, db)
    kinds = {k: m for k, m in full.kinds.items() if k != "fc"}
    lacking = KernelPredictor(full.fingerprint, full.overhead, kinds, dict(full.counts, fc=2), full.rules,
                              correction=full.correction)
    from hwnas.latency.kernels import decompose
    p = lacking.predict_decomposition(decompose(dev, "resnet18", (1, 3, 64, 64)))
    assert [(u["op"], u["why"]) for u in p.unpredictable] == [
        ("ai.onnx:Gemm", "only 2 fc samples in the table (a regressor needs 5)")]
    assert [r["ms"] for r in p.rows if r["kind"] == "fc"] == [None]


def test_no_kernel_table_is_one_clear_error(tmp_path):
    with pytest.raises(HwnasError, match="no kernel table for device 'cpu'.*hwnas lut kernels --device cpu"):
        predict_latency("cpu", "resnet18", (1, 3, 32, 32), db=tmp_path / "empty.db")


def test_out_of_bag_errors_are_relative_and_per_sample(built):
    db, _ = built
    p = KernelPredictor.load(get_device("cpu"), db)
    errs = p.oob_errors()
    assert set(errs) == set(p.kinds)
    conv = np.array([e for e, _ in errs["conv"]])
    assert len(conv) == p.kinds["conv"].n and np.all(conv >= 0) and np.isfinite(conv).all()
    assert "conv" in p.describe_errors(0.1)


def test_the_kernel_sum_is_corrected_on_the_table_s_fit_networks(built):
    from tests.latency.kernel_helpers import FIT
    db, rep = built
    assert rep.fit_networks == FIT and rep.networks == FIT
    p = KernelPredictor.load(get_device("cpu"), db)
    c = p.correction
    # fitted on the fit networks whose every kernel the (small) table can predict, and only those
    from hwnas.latency.kernels import Kernel
    usable = 0
    for net in KernelTable(db).networks(rep.fingerprint):
        d = json.loads(net["json"])
        ks = [Kernel(k["name"], k["op"], k["kind"], tuple(k["config"].items())) for k in d["kernels"]]
        usable += not d["unsupported"] and all(ms is not None for ms, _ in p.kernel_ms(ks))
    assert c["n_networks"] == usable >= 2 and c["model"] in ("identity", "scale", "affine")
    pred = predict_latency("cpu", "resnet18", (1, 3, 64, 64), db=db)
    assert pred.correction == c
    assert pred.ms == pytest.approx(c["a"] * pred.raw_ms + c["b"] * pred.nodes + c["c"])
    assert pred.raw_ms == pytest.approx(pred.overhead_ms + sum(r["ms"] for r in pred.rows))
