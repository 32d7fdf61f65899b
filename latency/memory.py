"""Peak memory of running a model: measured in a fresh child process, so that nothing this process already holds
(torch, other sessions, earlier models) is counted.

The child imports the device's runtime, resets the kernel's resident-set high-water mark (Linux: /proc/self/
clear_refs), reads its resident set (the baseline), loads the model as the device does (session or interpreter,
inputs made), runs it, and reads the high-water mark again. The figure reported is the growth: peak resident set
while loading and running minus the baseline. Where the mark cannot be reset or read (not Linux), the child's
ru_maxrss before and after is used (the growth is then a lower bound when importing peaked higher).

    python -m hwnas.latency.memory < spec.json      # what the child runs; prints one JSON line
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from hwnas.latency.devices.base import Artifact, HostBackend

CHILD_TIMEOUT_S = 600.0
WHAT = ("growth of the resident set of a fresh process while it loads the model and runs it {runs} times, "
        "over its resident set with the runtime imported ({method})")


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # bytes on macOS, KiB on Linux


def peak_memory(device, artifact: Artifact, runs: int = 10) -> dict:
    """{'growth_bytes', 'peak_rss_bytes', 'baseline_rss_bytes', 'runs', 'what'} for `artifact` on `device` (a
    Device), or growth_bytes None with `what` saying why it was not measured."""
    backend = device.backend
    if not isinstance(backend, HostBackend) or artifact.path is None:
        why = ("the torch backend runs the module inside this process" if artifact.path is None else
               "measured only for runtimes on this machine (onnxruntime, LiteRT)")
        return not_measured(why)
    spec = {"module": type(backend).__module__, "backend": backend.name, "device": backend.device_name,
            "options": backend.options.model_dump(mode="json"), "runs": runs,
            "artifact": {"format": artifact.format, "name": artifact.name, "path": str(artifact.path),
                         "input_shapes": [[k, list(v)] for k, v in artifact.input_shapes.items()]}}
    try:
        p = subprocess.run([sys.executable, "-m", "hwnas.latency.memory"], input=json.dumps(spec),
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return not_measured(f"the measuring process ran past {CHILD_TIMEOUT_S:.0f} s")
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        return not_measured(f"the measuring process failed ({err[:160]})")
    try:
        out = json.loads(lines[-1])
    except ValueError:
        return not_measured(f"the measuring process printed no result ({lines[-1][:160]})")
    out["what"] = WHAT.format(runs=out["runs"], method=out.pop("method"))
    return out


def not_measured(why: str) -> dict:
    return {"growth_bytes": None, "peak_rss_bytes": None, "baseline_rss_bytes": None, "runs": 0,
            "what": f"not measured: {why}"}


def _child() -> None:
    import importlib

    from hwnas.latency.devices.registry import backend_class
    spec = json.load(sys.stdin)
    importlib.import_module(spec["module"])
    cls = backend_class(spec["backend"])
    backend = cls(spec["device"], cls.Options.model_validate(spec["options"]))
    a = spec["artifact"]
    artifact = Artifact(format=a["format"], name=a["name"], path=Path(a["path"]),
                        input_shapes={k: tuple(v) for k, v in a["input_shapes"]})
    backend.check()  # imports the runtime: part of the baseline, not of the model's memory
    reset = _reset_peak()
    base_kib, before = _status_kib("VmRSS"), _maxrss_bytes()
    run = backend.open(artifact)
    for _ in range(spec["runs"]):
        run()
    peak_kib = _status_kib("VmHWM")
    if reset and base_kib is not None and peak_kib is not None:
        base, peak, method = base_kib * 1024, peak_kib * 1024, "Linux VmHWM, reset after the import"
    else:
        base, peak, method = before, _maxrss_bytes(), "ru_maxrss before and after: a lower bound"
    print(json.dumps({"growth_bytes": max(0, peak - base), "peak_rss_bytes": peak, "baseline_rss_bytes": base,
                      "runs": spec["runs"], "method": method}))


if __name__ == "__main__":
    _child()
