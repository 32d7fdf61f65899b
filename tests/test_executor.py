"""hwnas.executor: local routing and retries, and LUT builds on a real local Ray cluster (not mocked)."""
import os
import signal
from pathlib import Path
import sys
import threading
import time

import pytest

from hwnas.errors import HwnasError
from hwnas.executor import LocalExecutor, TaskLost, get_executor, map_tasks, queue_id, route
from hwnas.latency.devices import get_device
from hwnas.latency.lut.build import build_lut
from hwnas.latency.lut.store import LutStore
from tests.executor_tasks import dies_once, square
from tests.latency.lut_helpers import build_and_kill, fast_build, micro_space

BUILD = fast_build(rounds=2, runs=2, fit_networks=2, show_progress=False)


# -- local executor: routing and retries (real threads and processes) -----------------------------------

def _on_queue(name, item):
    if name == "broken":
        raise HwnasError(f"device {name} is gone")
    return name, item, threading.get_ident()


def test_route_retries_elsewhere_and_returns_every_item_once():
    logs = []
    with LocalExecutor() as ex:
        out = list(route(ex, _on_queue, range(12), {"good": ("good",), "broken": ("broken",)}, retries=2,
                         max_queue_failures=2, log=logs.append))
    items = sorted(item for item, _, _ in out)
    assert items == list(range(12))                                   # every item exactly once
    assert {q for _, q, _ in out} == {"good"}                          # all landed on the working device
    assert len({tid for _, _, (_, _, tid) in out}) == 1                # one queue = one thread: never concurrent
    assert any("taking it out of the pool" in m for m in logs)


def _always_fails(item):
    raise HwnasError(f"op {item} cannot be exported")


def test_route_gives_up_after_bounded_retries():
    with LocalExecutor() as ex, pytest.raises(HwnasError, match=r"failed 3 times.*giving up"):
        list(route(ex, lambda n, item: _always_fails(item), [1], {"a": ("a",), "b": ("b",)}, retries=2))


def _queue_overlap(log, item):
    log.append(("start", item, time.monotonic()))
    time.sleep(0.05)
    log.append(("end", item, time.monotonic()))
    return item


def test_one_queue_never_runs_two_tasks_at_once():
    log: list = []
    with LocalExecutor() as ex:
        tasks = [ex.submit(_queue_overlap, log, i, queue="dev") for i in range(4)]
        assert sorted(t.result() for t in tasks) == [0, 1, 2, 3]
    events = sorted(log, key=lambda e: e[2])
    assert [e[0] for e in events] == ["start", "end"] * 4             # strictly one after the other


def test_a_killed_process_worker_is_retried(tmp_path):
    logs = []
    with LocalExecutor(workers=2) as ex:
        out = dict(map_tasks(ex, dies_once, [str(tmp_path / "m")], retries=2, log=logs.append))
    assert list(out) == [0] and out[0] != os.getpid()
    assert any("worker lost" in m for m in logs)


def test_unknown_executor_and_missing_ray_are_clear_errors(monkeypatch):
    with pytest.raises(HwnasError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(HwnasError, match="--ray-address needs --executor ray"):
        get_executor("local", address="10.0.0.1:6379")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(HwnasError, match=r"pip install 'hwnas\[ray\]'"):
        get_executor("ray")


def test_lut_build_through_the_local_executor_matches_the_plain_loop(tmp_path):
    space, dev = micro_space(), get_device("cpu")
    plain = build_lut(space, dev, tmp_path / "plain.db", **BUILD)
    with LocalExecutor() as ex:
        routed = build_lut(space, dev, tmp_path / "routed.db", executor=ex, **BUILD)
    assert routed.measured == plain.measured == len(space.all_ops())
    keys = lambda p: [(r["fingerprint"], r["key"], r["round"]) for r in LutStore(p).rows()]  # noqa: E731
    assert keys(tmp_path / "routed.db") == keys(tmp_path / "plain.db")


# -- Ray: a real local cluster ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ex = get_executor("ray")
    yield ex
    ex.close()
    ray.shutdown()


def _rows(path):
    return [(r["fingerprint"], r["key"], r["round"]) for r in LutStore(path).rows()]


@pytest.mark.slow
def test_free_tasks_on_ray(ray_executor):
    assert sorted(v for _, v in map_tasks(ray_executor, square, range(5))) == [0, 1, 4, 9, 16]


@pytest.mark.slow
def test_lut_build_on_ray_equals_the_local_build(ray_executor, tmp_path):
    space, dev = micro_space(), get_device("cpu")
    with LocalExecutor() as ex:
        build_lut(space, dev, tmp_path / "local.db", executor=ex, **BUILD)
    rep = build_lut(space, dev, tmp_path / "ray.db", executor=ray_executor, **BUILD)
    assert rep.measured == len(space.all_ops()) and rep.networks == BUILD["fit_networks"]
    assert _rows(tmp_path / "ray.db") == _rows(tmp_path / "local.db")   # row for row, same keys
    a, b = LutStore(tmp_path / "local.db"), LutStore(tmp_path / "ray.db")
    fp = dev.fingerprint_key()
    assert a.networks(fp, space.name, "fit").keys() == b.networks(fp, space.name, "fit").keys()


@pytest.mark.slow
def test_a_killed_ray_worker_loses_and_duplicates_no_row(ray_executor, tmp_path, capfd):
    import ray
    space, dev = micro_space("micro-kill"), get_device("cpu")
    rounds = 2
    actor = ray_executor.actor(queue_id(dev))
    pid = ray.get(actor.pid.remote())
    db = tmp_path / "kill.db"
    # the queue's worker dies mid-build (mid-task, most likely)
    outcome = build_and_kill(lambda: build_lut(space, dev, db, executor=ray_executor, **BUILD),
                             LutStore(db), rows=4, pid=pid, poll=0.05)
    assert "error" not in outcome, outcome.get("error")
    rows = _rows(db)
    expected = {(dev.fingerprint_key(), s.key, r) for s in space.all_ops() for r in range(rounds)}
    assert len(rows) == len(set(rows)) and set(rows) == expected        # every row exactly once
    assert ray.get(actor.pid.remote()) != pid                          # the queue's worker was restarted
    # and a rerun has nothing left to do
    again = build_lut(space, dev, db, executor=ray_executor, **BUILD)
    assert again.measured == 0 and again.skipped == len(space.all_ops())
    if "its worker died" not in capfd.readouterr().err:
        pytest.skip("the worker died between two tasks: nothing was in flight to retry (rows still exact)")


@pytest.mark.slow
def test_search_estimates_on_ray_are_the_in_process_ones(ray_executor, tmp_path):
    from hwnas.search.estimators import CachedEstimator, get_estimator
    from hwnas.search.reward import Reward
    from hwnas.search.run import SearchRun, read_samples
    from hwnas.search.strategies import get_strategy
    from tests.search.toy_space import ToyPredictor, ToySpace

    space = ToySpace()
    make = lambda: get_estimator("naswot", space, seed=0, calibration=6, batch_size=8)  # noqa: E731
    est = CachedEstimator(make(), tmp_path / "cache.jsonl")
    run = SearchRun(tmp_path, space, ToyPredictor(space), get_strategy("random", space, seed=0), est,
                    Reward.hard(4.0), samples=6, top_k=2, config={"space": "toy"}, executor=ray_executor)
    run.run()
    recs = read_samples(tmp_path / "samples.jsonl")
    assert [r["i"] for r in recs] == list(range(6))                    # in order, each sample once
    local = make()
    for r in recs:
        assert r["accuracy"] == pytest.approx(local.estimate(tuple(r["arch"])), rel=1e-5)
    assert est.misses == len({tuple(r["arch"]) for r in recs})         # the cache holds each estimate once


@pytest.mark.timeout(120)
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of the process that owns a local pool leaves no worker running its task to the end."""
    import signal
    import subprocess
    import time
    pid_file = tmp_path / "worker.pid"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.executor_tasks import write_pid_and_sleep\n"
            "from hwnas.executor import LocalExecutor\n"
            "ex = LocalExecutor(2)\n"
            "ex.submit(write_pid_and_sleep, %r).result()\n") % (str(Path(__file__).parent.parent), str(pid_file))
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the pool worker outlived its parent by 15 s")
