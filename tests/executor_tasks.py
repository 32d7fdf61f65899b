"""Tiny task functions for tests/test_executor.py, in a module that imports nothing heavy: the spawned
process-pool workers and Ray workers that unpickle them start in a fraction of a second."""
import os
import signal


def square(x):
    return x * x


def dies_once(marker):
    """Kill its own process the first time (a worker crash), return the pid the second time."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def write_pid_and_sleep(path):
    """Writes this worker's pid, then works (sleeps) for two minutes."""
    import os
    import time
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return 0
