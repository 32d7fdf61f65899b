"""A space's missing ops predicted from the kernel table (hwnas.latency.space_fill), on the real cpu device with the
small kernel table of the session (the `built` fixture) and a real micro space table."""
import shutil

import numpy as np
import pytest
from torch import nn

from hwnas.errors import HwnasError
from hwnas.search.spaces.base import Decision, OpSpec, Space
from hwnas.search.spaces.mnasnet import MnasNetConfig, MnasNetSpace
from tests.latency.lut_helpers import fast_build

SPACE = "fill-micro"


def micro_space(name=SPACE) -> MnasNetSpace:
    """lut_helpers.micro_space without residual adds (the session's small kernel table has too few add samples to
    predict a standalone add): a dozen ops, 16x16."""
    cfg = MnasNetConfig(input_size=16, num_classes=4, stem=8, head=16, blocks=((8, 1, 1), (16, 1, 2)),
                        ops=("dwconv", "mbconv3"), kernels=(3, 5), se_ratios=(0.0,), skips=("none",),
                        width_mults=(1.0,), layer_deltas=(0, 1))
    return MnasNetSpace(cfg, name=name)


def copy_db(built, tmp_path):
    """A private copy of the session's kernel table (fills write into the database)."""
    src, _ = built
    dst = tmp_path / "k.db"
    from hwnas.latency.lut.store import LutStore
    LutStore(src).db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(src, dst)
    return dst


from hwnas.latency.kernels import decompose as REAL_DECOMPOSE  # noqa: E402 (wrapped by the tests below)


class Stop(Exception):
    """The fill stopped from outside (a kill, in spirit)."""


def counting_decompose(monkeypatch, fail_after=None):
    """Count (and optionally fail after `fail_after`) the decompositions the fill makes."""
    import hwnas.latency.kernels as kernels
    real, calls = REAL_DECOMPOSE, []

    def wrapped(*a, **kw):
        if fail_after is not None and len(calls) >= fail_after:
            raise Stop("stopped")
        calls.append(a[1])
        return real(*a, **kw)
    monkeypatch.setattr(kernels, "decompose", wrapped)
    return calls


def test_no_table_every_op_and_the_correction_from_kernels(built, tmp_path, monkeypatch):
    from hwnas.latency.space_fill import kernel_filled
    db, space = copy_db(built, tmp_path), micro_space()
    calls = counting_decompose(monkeypatch)
    p = kernel_filled(space, "cpu", db, fit_networks=4, show_progress=False, log=lambda m: None)
    n_ops = len(space.all_ops())
    assert p.sources["ops_from_kernels"] == n_ops and p.sources["ops_from_table"] == 0
    assert sorted(p.sources["kernel_ops"]) == sorted(s.key for s in space.all_ops())
    assert "predicted from kernels" in p.sources["correction"] and p.correction["n_networks"] == 4
    assert p.sources["calibration"].startswith("none")
    assert len(calls) == n_ops + 4  # every op, then the fit networks
    assert np.all(p.table[:-1] > 0)
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(8)]
    assert [int(k) for k in p.kernel_ops(archs)] == [len(space.ops(a)) for a in archs]
    assert np.all(p.predict_batch(archs) > 0)
    # a rerun predicts nothing again: every op and network is stored
    again = kernel_filled(space, "cpu", db, fit_networks=4, show_progress=False, log=lambda m: None)
    assert len(calls) == n_ops + 4
    np.testing.assert_array_equal(again.table, p.table)
    assert again.correction["a"] == p.correction["a"]


def test_a_partial_table_keeps_its_timed_ops_and_correction(built, tmp_path, monkeypatch):
    from hwnas.latency.lut import build_lut
    from hwnas.latency.lut.store import LutStore
    from hwnas.latency.predict import LatencyPredictor
    from hwnas.latency.space_fill import kernel_filled
    db, space = copy_db(built, tmp_path), micro_space()
    build_lut(space, "cpu", db, **fast_build(fit_networks=3))
    whole = LatencyPredictor.for_space(space, "cpu", db)
    assert whole.sources["ops_from_kernels"] == 0 and "3 measured networks" in whole.sources["correction"]
    gone = [s.key for s in space.all_ops()][2:4]
    store = LutStore(db)
    for k in gone:
        store.db.execute("DELETE FROM measurements WHERE key=?", (k,))
    with pytest.raises(HwnasError, match="lacks 2 of"):
        LatencyPredictor.for_space(space, "cpu", db)
    calls = counting_decompose(monkeypatch)
    p = kernel_filled(space, "cpu", db, show_progress=False, log=lambda m: None)
    timed = len(space.all_ops()) - 2
    assert len(calls) == 2 + timed  # the missing ops, and the timed ones for the calibration; no network
    assert p.sources["kernel_ops"] == gone and p.sources["ops_from_table"] == timed
    assert p.correction == whole.correction and "3 measured networks" in p.sources["correction"]
    assert f"over {timed} timed ops" in p.sources["calibration"]
    keys = [s.key for s in space.all_ops()]
    raw = {k: ms for k, ms in LutStore(db).db.execute("SELECT item, ms FROM kernel_fills")}
    kept = [i for i, k in enumerate(keys) if k not in gone]
    a, c = np.polyfit([raw[keys[i]] for i in kept], [whole.table[i] for i in kept], 1)
    if a <= 0:  # the fallback: the ratio of the sums
        a, c = sum(whole.table[i] for i in kept) / sum(raw[keys[i]] for i in kept), 0.0
    for i, k in enumerate(keys):
        if k in gone:
            assert p.table[i] == pytest.approx(max(a * raw[k] + c, 0.05 * a * raw[k])) and p.from_kernels[i]
        else:
            assert p.table[i] == whole.table[i] and not p.from_kernels[i]
    arch = next(a for a in (space.sample(np.random.default_rng(s)) for s in range(200))
                if any(o.key in gone for o in space.ops(a)))
    assert p.kernel_ops([arch])[0] == sum(o.key in gone for o in space.ops(arch))


def test_a_table_with_too_few_timed_ops_gets_its_correction_from_kernel_predicted_networks(built, tmp_path):
    from hwnas.latency.lut import build_lut
    from hwnas.latency.lut.store import LutStore
    from hwnas.latency.space_fill import MIN_CALIBRATION, kernel_filled
    db, space = copy_db(built, tmp_path), micro_space()
    build_lut(space, "cpu", db, **fast_build(fit_networks=3))
    keys = [s.key for s in space.all_ops()]
    LutStore(db).db.executemany("DELETE FROM measurements WHERE key=?", [(k,) for k in keys[MIN_CALIBRATION - 1:]])
    p = kernel_filled(space, "cpu", db, fit_networks=3, show_progress=False, log=lambda m: None)
    assert p.sources["ops_from_table"] == MIN_CALIBRATION - 1
    assert p.sources["calibration"].startswith("none") and "predicted from kernels" in p.sources["correction"]


def test_an_interrupted_fill_resumes_without_predicting_twice(built, tmp_path, monkeypatch):
    from hwnas.latency.space_fill import kernel_filled
    db, space = copy_db(built, tmp_path), micro_space()
    first = counting_decompose(monkeypatch, fail_after=3)
    with pytest.raises(Stop):
        kernel_filled(space, "cpu", db, fit_networks=3, show_progress=False, log=lambda m: None)
    assert len(first) == 3
    second = counting_decompose(monkeypatch)
    p = kernel_filled(space, "cpu", db, fit_networks=3, show_progress=False, log=lambda m: None)
    assert len(second) == len(space.all_ops()) - 3 + 3  # the ops left, then the fit networks
    assert p.sources["ops_from_kernels"] == len(space.all_ops())


class CumSum(nn.Module):
    def forward(self, x):
        return x.cumsum(1)


class CumSumSpace(Space):
    """One op no kernel kind covers: a running sum over channels (onnxruntime's CumSum)."""
    name = "cumsum-space"
    input_size = 16
    num_classes = 4

    def decisions(self):
        return [Decision("size", (3,))]

    def _op(self):
        return OpSpec("cumsum-in:16x16x8", (1, 8, 16, 16), CumSum)

    def ops(self, arch):
        return [self._op()]

    def all_ops(self):
        return [self._op()]

    def build(self, arch, num_classes=None):
        return self._op().builder()

    def sample(self, rng):
        return (0,)


def test_an_op_with_an_unpredictable_kernel_is_an_error_naming_it(built, tmp_path):
    from hwnas.latency.space_fill import kernel_filled
    db = copy_db(built, tmp_path)
    with pytest.raises(HwnasError, match=r"op 'cumsum-in:16x16x8'.*cannot be predicted.*CumSum"):
        kernel_filled(CumSumSpace(), "cpu", db, show_progress=False, log=lambda m: None)


def test_no_kernel_table_says_how_to_build_one(tmp_path):
    from hwnas.latency.space_fill import kernel_filled
    with pytest.raises(HwnasError, match="hwnas lut kernels --device cpu"):
        kernel_filled(micro_space(), "cpu", tmp_path / "empty.db", show_progress=False, log=lambda m: None)


def test_a_device_without_visible_kernels_is_refused(tmp_path):
    from hwnas.latency.space_fill import kernel_filled
    with pytest.raises(HwnasError, match="torch-cpu"):
        kernel_filled(micro_space(), "torch-cpu", tmp_path / "k.db", show_progress=False, log=lambda m: None)


def test_search_cli_with_missing_ops_from_kernels_says_which_figures_were_predicted(built, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from hwnas.cli import cli
    from hwnas.search.spaces import SPACES
    from tests.schema_check import check, load, problems
    monkeypatch.setitem(SPACES._items, SPACE, lambda **kw: micro_space())
    db, out = copy_db(built, tmp_path), tmp_path / "run"
    args = ["search", "--space", SPACE, "--db", str(db), "--target", "10ms", "--samples", "3", "--top-k", "1",
            "--out", str(out), "--json", "-"]
    refused = CliRunner().invoke(cli, args + ["--no-build"])
    # as before: with --no-build a missing table is not built
    assert refused.exit_code != 0 and "lacks 14 of 14 ops" in str(refused.exception)
    r = CliRunner().invoke(cli, args + ["--missing-ops", "kernels"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    check(s, "search")
    assert problems(s, load("search")) == []
    src = s["latency_sources"]
    assert src["ops_from_table"] == 0 and src["ops_from_kernels"] == len(micro_space().all_ops())
    assert "predicted from kernels" in src["correction"]
    assert s["config"]["missing_ops"] == "kernels"
    for rec in s["top_k"]:
        assert rec["kernel_ops"] == len(micro_space().ops(rec["arch"])) and rec["measured_ms"] > 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(rec["kernel_ops"] > 0 for rec in samples)


def test_the_calibration_line_and_its_fallbacks():
    from hwnas.latency.space_fill import FLOOR, _calibrated, _calibration
    pred = np.array([0.1, 0.5, 1.0, 4.0])
    a, c = _calibration(pred, 0.8 * pred - 0.02)
    assert (a, c) == (pytest.approx(0.8), pytest.approx(-0.02))
    assert _calibrated(2.0, (a, c)) == pytest.approx(1.58)
    assert _calibrated(0.01, (a, c)) == pytest.approx(FLOOR * a * 0.01)  # never below a share of the prediction
    timed = np.array([4.0, 2.0, 1.0, 0.5])  # a falling line: the ratio of the sums instead
    assert _calibration(pred, timed) == (pytest.approx(timed.sum() / pred.sum()), 0.0)
