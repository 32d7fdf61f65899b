"""The device abstraction: one Backend interface for every target (local runtimes, phone, remote board).

A backend takes an `Artifact` (an exported model file, or a torch module for the torch backend),
times it with the protocol in hwnas.latency.measure, optionally profiles it per op, and describes the
hardware/runtime it ran on as a fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hwnas.errors import HwnasError
from hwnas.latency.measure import Measurement

# Fields of a fingerprint that identify *what* was measured on; the host name and device name are kept
# for the record but do not split tables (two identical boards share one table).
_KEY_FIELDS = ("backend", "cpu_model", "soc", "threads", "cpu_mask", "runtime", "runtime_version",
               "provider", "delegate", "graph_optimization")


class BackendOptions(BaseModel):
    """Fields every device entry may carry, besides `backend`. Backends subclass this."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""


@dataclass
class Artifact:
    """A model ready for a backend: `format` is "onnx", "tflite" or "torch"."""

    format: str
    name: str
    input_shapes: dict[str, tuple[int, ...]]
    path: Path | None = None
    module: Any = None  # torch.nn.Module for the torch backend
    meta: dict = field(default_factory=dict)


@dataclass
class OpTiming:
    name: str
    op_type: str
    median_ms: float
    mean_ms: float = 0.0
    count: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "median_ms": self.median_ms,
                "mean_ms": self.mean_ms, "count": self.count}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint() -> dict:
    return {"host": socket.gethostname(), "cpu_model": cpu_model(), "machine": platform.machine(),
            "cores_total": os.cpu_count() or 1, "os": f"{platform.system()} {platform.release()}"}


def fingerprint_key(fp: dict) -> str:
    """A short stable id of a fingerprint's identifying fields (see _KEY_FIELDS)."""
    ident = {k: fp.get(k) for k in _KEY_FIELDS if fp.get(k) not in (None, "")}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


class Backend(ABC):
    """One kind of target. Subclasses set `name`, `artifact_format`, `Options`, and implement
    `fingerprint` and `measure`; `profile_ops` and `check` where they can."""

    name: ClassVar[str]
    artifact_format: ClassVar[str]  # "onnx" | "tflite" | "torch"
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, device_name: str, options: BackendOptions):
        self.device_name = device_name
        self.options = options

    def check(self) -> None:
        """Raise HwnasError saying why this device cannot be used here; return if it can."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """Host/SoC, CPU model, cores/threads used, runtime + version, provider/delegate."""

    @abstractmethod
    def measure(self, artifact: Artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
                **protocol) -> Measurement:
        """Time the artifact end to end with hwnas.latency.measure.measure (or, on targets that time
        on-device, parse the target's own figures into a Measurement)."""

    # median end-to-end time of the runs the last profile_ops() traced, where the runtime reports it
    last_profiled_run_ms: float | None = None

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        raise HwnasError(f"per-op profiling is not available on device {self.device_name!r} "
                         f"(backend {self.name})")

    def close(self) -> None:
        """Release sessions, connections or files held for this device."""
