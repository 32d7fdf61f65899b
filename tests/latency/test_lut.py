import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.lut import LutStore, build_lut
from hwnas.latency.lut.build import time_ops
from hwnas.latency.lut.store import space_id
from hwnas.latency.measure import Measurement
from hwnas.latency.predict import IDENTITY, LatencyPredictor
from hwnas.search.spaces import get_space
from hwnas.search.spaces.mnasnet import effective_skip
from tests.cli_helpers import hwnas
from tests.latency.lut_helpers import SingleOpSpace, fast_build, fast_protocol, micro_space

FAST = fast_build(rounds=2, runs=3)


# -- keys ------------------------------------------------------------------------------------------------
def test_skip_canonicalisation():
    assert effective_skip("identity", 16, 24, 1) == "none"       # shapes differ: no residual possible
    assert effective_skip("identity", 16, 16, 2) == "none"
    assert effective_skip("pool", 16, 16, 1) == "identity"       # pooling shortcut between equal shapes
    assert effective_skip("pool", 16, 24, 2) == "pool"
    assert effective_skip("none", 16, 16, 1) == "none"


def test_keys_are_canonical_unique_and_match_the_network():
    space = get_space("mnasnet")
    keys = [op.key for op in space.all_ops()]
    assert len(keys) == len(set(keys))
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)]
    idx = space.op_indices(np.array(archs))
    for a, row in zip(archs, idx):
        assert [keys[i] for i in row if i >= 0] == [op.key for op in space.ops(a)]
    first = space.ops(archs[0])[1].key
    assert first.split("-")[0] in {"conv", "dwconv", "mbconv1", "mbconv3", "mbconv6"}
    assert "-in:112x112x32-" in first and "-s:1-" in first


def test_a_network_is_exactly_its_ops():
    import torch
    space = get_space("mnasnet-tiny")
    arch = space.sample(np.random.default_rng(3))
    torch.manual_seed(0)
    net = space.build(arch).eval()
    x = torch.randn(1, 3, 32, 32)
    y = x
    for layer in net:
        y = layer(y)
    assert torch.equal(y, net(x)) and len(net) == len(space.ops(arch))


# -- store -----------------------------------------------------------------------------------------------
def fake_fp(key="f1"):
    return {"key": key, "runtime": "onnxruntime", "runtime_version": "1"}


def lat(*rounds):
    """A settled measurement whose counted rounds read `rounds` (ms)."""
    from hwnas.latency.protocol import Latency, combine, halves
    return Latency(ms=combine(rounds), statistic="calibrated median", segments_ms=list(rounds),
                   halves_ms=halves(rounds), stopped_by="agreement", reruns={},
                   raw=Measurement.from_samples(list(rounds)))


def test_a_settled_measurement_is_stored_in_one_go_and_once(tmp_path):
    s = LutStore(tmp_path / "t.db")
    assert s.put_latency(fake_fp(), "ort", "op-a", lat(2.2, 1.9, 2.6)) == 3
    assert s.put_latency(fake_fp(), "ort", "op-a", lat(1.0, 1.0)) == 0   # the same (fingerprint, op, rounds): ignored
    assert s.values("f1") == {"op-a": pytest.approx(2.2)}   # the protocol's statistic: the median of its rounds
    assert s.get("f1", "op-a")["value_ms"] == pytest.approx(2.2) and s.get("f1", "op-a")["rounds"] == 3
    assert s.count("f1") == 3
    assert s.put_network_latency("f1", "sp", (1, 2), "fit", lat(2.1, 1.9, 2.0)) == 3
    assert s.networks("f1", "sp", "fit") == {(1, 2): {0: 2.1, 1: 1.9, 2: 2.0}}


def test_export_import_round_trip(tmp_path):
    src = LutStore(tmp_path / "a.db")
    for i in range(5):
        src.put_latency(fake_fp(), "ort", f"op-{i}", lat(1.0 + i, 1.1 + i))
    src.put_correction("f1", "micro", {"a": 0.9, "b": 0.01, "c": 0.1, "n_networks": 3})
    for suffix in ("csv", "json"):
        path = tmp_path / f"lut.{suffix}"
        assert src.export(path) == 10
        dst = LutStore(tmp_path / f"b-{suffix}.db")
        assert dst.import_(path) == 10
        assert dst.import_(path) == 0  # importing again adds nothing
        assert dst.values("f1") == pytest.approx(src.values("f1"))
        assert dst.rows("f1") == src.rows("f1")
    assert LutStore(tmp_path / "b-json.db").get_correction("f1", "micro")["a"] == 0.9


def test_import_refuses_another_fingerprint_unless_asked(tmp_path):
    src = LutStore(tmp_path / "a.db")
    src.put_latency(fake_fp("phone"), "litert", "op-a", lat(3.0, 3.1))
    src.export(tmp_path / "phone.json")
    dst = LutStore(tmp_path / "b.db")
    with pytest.raises(HwnasError, match="refusing to mix"):
        dst.import_(tmp_path / "phone.json", expect_fingerprint="mine")
    assert dst.count() == 0
    assert dst.import_(tmp_path / "phone.json", expect_fingerprint="mine", allow_mixed=True, fingerprint=fake_fp("mine")) == 2
    assert dst.values("mine") == {"op-a": pytest.approx(3.05)}


def test_bad_import_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(HwnasError, match="not a latency table export"):
        LutStore(tmp_path / "x.db").import_(bad)


# -- build, predict ---------------------------------------------------------------------------------------
def test_predictor_is_exact_on_a_network_of_a_single_op(tmp_path):
    space, dev = SingleOpSpace(), get_device("cpu")
    store = LutStore(tmp_path / "t.db")
    time_ops(dev, space.all_ops(), store, description="ops", show_progress=False, protocol=fast_protocol())
    store.put_correction(dev.fingerprint_key(), space_id(space), {**IDENTITY, "model": "identity"})  # on purpose
    p = LatencyPredictor.for_space(space, dev, store=store)
    values = store.values(dev.fingerprint_key())
    for arch in [(0,), (1,)]:
        (op,) = space.ops(arch)
        assert p.predict(arch) == values[op.key]  # identity correction: the table entry itself
    assert p.min_latency() == min(values.values())


def test_missing_table_and_foreign_fingerprint_are_clear_errors(tmp_path):
    space = micro_space()
    store = LutStore(tmp_path / "t.db")
    with pytest.raises(HwnasError, match=r"lacks \d+ of \d+ ops.*hwnas lut build --device cpu --space micro"):
        LatencyPredictor.for_space(space, get_device("cpu"), store=store)
    other = get_device("cpu-all")
    time_ops(other, space.all_ops(), store, description="ops", show_progress=False, protocol=fast_protocol(2, 2, 0))
    if other.fingerprint_key() == get_device("cpu").fingerprint_key():
        pytest.skip("cpu-all has one thread on this machine: same fingerprint as cpu")
    with pytest.raises(HwnasError, match="not mixed in unless you ask"):
        LatencyPredictor.for_space(space, get_device("cpu"), store=store)
    store.put_correction(other.fingerprint_key(), space_id(space), dict(IDENTITY))  # the other table is finished
    p = LatencyPredictor.for_space(space, get_device("cpu"), store=store, allow_mixed=True)
    assert p.fingerprint_key == other.fingerprint_key()


def test_build_predicts_and_corrects(tmp_path):
    space, dev = micro_space(), get_device("cpu")
    rep = build_lut(space, dev, tmp_path / "t.db", fit_networks=6, show_progress=False, log=lambda m: None, **FAST)
    assert rep.measured == rep.ops and rep.skipped == 0 and rep.networks == 6
    assert LutStore(tmp_path / "t.db").count(dev.fingerprint_key()) == rep.ops * 2   # 2 counted rounds per op
    again = build_lut(space, dev, tmp_path / "t.db", fit_networks=6, show_progress=False, log=lambda m: None, **FAST)
    assert again.measured == 0 and again.skipped == rep.ops and again.networks == 0
    p = LatencyPredictor.for_space(space, dev, db_path=tmp_path / "t.db")
    assert p.correction["n_networks"] == 6
    archs = np.array([space.sample(np.random.default_rng(i)) for i in range(20)])
    batch = p.predict_batch(archs)
    assert batch.shape == (20,) and np.all(batch > 0)
    assert p.predict(tuple(archs[0])) == pytest.approx(batch[0])
    assert p.min_latency() <= batch.min() + 1e-12


def test_fit_correction_recovers_known_coefficients():
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 2.5])
    n = np.array([3, 4, 5, 6, 7, 9])
    y = 0.8 * s + 0.05 * n + 0.3
    c = LatencyPredictor.fit_correction(s, n, y)
    assert c["model"] == "affine"
    assert c["a"] == pytest.approx(0.8) and c["b"] == pytest.approx(0.05) and c["c"] == pytest.approx(0.3)


def test_fit_correction_keeps_the_bare_sum_when_a_fit_does_not_generalise():
    rng = np.random.default_rng(0)
    s = rng.uniform(5, 20, 12)
    n = rng.integers(10, 30, 12)
    y = s * (1 + rng.normal(0, 0.05, 12))  # the bare sum is right up to noise
    c = LatencyPredictor.fit_correction(s, n, y)
    assert c["model"] in ("identity", "scale") and set(c["loo_mean_abs_pct"]) == {"identity", "scale", "affine"}
    assert c["loo_mean_abs_pct"][c["model"]] == min(c["loo_mean_abs_pct"].values())
    y2 = 1.3 * s                          # a clean scale: chosen and recovered
    c2 = LatencyPredictor.fit_correction(s, n, y2)
    assert c2["model"] in ("scale", "affine") and c2["a"] == pytest.approx(1.3, rel=1e-6)


BUILD_SCRIPT = textwrap.dedent("""
    import sys
    from hwnas.latency.devices import get_device
    from hwnas.latency.lut import LutStore
    from hwnas.latency.lut.build import time_ops
    from tests.latency.lut_helpers import fast_protocol, micro_space
    space = micro_space()
    time_ops(get_device("cpu"), space.all_ops(), LutStore(sys.argv[1]),
             protocol=fast_protocol(int(sys.argv[2]), int(sys.argv[3])), description="ops", show_progress=False)
""")


def _build_proc(db, rounds=2, runs=3):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(db), str(rounds), str(runs)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_resume_after_sigkill_loses_nothing_and_duplicates_nothing(tmp_path):
    db = tmp_path / "t.db"
    space, fp = micro_space(), get_device("cpu").fingerprint_key()
    expected = {(op.key, r) for op in space.all_ops() for r in range(2)}
    proc = _build_proc(db, runs=40)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if db.exists() and 3 <= LutStore(db).count(fp) < len(expected):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = LutStore(db).count(fp)
    assert 3 <= partial < len(expected)
    rerun = _build_proc(db, runs=40)
    assert rerun.wait(600) == 0
    rows = LutStore(db).rows(fp)
    assert len(rows) == len(expected) and {(r["key"], r["round"]) for r in rows} == expected


@pytest.mark.slow
def test_two_processes_write_one_database(tmp_path):
    db = tmp_path / "t.db"
    procs = [_build_proc(db), _build_proc(db)]
    assert [p.wait(600) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    space, fp = micro_space(), get_device("cpu").fingerprint_key()
    rows = LutStore(db).rows(fp)
    assert len(rows) == len(space.all_ops()) * 2
    assert len({(r["key"], r["round"]) for r in rows}) == len(rows)


@pytest.mark.slow
def test_cli_build_validate_export_import(tmp_path):
    env = {**os.environ, "HWNAS_NO_PROGRESS": "1"}
    db = str(tmp_path / "t.db")

    def run(*args):
        return hwnas(*args, env=env)
    r = run("lut", "build", "--space", "mnasnet-tiny", "--db", db, "--rounds", "2", "--runs", "2", "--warmup", "0",
            "--fit-networks", "4", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ops"] == len(get_space("mnasnet-tiny").all_ops())
    r = run("lut", "validate", "--space", "mnasnet-tiny", "--db", db, "--samples", "4", "--rounds", "2",
            "--runs", "3", "--plot", str(tmp_path / "v.png"), "--json", "-")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["predictor"]["n"] == 4 and 0 <= rep["predictor"]["within_10pct"] <= 1
    assert set(rep["noise_floor"]) >= {"within_5pct", "within_10pct", "rmse_ms", "spearman"}
    assert (tmp_path / "v.png").stat().st_size > 1000
    assert run("lut", "export", str(tmp_path / "t.csv"), "--db", db).returncode == 0
    r = run("lut", "import", str(tmp_path / "t.csv"), "--db", str(tmp_path / "other.db"), "--device", "cpu")
    assert r.returncode == 0 and "imported" in r.stdout
    r = run("lut", "validate", "--space", "mnasnet", "--db", db, "--samples", "2")
    assert r.returncode != 0 and r.stderr.startswith("Error: ") and "hwnas lut build" in r.stderr
