"""Kernel tables: a small build on the real cpu device (onnxruntime), stored in real SQLite; every planned bundle
of kernel configurations measured once, a rerun measuring nothing, resume after SIGKILL with nothing lost or stored twice, the fusions
recorded, adaptive rounds planned near the kernels the regressors get wrong, and export / import (checked whole)."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.kernel_models import SHARES, bundle_key, bundles
from hwnas.latency.lut import LutStore
from hwnas.latency.lut.kernel_table import KernelTable, adaptive_plan, build_kernels, initial_plan, model_groups
from tests.latency.lut_helpers import fast_protocol
from tests.latency.kernel_helpers import SMALL, SMALL_LITERT

def test_a_build_measures_every_planned_bundle_once_and_a_rerun_measures_none(built):
    db, rep = built
    table = KernelTable(db)
    fp = get_device("cpu").fingerprint()["key"]
    groups = [b for r in table.planned_rounds(fp) for b in bundles(table.plan(fp, r))]
    models = table.models(fp)
    assert rep.models == len(models) == len(groups) == rep.measured and rep.skipped == 0
    assert {m["spec"] for m in models} == {bundle_key(b) for b in groups}
    # whole bundles as planned (stored as each settles, in whatever order the protocol settles them)
    assert {m["spec"]: json.loads(m["json"])["specs"] for m in models} == {bundle_key(b): b for b in groups}
    assert sum(len(b) for b in groups) == sum(len(table.plan(fp, r)) for r in table.planned_rounds(fp))
    assert table.planned_rounds(fp) == [0, 1] and [r["round"] for r in rep.rounds] == [0, 1]
    assert rep.rounds[1]["reason"].startswith("adaptive")
    assert all(m["ms"] > 0 and m["nodes"] >= 1 and m["nodes_ms"] > 0 for m in models)
    assert {m["kind"] for m in models} == {"bundle", "overhead"}
    assert rep.samples == len(table.samples(fp)) and rep.by_kind["conv"] >= 40
    assert not any(s["spec"] in {m["spec"] for m in models if m["kind"] == "overhead"} for s in table.samples(fp))
    again = build_kernels("cpu", db, protocol=fast_protocol(2, 3), show_progress=False, log=lambda m: None, **SMALL)
    assert again.measured == 0 and again.skipped == len(groups) and again.models == rep.models
    assert [r["planned"] for r in again.rounds] == [r["planned"] for r in rep.rounds]


def test_the_fusions_the_runtime_showed_are_the_table_s_rules(built):
    db, rep = built
    assert {"Conv+Relu", "Conv+Add", "NCHWc blocked layout (reorders at its edges)"} <= set(rep.rules)
    assert rep.rules == KernelTable(db).rules(rep.fingerprint)


def test_the_initial_plan_covers_every_kind_and_is_the_same_for_a_seed():
    a, b = initial_plan(100, seed=4), initial_plan(100, seed=4)
    assert a == b and a != initial_plan(100, seed=5)
    kinds = {s["kind"] for s in a}
    assert kinds == set(SHARES) | {"overhead"}


def test_adaptive_rounds_sample_near_the_worst_kernels_of_the_kinds_that_have_them():
    conv = {"kind": "conv", "hw": 28, "cin": 64, "cout": 64, "k": [3, 3], "s": 1, "act": "relu", "add": 0, "stem": 1}
    gap = {"kind": "gap", "hw": 7, "c": 512, "stem": 1}
    errors = {"conv": [(0.4, conv), (0.02, dict(conv, hw=56))], "gap": [(0.01, gap)]}
    plan = adaptive_plan(errors, n=6, seed=0, round_=1, bound=0.1)
    assert len(plan) == 6 and {s["kind"] for s in plan} == {"conv"}
    assert all(abs(s["hw"] - 28) <= 12 for s in plan)  # near the bad one (hw 28), not the good one (56)
    assert adaptive_plan({"gap": [(0.01, gap)]}, n=6, seed=0, round_=1, bound=0.1) == []


def test_export_and_import_carry_the_kernel_table(built, tmp_path):
    db, rep = built
    out = tmp_path / "k.json"
    LutStore(db).export(out)
    data = json.loads(out.read_text())
    assert len(data["kernels"]["models"]) == rep.models and len(data["kernels"]["samples"]) == rep.samples
    other = tmp_path / "other.db"
    LutStore(other).import_(out)
    a, b = KernelTable(db), KernelTable(other)
    assert b.count(rep.fingerprint) == a.count(rep.fingerprint) and b.rules(rep.fingerprint) == rep.rules
    assert b.networks(rep.fingerprint) == a.networks(rep.fingerprint) and len(a.networks(rep.fingerprint)) == 6
    LutStore(other).import_(out)  # a second import stores nothing twice
    assert b.count(rep.fingerprint) == a.count(rep.fingerprint)


def test_an_import_with_a_bad_kernel_sample_is_refused_whole(built, tmp_path):
    db, _ = built
    out = tmp_path / "k.json"
    LutStore(db).export(out)
    data = json.loads(out.read_text())
    data["kernels"]["samples"][5]["node_ms"] = -1.0
    out.write_text(json.dumps(data))
    fresh = tmp_path / "fresh.db"
    with pytest.raises(HwnasError, match="kernel sample 6: node_ms is -1.0"):
        LutStore(fresh).import_(out)
    assert KernelTable(fresh).count(_fp()) == (0, 0) and LutStore(fresh).count() == 0


def test_kernel_models_of_another_fingerprint_are_not_mixed_in_silently(built, tmp_path):
    db, rep = built
    out = tmp_path / "k.json"
    LutStore(db).export(out)
    data = json.loads(out.read_text())
    for part in ("models", "samples", "rules", "networks"):
        for row in data["kernels"][part]:
            row["fingerprint"] = "elsewhere"
    out.write_text(json.dumps(data))
    with pytest.raises(HwnasError, match="kernel models measured on fingerprint elsewhere"):
        LutStore(tmp_path / "x.db").import_(out, expect_fingerprint=rep.fingerprint)
    LutStore(tmp_path / "y.db").import_(out, expect_fingerprint=rep.fingerprint, allow_mixed=True)
    assert KernelTable(tmp_path / "y.db").count(rep.fingerprint) == KernelTable(db).count(rep.fingerprint)


def _fp() -> str:
    return get_device("cpu").fingerprint()["key"]


BUILD = textwrap.dedent("""
    import sys
    from hwnas.latency.lut.kernel_table import build_kernels
    from tests.latency.lut_helpers import fast_protocol
    build_kernels(sys.argv[2], sys.argv[1], samples=int(sys.argv[3]), adaptive_rounds=0,
                  protocol=fast_protocol(2, 20), show_progress=False)
""")
SIZES = {"cpu": 200, "litert-cpu": 60}  # round 0 of each: enough models to be killed in the middle


def _progress(db, fmt: str) -> tuple[int, int]:
    """(models planned in round 0, models stored), read without writing (a plain read-only connection)."""
    import sqlite3
    if not db.exists():
        return 0, 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            plan = [json.loads(r[0]) for r in con.execute("SELECT json FROM kernel_plan WHERE round=0 ORDER BY rowid")]
            stored = con.execute("SELECT COUNT(*) FROM kernel_models").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0, 0
    return len(model_groups(plan, fmt)), stored


def _build_proc(db, device: str):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen([sys.executable, "-c", BUILD, str(db), device, str(SIZES[device])], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "litert-cpu"])
def test_a_kernel_build_resumes_after_sigkill_losing_nothing_and_storing_nothing_twice(tmp_path, device):
    db = tmp_path / "k.db"
    dev = get_device(device)
    fp, fmt = dev.fingerprint()["key"], dev.artifact_format
    proc = _build_proc(db, device)
    deadline = time.monotonic() + 300
    planned = stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        planned, stored = _progress(db, fmt)
        if 3 <= stored < planned:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= stored < planned, proc.stderr.read().decode()[-2000:]
    table = KernelTable(db)
    partial = table.count(fp)[0]
    assert 3 <= partial < planned
    rerun = _build_proc(db, device)
    assert rerun.wait(600) == 0, rerun.stderr.read()
    models = table.models(fp)
    groups = model_groups(table.plan(fp, 0), fmt)
    assert len(models) == len(groups) and {m["spec"] for m in models} == {bundle_key(b) for b in groups}
    samples = table.samples(fp)
    assert len({(s["spec"], s["node"]) for s in samples}) == len(samples)  # no kernel stored twice
    assert {s["spec"] for s in samples} <= {m["spec"] for m in models}     # none without its model


def test_a_litert_build_times_each_configuration_as_copies_of_its_operator_once(built_litert):
    from hwnas.latency import tflite_kernels
    from hwnas.latency.kernel_predict import KernelPredictor
    db, rep = built_litert
    table = KernelTable(db)
    dev = get_device("litert-cpu")
    fp = dev.fingerprint()["key"]
    specs = [s for r in table.planned_rounds(fp) for s in table.plan(fp, r)]
    models = table.models(fp)
    assert rep.models == len(models) == len(specs) == rep.measured and rep.fit_networks == 3
    assert {json.loads(m["json"])["specs"][0]["kind"] for m in models} == set(tflite_kernels.SHARES) | {"overhead"}
    samples = table.samples(fp)
    by_model = {m["spec"]: m for m in models}
    # one sample per model (its copies are the same kernel), none for the overhead chains
    assert len(samples) == len({s["spec"] for s in samples}) == sum(m["kind"] != "overhead" for m in models)
    for s in samples:
        m = by_model[s["spec"]]
        assert m["nodes"] == tflite_kernels.copies(json.loads(m["json"])["specs"][0]) and m["nodes_ms"] == m["nodes"]
    assert "XNNPACK delegate: one XNNPACK operator per TFLite operator (batch norms folded by the converter)" in \
        rep.rules and "CONV_2D+RELU" in rep.rules
    kp = KernelPredictor.fit(table, fp)
    conv = next(s for s in samples if s["kind"] == "conv")
    m = by_model[conv["spec"]]
    # a copy's latency: the model's, less the runtime's per-run and per-node cost, over the copies
    expected = max(m["ms"] - kp.overhead["a"] - kp.overhead["b"] * m["nodes"], 0.05 * m["ms"]) / m["nodes"]
    assert math.exp(kp.kinds["conv"].y[0]) == pytest.approx(expected, rel=1e-9)
    again = build_kernels("litert-cpu", db, protocol=fast_protocol(2, 3), show_progress=False, log=lambda m: None,
                          **SMALL_LITERT)
    assert again.measured == 0 and again.skipped == len(specs)
