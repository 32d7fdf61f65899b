"""The device abstraction: one Backend interface for every target (local runtimes, phone, remote board).

A backend takes an `Artifact` (an exported model file, or a torch module for the torch backend),
times it with the protocol in hwnas.latency.measure, optionally profiles it per op, and describes the
hardware/runtime it ran on as a fingerprint.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import socket
from abc import ABC, abstractmethod
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from hwnas.errors import HwnasError
from hwnas.latency.measure import Measurement, measure

# Fields of a fingerprint that identify *what* was measured on; the host name and device name are kept
# for the record but do not split tables (two identical boards share one table).
# `protocol` names the measured-latency definition (hwnas.latency.protocol) and calibration reference: tables
# measured under another never mix with these. Which cores of one CPU model timed (`cores`) is recorded only.
# A GPU device adds the GPU, the precision and whether inputs stay on the GPU (none of them set on a CPU device,
# whose keys they therefore leave as they were).
_KEY_FIELDS = ("backend", "cpu_model", "soc", "threads", "cpu_mask", "runtime", "runtime_version",
               "provider", "delegate", "graph_optimization", "protocol", "gpu", "precision", "io")


class BackendOptions(BaseModel):
    """Fields every device entry may carry, besides `backend`. Backends subclass this."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""


MAX_THREADS = 256    # threads of any device (a phone's, a board's)
THREADS_PER_CORE = 4  # a host device's threads, at most, per core this process may run on


def host_threads_problem(threads: int) -> str | None:
    """Why a host device cannot run `threads` intra-op threads on this machine (0 = every core), or None:
    beyond THREADS_PER_CORE per core (and MAX_THREADS) a run only thrashes, for minutes, or crashes the runtime."""
    cores = len(_allowed_cores())
    bound = min(MAX_THREADS, THREADS_PER_CORE * cores)
    if 0 <= threads <= bound:
        return None
    return (f"{threads} is not between 0 (every core) and {bound} ({THREADS_PER_CORE} per core of the {cores} "
            f"this machine lets hwnas use)")


class HostOptions(BackendOptions):
    """Options of the backends that time on this machine's own cores."""

    threads: int = 1  # intra-op threads; 0 = every core of the machine; at most THREADS_PER_CORE per core
    # which cores the timing runs on: "auto" (the last `threads` cores when some are left over for the rest of
    # the machine, else unpinned), "none", or a list of core ids
    cores: list[int] | Literal["auto", "none"] = "auto"

    @field_validator("threads")
    @classmethod
    def _threads_fit(cls, v):
        why = host_threads_problem(v)
        if why is not None:
            raise ValueError(why)
        return v

    @field_validator("cores", mode="before")
    @classmethod
    def _cores_form(cls, v):  # one line naming the field and its forms, not pydantic's union member errors
        if v in ("auto", "none") or (isinstance(v, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                                   for c in v)):
            return v
        raise ValueError(f"cores is 'auto', 'none' or a list of core ids, not {v!r}")

    @field_validator("cores")
    @classmethod
    def _known_cores(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("give at least one core id (or 'auto' / 'none')")
            allowed = sorted(_allowed_cores())
            bad = [c for c in v if c not in allowed]
            if bad:
                raise ValueError(f"core {bad[0]} is not available to this process (available: "
                                 f"{', '.join(map(str, allowed))})")
        return v


def _allowed_cores() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


@contextmanager
def pinned(cores):
    """Run the block with the calling thread bound to `cores` (None: as it is). Threads created inside it
    (an onnxruntime session's intra-op pool) inherit the binding."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Artifact:
    """A model ready for a backend: `format` is "onnx", "tflite" or "torch"."""

    format: str
    name: str
    input_shapes: dict[str, tuple[int, ...]]
    path: Path | None = None
    module: Any = None  # torch.nn.Module for the torch backend
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Runner:
    """A loaded model: `run` queues one complete inference, `sync` (accelerators) waits until it has finished.
    Called, it does both: one complete inference, as a caller outside the timing loop wants it."""

    run: Callable[[], Any]
    sync: Callable[[], Any] | None = None

    def __call__(self):
        out = self.run()
        if self.sync is not None:
            self.sync()
        return out


@dataclass
class RuntimeNode:
    """One node of a runtime's optimised graph: `op` as "domain:type" ("ai.onnx:Conv", "com.microsoft:FusedConv",
    "com.microsoft.nchwc:Conv"), the shapes of its inputs and outputs as the runtime saw them (weights included),
    its attributes and its median time in the profiled runs."""
    name: str
    op: str
    inputs: list[list[int]]
    outputs: list[list[int]]
    attrs: dict = field(default_factory=dict)
    ms: float = 0.0


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


def validated(device_name: str, options: BackendOptions) -> BackendOptions:
    """`options`, checked again by their model: a copy changed with model_copy(update=...) (e.g. a --threads
    override) skips pydantic's checks. A bad field is one line naming the device and the field."""
    try:
        type(options).model_validate(options.model_dump())
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "?"
        raise HwnasError(f"device {device_name!r}: field {field!r}: {err['msg']}") from None
    return options


def importable(module: str) -> bool:
    """Whether `module` can be imported here, found without importing it (some runtimes take seconds to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module half set up
        return False


@dataclass(frozen=True)
class MissingExtra:
    """An optional package a device lacks here: what it is needed for and the command that installs it."""

    package: str      # e.g. "litert-torch"
    needed_for: str   # e.g. "exporting torch models to .tflite"
    install: str      # e.g. "pip install 'hwnas[tflite]'"

    def to_dict(self) -> dict:
        return {"package": self.package, "needed_for": self.needed_for, "install": self.install}


# the keyword options of Device.measure beyond warmup/runs; a backend declares which of them it honours
PROTOCOL_OPTIONS = frozenset({"adaptive", "rel_ci", "min_runs", "max_runs", "time_cap_s", "min_time_s", "paired",
                              "pair_every"})


class Backend(ABC):
    """One kind of target. Subclasses set `name`, `artifact_format`, `Options`, `protocol_options`, and
    implement `fingerprint`, `timing_resource` and `measure`; `profile_ops` and `check` where they can."""

    name: ClassVar[str]
    artifact_format: ClassVar[str]  # "onnx" | "tflite" | "torch"
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    # the Device.measure options this backend honours (forwards to the target or implements); any other is
    # refused with one line, never dropped
    protocol_options: ClassVar[frozenset[str]] = frozenset()
    # why the options not in protocol_options cannot be honoured (the refusal's words)
    refusal: ClassVar[str] = "its target has no such option"
    # a pool of devices (the farm) lists its member devices here; a single target has none
    members: ClassVar[list | None] = None

    def __init__(self, device_name: str, options: BackendOptions):
        self.device_name = device_name
        self.options = validated(device_name, options)
        self.last_run: dict = {}  # what the target said about its last measurement beyond the samples, if anything

    def check(self) -> None:
        """Raise HwnasError saying why this device cannot be used here; return if it can."""

    def missing_extras(self) -> list[MissingExtra]:
        """The optional packages this device lacks here. A device that passes check() and still lists some is
        usable only in part (e.g. it runs model files but cannot export torch models to its format)."""
        return []

    @abstractmethod
    def fingerprint(self) -> dict:
        """Host/SoC, CPU model, cores/threads used, runtime + version, provider/delegate."""

    @abstractmethod
    def timing_resource(self) -> str:
        """What a measurement on this device occupies ("host NAME", "phone SERIAL", "agent HOST:PORT/DEVICE"):
        two measurements on one resource never run at once (executor queues, device pools, the agent's locks)."""

    @abstractmethod
    def measure(self, artifact: Artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
                **protocol) -> Measurement:
        """Time the artifact end to end with hwnas.latency.measure.measure (or, on targets that time
        on-device, parse the target's own figures into a Measurement)."""

    def refuse(self, option: str, why: str) -> HwnasError:
        return HwnasError(f"device {self.device_name!r} ({self.name}) cannot honour {option}: {why}")

    # median end-to-end time of the runs the last profile_ops() traced, where the runtime reports it
    last_profiled_run_ms: float | None = None

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        raise HwnasError(f"per-op profiling is not available on device {self.device_name!r} "
                         f"(backend {self.name})")

    def runtime_nodes(self, artifact: Artifact, runs: int = 3) -> list[RuntimeNode]:
        """The nodes the runtime really runs for `artifact`, after its own graph optimisation (fusions, layout
        changes), in execution order, with their shapes: what hwnas.latency.kernels decomposes a network into."""
        raise HwnasError(f"device {self.device_name!r} (backend {self.name}) does not show the kernels it runs; "
                         f"kernel decomposition needs a backend that does (onnxruntime)")

    def close(self) -> None:
        """Release sessions, connections or files held for this device."""


class HostBackend(Backend):
    """A runtime on this machine's own cores (onnxruntime, torch, LiteRT). Subclasses implement `open`
    (a loaded model -> a callable doing one inference). Loaded models are kept (LRU) so that the rounds of a
    protocol do not reload them; timing is pinned to the device's cores; `paired=True` times the
    calibration reference (hwnas.latency.calibration) between the runs."""

    Options = HostOptions
    protocol_options = PROTOCOL_OPTIONS
    keep_open = 48  # loaded models kept per device

    def __init__(self, device_name, options):
        super().__init__(device_name, options)
        self._open: OrderedDict = OrderedDict()

    @property
    def threads(self) -> int:
        return self.options.threads or (os.cpu_count() or 1)

    @property
    def cores(self) -> list[int] | None:
        """The cores timing is bound to (None: unpinned)."""
        c = self.options.cores
        if c == "none":
            return None
        if isinstance(c, list):
            if len(c) < min(self.threads, len(_allowed_cores())):
                raise HwnasError(f"device {self.device_name!r}: {self.threads} threads on {len(c)} core(s) {c}; "
                                 f"list at least as many cores as threads")
            return sorted(c)
        allowed = sorted(_allowed_cores())
        if self.threads >= len(allowed):
            return None
        return allowed[-self.threads:]

    def host_fingerprint(self) -> dict:
        fp = host_fingerprint()
        cores = self.cores
        fp.update(threads=self.threads, cores=",".join(map(str, cores)) if cores else "unpinned")
        return fp

    # the GPU a device times on (None: it times on this host's cores); a GPU is its own timing resource
    gpu_index: int | None = None

    def timing_resource(self) -> str:
        if self.gpu_index is not None:
            return f"gpu {socket.gethostname()}:{self.gpu_index}"
        return f"host {socket.gethostname()}"

    @abstractmethod
    def open(self, artifact: Artifact) -> Callable[[], Any] | Runner:
        """Load the artifact with its inputs made once; return a callable doing one complete inference, or for
        an asynchronous device a Runner (the call that queues it, the synchronisation that waits for it)."""

    def runner(self, artifact: Artifact) -> Runner:
        """The artifact loaded (once: kept until evicted or the file changes)."""
        if artifact.path is not None:
            st = os.stat(artifact.path)
            ident = (str(artifact.path), st.st_mtime_ns, st.st_size)
        else:
            ident = (id(artifact.module),)
        key = (*ident, artifact.format, tuple(sorted((k or "", v) for k, v in artifact.input_shapes.items())))
        run = self._open.get(key)
        if run is None:
            with pinned(self.cores):
                run = self.open(artifact)
            if not isinstance(run, Runner):
                run = Runner(run)
            self._open[key] = run
            while len(self._open) > self.keep_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(key)
        return run

    def measure(self, artifact: Artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
                paired: bool = False, pair_every: int = 1, **protocol) -> Measurement:
        run = self.runner(artifact)
        pair, ref_ms = None, None
        if paired:
            from hwnas.latency.calibration import reference
            ref = reference(self)
            pair, ref_ms = self.runner(ref.artifact), ref.ms  # called: its complete inference, synchronised
        with pinned(self.cores):
            m = measure(run.run, warmup=warmup, runs=runs, adaptive=adaptive, pair=pair, pair_every=pair_every,
                        sync=run.sync, **protocol)
        m.reference_ms = ref_ms
        return m

    def close(self) -> None:
        self._open.clear()
