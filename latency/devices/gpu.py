"""What a GPU device's fingerprint records about the GPU: its name, driver and CUDA versions, asked of
`nvidia-smi` (present wherever an NVIDIA driver is) so that onnxruntime devices need no torch to describe it.

    gpu_fingerprint(0) -> {"gpu": "NVIDIA H200", "gpu_driver": "560.35.03", "cuda_driver": "12.6",
                           "gpu_memory_mib": 143771}

A machine without nvidia-smi gives {} (the runtime's own figures, where it has them, are added by the backend).
"""
from __future__ import annotations

import re
import shutil
import subprocess

from hwnas.errors import HwnasError

_QUERY = "name,driver_version,memory.total"
_CUDA = re.compile(r"CUDA Version:\s*([0-9.]+)")


def _smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_fingerprint(index: int = 0) -> dict:
    """The GPU `index` as nvidia-smi names it ({} where nvidia-smi is absent or does not answer)."""
    out = _smi(f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits", f"--id={index}")
    if not out or not out.strip():
        return {}
    fields = [f.strip() for f in out.strip().splitlines()[0].split(",")]
    if len(fields) < 3:
        return {}
    fp = {"gpu": fields[0], "gpu_driver": fields[1]}
    try:
        fp["gpu_memory_mib"] = int(float(fields[2]))
    except ValueError:
        pass
    head = _smi() or ""
    m = _CUDA.search(head)
    if m:
        fp["cuda_driver"] = m.group(1)  # the newest CUDA the driver supports
    return fp


def build_info_field(text: str, name: str) -> str | None:
    """`name=value` out of a runtime's build-info line (onnxruntime's get_build_info: "..., cuda_version=12.2, ...")."""
    m = re.search(rf"{re.escape(name)}\s*[=:]\s*([^,\s]+)", text or "")
    return m.group(1) if m else None


def both_onnxruntimes() -> bool:
    """Whether onnxruntime and onnxruntime-gpu are both installed: they share one import name, and whichever
    was installed last decides which providers exist."""
    from importlib import metadata
    found = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            found.add(dist)
        except metadata.PackageNotFoundError:
            pass
    return len(found) == 2


GPU_RUNTIME_HINT = ("put the GPU runtime in place of the CPU one: pip uninstall -y onnxruntime onnxruntime-gpu && "
                    "pip install onnxruntime-gpu (README, 'GPUs')")


def no_provider(device_name: str, wanted: str, available: list[str]) -> HwnasError:
    """The one line for a GPU device on a machine whose onnxruntime lacks its provider."""
    why = ("onnxruntime and onnxruntime-gpu are both installed and the CPU one won; "
           if both_onnxruntimes() else "")
    return HwnasError(f"device {device_name!r} needs onnxruntime's {wanted}, which this machine does not have "
                      f"(available: {', '.join(available)}): it needs an NVIDIA GPU and onnxruntime-gpu; {why}"
                      f"{GPU_RUNTIME_HINT}")
