"""Running many tasks through an executor: `map_tasks` (free tasks, retried when their worker dies), `route`
(tasks pulled by a pool of queues, retried on another queue), and the measurement jobs built on `route`.

`measure_job` and `_measure_chunk` run where a device's queue lives (a thread here, a Ray actor): they stay
at module level so that a worker finds them by this module's path.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from hwnas.errors import HwnasError
from hwnas.executor.base import Executor, Task, TaskLost


def map_tasks(executor: Executor, fn: Callable, items: Iterable, *, retries: int = 2,
              log: Callable[[str], None] | None = None,
              label: Callable[[Any], str] | None = None) -> Iterator[tuple[int, Any]]:
    """fn(item) for every item as free tasks; yields (index, result) as they finish (any order). A task
    whose worker died is resubmitted, at most `retries` times; other errors propagate at once."""
    items = list(items)
    todo = deque(range(len(items)))
    attempts = [0] * len(items)
    running: dict[Task, int] = {}
    try:
        while todo or running:
            while todo and len(running) < executor.capacity:
                i = todo.popleft()
                running[executor.submit(fn, items[i])] = i
            for t in executor.wait(list(running)):
                i = running.pop(t)
                try:
                    value = t.result()
                except TaskLost as e:
                    attempts[i] += 1
                    what = label(items[i]) if label else f"task {i}"
                    if attempts[i] > retries:
                        raise HwnasError(f"a worker crashed (died without a result) {attempts[i]} times while "
                                         f"evaluating {what}; giving up ({e})") from None
                    if log:
                        log(f"worker lost on {what} ({e}); retrying ({attempts[i]}/{retries})")
                    todo.appendleft(i)
                    continue
                yield i, value
    finally:
        running.clear()


def route(executor: Executor, fn: Callable, items: Iterable, queues: dict[str, tuple], *, retries: int = 2,
          env: dict[str, dict] | None = None, max_queue_failures: int = 3,
          log: Callable[[str], None] | None = None) -> Iterator[tuple[Any, str, Any]]:
    """fn(*queues[q], item) for every item on one of the queues (one task per queue at a time: the pool of
    devices pulls work as it frees up). Yields (item, queue, result) as they finish.

    A failed item (its worker died, or the device raised) is retried on another queue when there is
    one, at most `retries` times; a queue that fails `max_queue_failures` times in a row is dropped."""
    if not queues:
        raise HwnasError("no device to run on")
    env = env or {}
    items = list(items)
    todo = deque(range(len(items)))
    attempts = [0] * len(items)
    failed_on: list[set] = [set() for _ in items]
    strikes = {q: 0 for q in queues}
    alive = list(queues)
    running: dict[Task, int] = {}
    busy: set[str] = set()

    def pick(q: str):
        for i in todo:
            if q not in failed_on[i] or all(a in failed_on[i] for a in alive):
                todo.remove(i)
                return i
        return None

    while todo or running:
        for q in alive:
            if q in busy or not todo:
                continue
            i = pick(q)
            if i is None:
                continue
            running[executor.submit(fn, *queues[q], items[i], queue=q, env=env.get(q))] = i
            busy.add(q)
        if not running:
            raise HwnasError(f"no device left to run {len(todo)} remaining task(s) on")
        for t in executor.wait(list(running)):
            i = running.pop(t)
            busy.discard(t.queue)
            try:
                value = t.result()
            except Exception as e:  # noqa: BLE001 - retried below, bounded
                attempts[i] += 1
                failed_on[i].add(t.queue)
                strikes[t.queue] += 1
                what = "its worker died" if isinstance(e, TaskLost) else f"{type(e).__name__}: {e}"
                if attempts[i] > retries:
                    raise HwnasError(f"{_label(items[i])} failed {attempts[i]} times, last on {t.queue} ({what}); "
                                     f"giving up") from None
                if strikes[t.queue] >= max_queue_failures and t.queue in alive:
                    alive.remove(t.queue)
                    if log:
                        log(f"{t.queue}: {strikes[t.queue]} failures in a row; taking it out of the pool")
                    if not alive:
                        raise HwnasError(f"every device of the pool failed; last on {t.queue}: {what}") from None
                if log:
                    log(f"{_label(items[i])} failed on {t.queue} ({what}); retrying ({attempts[i]}/{retries})")
                todo.appendleft(i)
                continue
            strikes[t.queue] = 0
            yield items[i], t.queue, value


def _label(item) -> str:
    return str(item[0] if isinstance(item, tuple) and item else item)


# -- measurements on devices ------------------------------------------------------------------------------

_LOCAL = threading.local()
_EXPORT_LOCK = threading.Lock()  # torch's ONNX/TFLite exporters keep global state: one export per process at a time


def _worker_cache() -> dict:
    if not hasattr(_LOCAL, "cache"):
        _LOCAL.cache = {"devices": {}, "artifacts": {}}
    return _LOCAL.cache


def measure_job(entry, protocol, chunk) -> list[tuple]:
    """Runs where the device's queue lives: prepare (export) a chunk of models there and measure them
    together with the measurement protocol. `chunk` = [(key, make_model, input_shape)]; returns
    [(key, Latency as a dict)]."""
    from hwnas.latency.devices import Device
    from hwnas.latency.protocol import measure_latency
    cache = _worker_cache()
    dkey = (entry.name, entry.source)
    dev = cache["devices"].get(dkey)
    if dev is None:
        dev = cache["devices"][dkey] = Device(entry)
    arts = {}
    for key, make_model, input_shape in chunk:
        art = cache["artifacts"].get((dkey, repr(key)))
        if art is None:
            with _EXPORT_LOCK:
                art = cache["artifacts"][(dkey, repr(key))] = dev.prepare(make_model(), input_shape)
        arts[key] = art
    return [(k, lat.to_dict(samples=True)) for k, lat in measure_latency(dev, arts, protocol).items()]


def queue_id(device) -> str:
    """The queue a device's measurements go through: its timing resource, as the device layer defines it
    (an agent + device on it, a phone, or the cores of this host: every local CPU/GPU device of one machine
    shares one queue, as on the agent)."""
    return device.timing_resource()


def pool_members(device) -> list:
    """The devices a measurement of `device` may run on: a farm's members, else the device itself."""
    members = device.backend.members
    return list(members) if members else [device]


def measure_jobs(executor: Executor, device, jobs: list[tuple], protocol, *, chunk: int = 16, retries: int = 2,
                 log: Callable[[str], None] | None = None) -> Iterator[tuple[Any, Any]]:
    """Measure every job = (key, make_model, input_shape) on `device` (or across its farm) with `protocol`, in
    chunks, one chunk per device at a time. Yields (key, Latency) as chunks finish."""
    from hwnas.latency.protocol import Latency
    queues: dict[str, tuple] = {}
    env: dict[str, dict] = {}
    for d in pool_members(device):
        q = queue_id(d)
        if q in queues:
            raise HwnasError(f"device {device.name!r}: {d.name!r} and another member measure on the same {q}; "
                             f"a pool needs distinct devices")
        queues[q] = (d.entry, protocol)
        token_env = getattr(d.entry.options, "token_env", None)
        if token_env and os.environ.get(token_env):
            env[q] = {token_env: os.environ[token_env]}
    # at least two chunks per device of the pool, so that the work spreads and a lost device loses little
    chunk = max(1, min(chunk, -(-len(jobs) // (2 * len(queues)))))
    chunks = [(f"{len(jobs[i:i + chunk])} jobs from {jobs[i][0]!r}", jobs[i:i + chunk])
              for i in range(0, len(jobs), chunk)]
    per_queue = {q: 0 for q in queues}
    for (_, part), q, value in route(executor, _measure_chunk, chunks, queues, retries=retries, env=env, log=log):
        per_queue[q] += len(part)
        for key, d in value:
            yield key, Latency.from_dict(d)
    if log and len(queues) > 1 and jobs:
        log(f"device pool {device.name!r}: measured " + ", ".join(f"{n} on {q}" for q, n in per_queue.items()))


def _measure_chunk(entry, protocol, item):
    return measure_job(entry, protocol, item[1])
