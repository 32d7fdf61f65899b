"""The Ray executor: free tasks are Ray tasks, each queue is one Ray actor pinned to this node.

Named ray_cluster (not ray) so that no reader, tool or script run from this folder mistakes it for the
`ray` package it wraps; Ray itself is imported only when a RayExecutor is made (it is an optional extra).
`_call` and `_QueueWorker` stay at module level: Ray workers find them by this module's path.
"""
from __future__ import annotations

import os
from typing import Any

from hwnas.errors import HwnasError
from hwnas.executor.base import RAY_HINT, Executor, Task, TaskLost


def _call(fn, *args):
    return fn(*args)


class _QueueWorker:
    """The Ray actor behind one queue: runs its tasks one at a time (max_concurrency=1)."""

    def run(self, fn, *args):
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


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
