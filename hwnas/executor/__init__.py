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

Modules: base (the interface, Task, TaskLost, LocalExecutor, get_executor), ray_cluster (RayExecutor),
farm (map_tasks, route, and the measurement jobs that run where a device's queue lives).
"""
from hwnas.executor.base import EXECUTORS, RAY_HINT, Executor, LocalExecutor, Task, TaskLost, get_executor
from hwnas.executor.farm import map_tasks, measure_job, measure_jobs, pool_members, queue_id, route
from hwnas.executor.ray_cluster import RayExecutor

__all__ = ["EXECUTORS", "RAY_HINT", "Executor", "LocalExecutor", "RayExecutor", "Task", "TaskLost",
           "get_executor", "map_tasks", "measure_job", "measure_jobs", "pool_members", "queue_id", "route"]
