"""One executor interface for the jobs that outgrow a loop: LUT builds, search evaluations, NetAdapt proposals.

Two kinds of task go through it:
  free tasks     training / evaluation: spread over every worker (a process pool here, the whole cluster
                 on Ray). `executor.submit(fn, *args)`.
  queued tasks   measurements: `executor.submit(fn, *args, queue=ID)`. The tasks of one queue run one at a
                 time in one dedicated worker, so two timings never share a device. ID names the device:
                 an agent address, a phone serial, or the cores of a host (see `queue_id`).

Executors (`get_executor(name)`):
  local   the default. Free tasks run in-process (workers=1) or in a spawned process pool; each queue is
          one thread of this process (measurements of remote agents and phones overlap, local ones don't).
  ray     Ray (`pip install 'hwnas[ray]'`): connects to `address` or starts a local cluster. Free tasks are
          Ray tasks (retried by Ray when their worker dies); each queue is a Ray actor pinned to this node
          and restarted when its process dies.

Faults: `map_tasks` and `route` resubmit a task whose worker died (`TaskLost`) or whose device failed, a
bounded number of times, on another device of the pool when there is one. The caller stores each result
once (the LUT store's primary key makes a duplicate impossible anyway).
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as _futures_wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from hwnas.errors import HwnasError

EXECUTORS = ("local", "ray")
RAY_HINT = "pip install 'hwnas[ray]'"


class TaskLost(Exception):
    """The worker running a task died (killed, out of memory, crashed) before returning a result."""


class Task:
    """A submitted task: `result()` returns its value, re-raises its error, or raises TaskLost."""

    def __init__(self, handle, executor: "Executor", queue: str | None):
        self.handle, self.executor, self.queue = handle, executor, queue

    def result(self):
        return self.executor._result(self)


class Executor(ABC):
    name: str = ""

    @abstractmethod
    def submit(self, fn: Callable, *args, queue: str | None = None, env: dict | None = None) -> Task:
        """Run fn(*args): a free task, or on `queue` (one at a time per queue). `env`: environment
        variables the queue's worker needs (e.g. an agent's token), used when the queue is created."""

    @abstractmethod
    def wait(self, tasks: list[Task], timeout: float | None = None) -> list[Task]:
        """Block until at least one of `tasks` has finished (or `timeout`); return the finished ones."""

    @abstractmethod
    def _result(self, task: Task):
        ...

    @property
    def capacity(self) -> int:
        """How many free tasks are worth having in flight at once."""
        return 1

    def close(self, cancel: bool = False) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(cancel=exc[0] is not None)


# -- local --------------------------------------------------------------------------------------------

class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise HwnasError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._queues: dict[str, ThreadPoolExecutor] = {}

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, fn, *args, queue=None, env=None):
        if queue is not None:
            if queue not in self._queues:
                self._queues[queue] = ThreadPoolExecutor(1, thread_name_prefix=f"hwnas-queue-{queue}")
            return Task(self._queues[queue].submit(fn, *args), self, queue)
        if self.workers == 1:
            fut: Future = Future()
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller through result()
                if isinstance(e, KeyboardInterrupt):
                    raise
                fut.set_exception(e)
            return Task(fut, self, None)
        for _ in range(2):
            if self._pool is None:
                import multiprocessing as mp
                self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                 initializer=_die_with_parent, initargs=(os.getpid(),))
            try:
                return Task(self._pool.submit(fn, *args), self, None)
            except BrokenProcessPool:
                self._reset_pool()
        raise TaskLost("the local process pool keeps breaking")

    def _reset_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def wait(self, tasks, timeout=None):
        done, _ = _futures_wait([t.handle for t in tasks], timeout=timeout, return_when=FIRST_COMPLETED)
        return [t for t in tasks if t.handle in done]

    def _result(self, task):
        try:
            return task.handle.result()
        except BrokenProcessPool:
            self._reset_pool()  # every task of the broken pool is lost; the next submit starts a new pool
            raise TaskLost("a worker process of the local pool died") from None

    def close(self, cancel=False):
        for q in self._queues.values():
            q.shutdown(wait=not cancel, cancel_futures=cancel)
        self._queues.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None


# -- ray ----------------------------------------------------------------------------------------------

def _call(fn, *args):
    return fn(*args)


class _QueueWorker:
    """The Ray actor behind one queue: runs its tasks one at a time (max_concurrency=1)."""

    def run(self, fn, *args):
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker start-up: a daemon thread ends this worker once the process that started it is gone (a
    SIGTERM/SIGKILL of `hwnas adapt` must not leave training workers running for the rest of their task)."""
    def watch():
        import time
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="hwnas-parent-watch").start()


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, retries: int = 3):
        try:
            import ray
        except ImportError:
            raise HwnasError(f"--executor ray needs Ray: {RAY_HINT}") from None
        self.ray = ray
        self.retries = retries
        self._owned = False
        if not ray.is_initialized():
            import logging
            kw: dict = {"include_dashboard": False, "logging_level": logging.WARNING}
            if address:
                kw["address"] = address
            elif num_cpus:
                kw["num_cpus"] = num_cpus
            try:
                ray.init(**kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise HwnasError(f"cannot start or reach {where}: {e}") from None
            self._owned = True
        self._node = ray.get_runtime_context().get_node_id()
        self._remote_call = ray.remote(_call).options(max_retries=retries, retry_exceptions=False)
        self._actor_cls = ray.remote(_QueueWorker)
        self._actors: dict[str, Any] = {}

    @property
    def capacity(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def actor(self, queue: str, env: dict | None = None):
        """The actor behind `queue` (created on first use, pinned to this node, restarted if it dies)."""
        if queue not in self._actors:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            opts: dict = {"max_concurrency": 1, "max_restarts": self.retries, "max_task_retries": 0,
                          "num_cpus": 0,
                          "scheduling_strategy": NodeAffinitySchedulingStrategy(self._node, soft=False)}
            if env:
                opts["runtime_env"] = {"env_vars": {k: str(v) for k, v in env.items()}}
            self._actors[queue] = self._actor_cls.options(**opts).remote()
        return self._actors[queue]

    def submit(self, fn, *args, queue=None, env=None):
        if queue is not None:
            return Task(self.actor(queue, env).run.remote(fn, *args), self, queue)
        return Task(self._remote_call.remote(fn, *args), self, None)

    def wait(self, tasks, timeout=None):
        refs = [t.handle for t in tasks]
        done, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        done = set(done)
        return [t for t in tasks if t.handle in done]

    def _result(self, task):
        exc = self.ray.exceptions
        try:
            return self.ray.get(task.handle)
        except exc.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except (exc.RayActorError, exc.WorkerCrashedError, exc.NodeDiedError, exc.ObjectLostError) as e:
            raise TaskLost(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    def close(self, cancel=False):
        for a in self._actors.values():
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors.clear()
        if self._owned:
            self.ray.shutdown()
            self._owned = False


def get_executor(name: str = "local", *, address: str | None = None, workers: int = 1) -> Executor:
    """`local` (the default) or `ray`; `address` is the Ray cluster to join (default: start a local one)."""
    if name == "local":
        if address:
            raise HwnasError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address)
    raise HwnasError(f"unknown executor {name!r} (one of: {', '.join(EXECUTORS)})")


# -- running many tasks ---------------------------------------------------------------------------------

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
