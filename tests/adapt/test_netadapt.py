"""NetAdapt end to end on a small network (real onnxruntime device, real training on digits), the budget
checks, and resume after kill -9 of a real subprocess."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("hwnas.data")
pytest.importorskip("hwnas.train")

from hwnas.adapt import AdaptConfig, adapt  # noqa: E402
from hwnas.errors import HwnasError  # noqa: E402
from tinynet import TinyNet  # noqa: E402

HERE = Path(__file__).parent
# wide enough that channels, not per-op overhead, set the latency: at width 32 TinyNet measures ~0.1 ms and its
# minimum-width version ~0.04 ms, so machine noise alone (CI once measured the full network at 0.164 ms) could put
# a budget below what pruning can reach; at 96 it is ~0.6 ms full vs ~0.04 ms at minimum width
WIDTH = 96


def _cfg(tmp_path, budget, **kw):
    # the paper's rule (every group a proposal, any cut): fewest iterations on TinyNet; the defaults are run by
    # the deployment-size test
    base = dict(out=str(tmp_path / "run"), short_steps=3, long_epochs=1, pretrain_steps=30, runs=15,
                db=str(tmp_path / "layers.db"), input_size=32, min_proposals=1, max_cut=1.0, max_proposals=None)
    base.update(kw)
    return AdaptConfig("tinynet", budget_ms=budget, **base)


def _budget(frac: float, size: int = 32) -> float:
    """A budget `frac` of the way from TinyNet's minimum-width latency to its full latency, both measured
    with the protocol NetAdapt's budget checks use, so that the budget sits between what pruning can reach
    and the network's own latency as NetAdapt measures them."""
    import copy
    from hwnas.adapt.groups import scale_width
    from hwnas.latency.devices import get_device
    dev, shape = get_device("cpu"), (1, 3, size, size)
    net = TinyNet(width=WIDTH).eval()
    narrow = scale_width(copy.deepcopy(net), shape, 1e-9, 8).eval()
    from hwnas.latency.protocol import measure_latency
    lat = measure_latency(dev, {"full": (net, shape), "narrow": (narrow, shape)})  # NetAdapt's own definition
    return lat["narrow"].ms + frac * (lat["full"].ms - lat["narrow"].ms)


@pytest.mark.slow
def test_latency_at_the_deployment_size_while_training_at_a_smaller_one(tmp_path):
    """Timed at 48x48, fine-tuned at 16x16: the budget holds at 48 (the exported file is 48), training saw 16,
    and each iteration's prediction is checked against its measurement."""
    import onnx
    budget = _budget(0.5, size=48)
    defaults = {k: getattr(AdaptConfig, k) for k in ("min_proposals", "max_cut", "max_proposals")}
    s = adapt(_cfg(tmp_path, budget, input_size=48, train_size=16, **defaults), model=TinyNet(width=WIDTH))
    out = tmp_path / "run"
    assert s["input_shape"] == [1, 3, 48, 48] and s["train_shape"] == [1, 3, 16, 16] and s["distill"] is True
    assert s["budget_met"] and s["adapted"]["measured_ms"] <= budget
    dims = [d.dim_value for d in onnx.load(str(out / "adapted.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims[-2:] == [48, 48]
    state = json.loads((out / "state.json").read_text())
    assert state["train_size"] == 16 and state["input_size"] == 48
    rows = state["trajectory"][1:]
    assert rows and len(s["prediction_error_pct"]) == len(rows)
    for r in rows:
        assert r["prediction_error_pct"] == pytest.approx(100 * (r["predicted_ms"] - r["measured_ms"]) /
                                                          r["measured_ms"])
        assert 0.5 <= r["cost_scale"] <= 2.0 and r["anchor_ms"] > 0
    assert rows[0]["cost_scale"] == 1.0  # nothing measured yet to correct the table with
    from hwnas.adapt.proposals import load_split
    assert load_split(AdaptConfig("tinynet", budget_ms=1.0, input_size=48, train_size=16).data_args()
                      ).input_shape == (3, 16, 16)


def test_unreachable_budget_reported_before_any_fine_tuning(tmp_path):
    cfg = _cfg(tmp_path, 1e-5)
    with pytest.raises(HwnasError, match="out of reach.*minimum width"):
        adapt(cfg, model=TinyNet())
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_adapt_meets_measured_budget_and_writes_outputs(tmp_path):
    budget = _budget(0.5)
    # Network Slimming's criterion: TinyNet's SE squeeze conv has no BatchNorm, so that group is never cut
    s = adapt(_cfg(tmp_path, budget, importance="bn-scale"), model=TinyNet(width=WIDTH))
    out = tmp_path / "run"
    state = json.loads((out / "state.json").read_text())
    assert state["importance"] == "bn-scale"
    cut = [r.get("group") for r in state["trajectory"][1:]]
    assert cut and "se.fc1" not in cut  # the SE squeeze conv (no BatchNorm in its group) is never ranked
    assert s["budget_met"] and s["adapted"]["measured_ms"] <= budget
    assert s["adapted"]["params"] < s["original"]["params"] and s["adapted"]["macs"] < s["original"]["macs"]
    for f in s["files"]:
        assert (out / f).stat().st_size > 0, f
    rows = json.loads((out / "trajectory.json").read_text())
    assert [r["iteration"] for r in rows] == list(range(len(rows))) and len(rows) >= 2
    for r in rows[1:]:
        assert r["new_channels"] < r["channels"] and r["predicted_ms"] > 0 and r["measured_ms"] > 0
        assert 0 <= r["accuracy"] <= 1
    assert rows[-1]["measured_ms"] <= budget or s["adapted"]["measured_ms"] <= budget
    assert (out / "trajectory.csv").read_text().splitlines()[0].startswith("iteration,group,channels")
    # the exported ONNX is the adapted network: re-measuring it on the device stays in budget (re-measured)
    from hwnas.latency.devices import get_device
    dev = get_device("cpu")
    assert dev.latency(str(out / "adapted.onnx")).ms <= budget * 1.15
    with pytest.raises(HwnasError, match="pass resume to continue"):
        adapt(_cfg(tmp_path, budget, importance="bn-scale"), model=TinyNet(width=WIDTH))
    with pytest.raises(HwnasError, match="cannot resume.*budget_ms"):
        adapt(_cfg(tmp_path, budget * 0.9, resume=True, importance="bn-scale"), model=TinyNet(width=WIDTH))
    with pytest.raises(HwnasError, match="cannot resume.*importance"):
        adapt(_cfg(tmp_path, budget, resume=True), model=TinyNet(width=WIDTH))


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from tinynet import TinyNet
from hwnas.adapt import AdaptConfig, adapt
cfg = AdaptConfig("tinynet", budget_ms={budget}, out={out!r}, short_steps=3, long_epochs=1, pretrain_steps=30,
                  runs=15, db={db!r}, initial_step=0.05, input_size=32, min_proposals=1, max_cut=1.0,
                  max_proposals=None, resume=len(sys.argv) > 1)
adapt(cfg, model=TinyNet(width={width}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_resume_after_sigkill_continues_from_last_iteration(tmp_path):
    budget = _budget(0.4)
    out = tmp_path / "run"
    script = tmp_path / "run_adapt.py"
    script.write_text(SCRIPT.format(here=str(HERE), budget=budget, out=str(out), db=str(tmp_path / "layers.db"),
                                    width=WIDTH))
    env = dict(os.environ, HWNAS_NO_PROGRESS="1")
    log = open(tmp_path / "first-run.log", "w")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    state_path = out / "state.json"
    deadline = time.time() + 600  # generous: on a busy shared machine the first iterations are slow
    before = None
    while time.time() < deadline and proc.poll() is None:
        if state_path.exists():
            st = json.loads(state_path.read_text())
            if len(st["trajectory"]) >= 2:
                before = st["trajectory"]
                break
        time.sleep(0.05)
    log.close()
    assert before is not None, ("the run never finished two iterations (exit code "
                                f"{proc.poll()}): {(tmp_path / 'first-run.log').read_text()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = json.loads(state_path.read_text())["trajectory"]  # whatever was last committed at the kill
    res = subprocess.run([sys.executable, str(script), "--resume"], env=env, capture_output=True, text=True,
                         timeout=500)
    assert res.returncode == 0, res.stderr[-2000:]
    st = json.loads(state_path.read_text())
    rows = st["trajectory"]
    assert rows[:len(before)] == before  # nothing lost or redone
    assert [r["iteration"] for r in rows] == list(range(len(rows)))  # nothing counted twice
    assert st["phase"] == "done" and st["final"]["measured_ms"] <= budget
    assert "resuming from iteration" in res.stderr


def test_accuracy_floor_default_is_halfway_between_chance_and_the_start():
    from hwnas.adapt.plan import accuracy_floor as _accuracy_floor
    assert _accuracy_floor(None, 0.9, 10) == pytest.approx(0.5)
    assert _accuracy_floor(None, 0.15, 10) == 0.0  # an untrained start (near chance) has nothing to protect
    assert _accuracy_floor(0.3, 0.9, 10) == 0.3


def test_no_proposal_below_the_accuracy_floor_is_kept_the_step_is_halved(tmp_path, monkeypatch):
    from hwnas.adapt.netadapt import NetAdapt
    from hwnas.adapt.plan import MAX_HALVINGS
    from hwnas.adapt.proposals import evaluate_proposal
    from hwnas.adapt.checkpoint import load_state
    batches = []

    def fn(p):
        if not batches or p.model_out <= batches[-1][-1].model_out:
            batches.append([])
        batches[-1].append(p)
        return evaluate_proposal(p)

    budget = _budget(0.1)
    monkeypatch.chdir(tmp_path)  # a relative --out: the state must not depend on this working directory
    with pytest.raises(HwnasError, match=rf"every proposal falls below the accuracy floor 0.9990 .* halved "
                                         rf"{MAX_HALVINGS} times.*then --resume"):
        NetAdapt(_cfg(tmp_path, budget, accuracy_floor=0.999, out="run"), model=TinyNet(width=WIDTH),
                 pool_fn=fn).run()
    assert len(batches) == MAX_HALVINGS + 1
    # each retry asks for a smaller cut: the predicted latencies of its proposals rise
    best = [min(p.predicted_ms for p in b) for b in batches]
    assert all(later >= earlier for earlier, later in zip(best, best[1:])) and best[-1] > best[0]
    state = load_state(tmp_path / "run")
    assert len(state["trajectory"]) == 1 and state["floor"] == 0.999  # nothing below the floor was kept
    # a lower floor on --resume continues from the same state, resumed from another working directory
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(HwnasError, match="no budget met after 1 iterations"):
        NetAdapt(_cfg(tmp_path, budget, accuracy_floor=0.0, resume=True, max_iterations=1),
                 model=TinyNet(width=WIDTH), pool_fn=fn).run()
    state = load_state(tmp_path / "run")
    assert len(state["trajectory"]) == 2 and state["floor"] == 0.0


def test_long_steps_sets_the_long_term_fine_tune_in_steps_not_epochs(tmp_path):
    """A budget the start already meets: no iteration, only the long-term fine-tune, of exactly --long-steps
    (digits at 64 per batch is 23 steps an epoch: long_epochs=1 would give 23)."""
    s = adapt(_cfg(tmp_path, 1000.0, long_steps=7), model=TinyNet(width=8))
    assert s["iterations"] == 0 and s["fine_tune_steps"] == 7
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["final"]["long_term_steps"] == 7 and state["long_steps"] == 7


def test_long_steps_must_be_a_count(tmp_path):
    from hwnas.settings import SettingError
    with pytest.raises(SettingError, match="long_steps must be 0 or more"):
        _cfg(tmp_path, 1.0, long_steps=-1).check()


def test_layer_costs_from_the_kernel_table_are_named_and_checked(tmp_path, built, capfd):
    """--layer-costs kernels: NetAdapt plans its cuts from the kernel table and says so; the measured network is
    still the judge of the budget."""
    import sqlite3
    db = tmp_path / "layers.db"
    with sqlite3.connect(db) as copy:
        sqlite3.connect(built[0]).backup(copy)
    budget = _budget(0.6)
    s = adapt(_cfg(tmp_path, budget, layer_costs="kernels"), model=TinyNet(width=WIDTH))
    err = capfd.readouterr().err
    assert "per-layer costs: kernel table of cpu" in err
    assert s["iterations"] >= 1 and s["budget_met"] and s["adapted"]["measured_ms"] <= budget
    from hwnas.settings import SettingError
    with pytest.raises(SettingError, match="layer_costs must be one of measured, kernels"):
        _cfg(tmp_path, 1.0, layer_costs="guess").check()
