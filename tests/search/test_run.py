import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.search.estimators import CachedEstimator, get_estimator
from hwnas.search.pareto import hypervolume, pareto_front, pareto_mask
from hwnas.search.reward import Reward
from hwnas.search.run import SearchRun, read_samples
from hwnas.search.strategies import get_strategy

HERE = Path(__file__).parent
try:
    from .toy_space import ToyPredictor, ToySpace
except ImportError:
    from toy_space import ToyPredictor, ToySpace


def test_pareto_front_and_hypervolume_by_hand():
    lat = [1.0, 2.0, 3.0, 2.5, 1.0]
    acc = [0.5, 0.7, 0.9, 0.6, 0.4]
    assert pareto_mask(lat, acc).tolist() == [True, True, True, False, False]
    # reference (4 ms, 0): 0.5*(2-1) + 0.7*(3-2) + 0.9*(4-3) = 2.1
    assert hypervolume(lat, acc, ref_latency_ms=4.0) == pytest.approx(2.1)
    assert hypervolume([5.0], [0.9], ref_latency_ms=4.0) == 0.0
    recs = [{"latency_ms": l, "accuracy": a} for l, a in zip(lat, acc)]
    assert [r["latency_ms"] for r in pareto_front(recs)] == [1.0, 2.0, 3.0]


def _toy_run(out, strategy="evolution", n=24, device=None, resume=False, target=4.0, top_k=3, **kw):
    space = ToySpace()
    est = CachedEstimator(get_estimator("naswot", space, seed=0, calibration=6, batch_size=8), out / "cache.jsonl")
    return SearchRun(out, space, ToyPredictor(space), get_strategy(strategy, space, seed=0), est,
                     Reward.hard(target), samples=n, device=device, top_k=top_k,
                     config={"space": "toy", "strategy": strategy}, resume=resume, **kw)


def test_search_writes_every_file_and_measures_top_k_on_cpu(tmp_path):
    from hwnas.latency.devices import get_device
    res = _toy_run(tmp_path, n=20, device=get_device("cpu")).run()
    recs = read_samples(tmp_path / "samples.jsonl")
    assert [r["i"] for r in recs] == list(range(20))
    r0 = recs[0]
    assert set(r0) >= {"arch", "describe", "accuracy", "latency_ms", "reward"}
    assert r0["reward"] == pytest.approx(Reward.hard(4.0)(r0["accuracy"], r0["latency_ms"]))
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["front"] and pareto["hypervolume"] > 0
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["top_k"]) == 3
    for t in summary["top_k"]:
        assert t["measured_ms"] > 0 and t["predicted_ms"] == t["latency_ms"]
    assert summary["best"]["arch"] in [t["arch"] for t in summary["top_k"]]
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / "best.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 16, 16), np.float32)})
    assert out[0].shape == (1, 10)
    assert res.summary["replay_mismatches"] == 0


def test_unreachable_target_is_reported_before_searching(tmp_path):
    space = ToySpace()
    fastest = ToyPredictor(space).min_latency()
    run = _toy_run(tmp_path, target=fastest * 0.9)
    with pytest.raises(HwnasError, match="unreachable.*at least"):
        run.run()
    assert not (tmp_path / "samples.jsonl").exists()


def test_existing_run_needs_resume_and_same_settings(tmp_path):
    _toy_run(tmp_path, n=4).run()
    with pytest.raises(HwnasError, match="pass resume to continue"):
        _toy_run(tmp_path, n=4).run()
    with pytest.raises(HwnasError, match="settings changed"):
        _toy_run(tmp_path, strategy="random", n=6, resume=True).run()


@pytest.mark.parametrize("strategy", ["evolution", "ppo"])
def test_resume_after_a_crash_between_record_and_checkpoint_and_a_torn_line(tmp_path, strategy):
    ref = _toy_run(tmp_path / "ref", strategy, n=30).run()

    class Crash(Exception):
        pass

    def crash(i):
        if i == 16:
            raise Crash

    with pytest.raises(Crash):
        _toy_run(tmp_path / "b", strategy, n=30, checkpoint_every=5, after_sample=crash).run()
    # sample 16 recorded, checkpoint at 15: one sample must be replayed; then a torn line from a kill
    with open(tmp_path / "b" / "samples.jsonl", "ab") as f:
        f.write(b'{"i": 17, "arch": [0, 1')
    res = _toy_run(tmp_path / "b", strategy, n=30, resume=True).run()
    assert res.summary["replay_mismatches"] == 0
    assert [r["arch"] for r in res.samples] == [r["arch"] for r in ref.samples]
    assert [r["reward"] for r in res.samples] == [r["reward"] for r in ref.samples]


def _lines(path):
    return len(path.read_bytes().split(b"\n")) - 1 if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["rl"])
def test_kill_9_at_any_point_loses_and_repeats_nothing(tmp_path, strategy):
    n = 40
    cmd = [sys.executable, str(HERE / "run_toy_search.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd + [str(tmp_path / "ref"), strategy, str(n)], check=True, env=env, capture_output=True)
    ref = read_samples(tmp_path / "ref" / "samples.jsonl")
    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(4):
        before = _lines(run_dir / "samples.jsonl")
        p = subprocess.Popen(cmd + [str(run_dir), strategy, str(n)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        wait_for = before + int(rng.integers(2, 8))
        while time.time() < deadline and p.poll() is None and _lines(run_dir / "samples.jsonl") < wait_for:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.05)))   # land anywhere in the loop, mid-write included
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 2
    done = subprocess.run(cmd + [str(run_dir), strategy, str(n)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"                       # no replay mismatch
    got = read_samples(run_dir / "samples.jsonl")
    assert [r["i"] for r in got] == list(range(n))          # nothing lost, nothing twice
    assert [r["arch"] for r in got] == [r["arch"] for r in ref]
    assert [r["reward"] for r in got] == [r["reward"] for r in ref]


class _Optimistic(ToyPredictor):
    """Predicts a thousandth of the toy costs (microseconds): every toy network measures far over a target set
    by it, as a table that is badly wrong for this device would."""

    def predict(self, arch) -> float:
        return super().predict(arch) / 1000

    def predict_batch(self, archs):
        return super().predict_batch(archs) / 1000

    def min_latency(self) -> float:
        return super().min_latency() / 1000


def test_a_hard_target_none_meets_widens_the_re_measured_set_then_says_so_plainly(tmp_path):
    from hwnas.latency.devices import get_device
    from hwnas.latency.protocol import NETWORK
    from hwnas.search.results import WIDEN
    space, logs = ToySpace(), []
    est = CachedEstimator(get_estimator("naswot", space, seed=0, calibration=6, batch_size=8), tmp_path / "c.jsonl")
    run = SearchRun(tmp_path / "run", space, _Optimistic(space), get_strategy("random", space, seed=0), est,
                    Reward.hard(0.004), samples=30, device=get_device("cpu"), top_k=2, config={"space": "toy"},
                    protocol=NETWORK.but(min_rounds=2, max_rounds=2, runs=3, warmup=1), log=logs.append)
    s = run.run().summary
    assert len(s["top_k"]) == 2 * (1 + WIDEN)  # the re-measured set was widened WIDEN times
    assert sum("measuring the next 2" in m for m in logs) == WIDEN
    h = s["hard_target"]
    assert not h["met"] and h["measured"] == 8 and h["closest"]["over_pct"] > 100
    assert h["message"].startswith("no measured network meets the target 0.004 ms: of the 8 measured, the fastest")
    assert "re-ran" in h["message"] and h["message"] in logs
    assert all(r["target_verdict"] == "misses" for r in s["top_k"])


def test_two_searches_on_one_out_end_with_one_refusal_and_an_intact_directory(tmp_path):
    cmd = [sys.executable, str(HERE / "run_toy_search.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "shared"
    first = subprocess.Popen(cmd + [str(run_dir), "random", "100000"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None and _lines(run_dir / "samples.jsonl") < 3:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run(cmd + [str(run_dir), "random", "20"], env=env, capture_output=True, text=True)
        assert second.returncode != 0
        assert f"is in use by another hwnas search (PID {first.pid} on " in second.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    n = len(read_samples(run_dir / "samples.jsonl", repair=True))
    again = subprocess.run(cmd + [str(run_dir), "random", str(n + 5)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # the directory resumes: nothing mixed in, nothing lost
    assert [r["i"] for r in read_samples(run_dir / "samples.jsonl")] == list(range(n + 5))


def test_a_damaged_middle_line_of_samples_is_refused_with_its_number(tmp_path):
    out = tmp_path / "run"
    _toy_run(out, n=6).run()
    lines = (out / "samples.jsonl").read_bytes().split(b"\n")
    lines[2] = lines[2][:10]
    (out / "samples.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(HwnasError, match=r"samples.jsonl: line 3 is not a complete JSON record"):
        _toy_run(out, n=8, resume=True).run()


def test_resume_refuses_a_pickled_strategy_checkpoint_without_running_it(tmp_path):
    """A strategy.ckpt is tensors + JSON; a pickle there (an attack, or an older hwnas's file) is one clear
    error and its code never runs."""
    from tests.hwnas.test_tensorfile import malicious_pickle, malicious_torch_file
    _toy_run(tmp_path, strategy="rl", n=4).run()
    marker = tmp_path / "pwned"
    for write in (malicious_pickle, malicious_torch_file):
        write(tmp_path / "strategy.ckpt", marker)
        with pytest.raises(HwnasError, match="strategy checkpoint .* is a pickle"):
            _toy_run(tmp_path, strategy="rl", n=6, resume=True).run()
    assert not marker.exists()
