"""The executor interface (Executor, Task, TaskLost), the local executor, and `get_executor`."""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as _futures_wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

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


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker start-up: a daemon thread ends this worker once the process that started it is gone (a
    SIGTERM/SIGKILL of `hwnas adapt` must not leave training workers running for the rest of their task)."""
    def watch():
        import time
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="hwnas-parent-watch").start()


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


def get_executor(name: str = "local", *, address: str | None = None, workers: int = 1) -> Executor:
    """`local` (the default) or `ray`; `address` is the Ray cluster to join (default: start a local one)."""
    if name == "local":
        if address:
            raise HwnasError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        from hwnas.executor.ray_cluster import RayExecutor
        return RayExecutor(address)
    raise HwnasError(f"unknown executor {name!r} (one of: {', '.join(EXECUTORS)})")
