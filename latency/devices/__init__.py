"""Devices: a name from devices.yaml bound to a backend. The API every other part of hwnas uses:

    from hwnas.latency.devices import get_device
    dev = get_device("cpu")
    m = dev.measure(model, input_shape=(1, 3, 224, 224))     # torch module, or a .onnx/.tflite path
    print(m.median, dev.fingerprint())
"""
from __future__ import annotations

import os
from typing import Any

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import (PROTOCOL_OPTIONS, Artifact, Backend, BackendOptions, OpTiming,
                                        fingerprint_key, host_fingerprint)
from hwnas.latency.devices.config import FARM, DeviceEntry, FarmOptions, load_devices
from hwnas.latency.devices.registry import backend_class, backend_names, register_backend
from hwnas.latency.measure import Measurement


def protocol_id(backend) -> str:
    """The measured-latency definition a device's numbers follow (part of its fingerprint key)."""
    from hwnas.latency.calibration import REFERENCE_ID
    from hwnas.latency.protocol import VERSION
    return f"{VERSION} calibrated:{REFERENCE_ID}" if "paired" in backend.protocol_options else VERSION


__all__ = ["Artifact", "Backend", "BackendOptions", "Device", "OpTiming", "backend_names", "get_device",
           "list_devices", "load_devices", "register_backend", "fingerprint_key", "host_fingerprint"]


class Device:
    """A named device: its backend instance plus the artifact preparation the backend needs."""

    def __init__(self, entry: DeviceEntry):
        self.name = entry.name
        self.entry = entry
        self.backend: Backend = backend_class(entry.backend)(entry.name, entry.options)
        self._fingerprint: dict | None = None

    @property
    def artifact_format(self) -> str:
        return self.backend.artifact_format

    def check(self) -> None:
        self.backend.check()

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self.backend.check()
            fp = dict(self.backend.fingerprint())
            fp.setdefault("device", self.name)
            fp.setdefault("protocol", protocol_id(self.backend))
            fp["key"] = fingerprint_key(fp)
            self._fingerprint = fp
        return self._fingerprint

    def fingerprint_key(self) -> str:
        return self.fingerprint()["key"]

    def prepare(self, model: Any, input_shape=None) -> Artifact:
        """A torch module (exported to this device's format, cached), a path to a model file, or an
        Artifact already prepared. `input_shape` is a tuple, or for files "1x3x224x224" / "name=1x3x..".
        """
        from hwnas.latency.artifacts import prepare_artifact
        return prepare_artifact(model, self.artifact_format, input_shape, device_name=self.name)

    def timing_resource(self) -> str:
        """What a measurement here occupies (see Backend.timing_resource): one measurement per resource at once."""
        return self.backend.timing_resource()

    def check_protocol(self, adaptive: bool = False, **protocol) -> None:
        """One clear line for an option this device's backend cannot honour (never silently dropped)."""
        asked = {k for k, v in protocol.items() if not (k == "paired" and not v)} | ({"adaptive"} if adaptive else set())
        unknown = sorted(asked - PROTOCOL_OPTIONS)
        if unknown:
            raise HwnasError(f"unknown measurement option {unknown[0]!r} (known: {', '.join(sorted(PROTOCOL_OPTIONS))})")
        refused = sorted(asked - self.backend.protocol_options)
        if refused:
            raise self.backend.refuse(refused[0], self.backend.refusal)

    def measure(self, model: Any, input_shape=None, *, warmup: int = 10, runs: int = 50,
                adaptive: bool = False, **protocol) -> Measurement:
        """One timing loop (hwnas.latency.measure) on the device. For *measured latency* as every consumer of
        hwnas reports it (interleaved, calibrated rounds with a stop rule) use `latency` instead."""
        self.check_protocol(adaptive, **protocol)
        self.backend.check()
        artifact = model if isinstance(model, Artifact) else self.prepare(model, input_shape)
        return self.backend.measure(artifact, warmup=warmup, runs=runs, adaptive=adaptive, **protocol)

    def latency(self, model: Any, input_shape=None, protocol=None, **overrides):
        """The measured latency of one model (hwnas.latency.protocol: the one definition)."""
        from hwnas.latency.protocol import measure_latency
        artifact = model if isinstance(model, Artifact) else self.prepare(model, input_shape)
        return measure_latency(self, {artifact.name: artifact}, protocol, **overrides)[artifact.name]

    def export_final(self, model, input_shape, out_dir, stem: str) -> dict[str, str]:
        """A final network (searched, scaled, adapted) as files: OUT/STEM.onnx always, and the device's own
        format beside it where that is another (OUT/STEM.tflite for TFLite devices). Returns {format: path}."""
        import shutil
        from pathlib import Path

        from hwnas.latency.export import export_onnx
        out = Path(out_dir)
        files = {"onnx": str(export_onnx(model.eval(), input_shape, out / f"{stem}.onnx").path)}
        if self.artifact_format not in ("onnx", "torch"):
            art = self.prepare(model, input_shape)  # the cached export the device times
            dst = out / f"{stem}{art.path.suffix}"
            shutil.copyfile(art.path, dst)
            files[self.artifact_format] = str(dst)
        return files

    def profile_ops(self, model: Any, input_shape=None, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        self.backend.check()
        artifact = model if isinstance(model, Artifact) else self.prepare(model, input_shape)
        return self.backend.profile_ops(artifact, warmup=warmup, runs=runs)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Device({self.name!r}, backend={self.entry.backend!r})"


@register_backend
class FarmBackend(Backend):
    """A pool of devices named in devices.yaml (`pool: [a, b]`). As one device it measures on the first
    member that answers; a LUT build with an executor splits its ops across the members
    (hwnas.executor.measure_jobs). Its fingerprint is the members' (they must agree unless allow_mixed)."""

    name = FARM
    artifact_format = "onnx"  # the members' (see the property below)
    Options = FarmOptions

    def __init__(self, device_name, options):
        super().__init__(device_name, options)
        self._members: list[Device] | None = None
        self._next = 0

    @property
    def members(self) -> list[Device]:
        if self._members is None:
            entries = load_devices(self.options._source)
            self._members = [Device(entries[m]) for m in self.options.pool]
        return self._members

    @property
    def artifact_format(self) -> str:  # type: ignore[override]
        formats = {m.name: m.artifact_format for m in self.members}
        if len(set(formats.values())) > 1:
            which = ", ".join(f"{k}: {v}" for k, v in formats.items())
            raise HwnasError(f"device {self.device_name!r}: the pool mixes model formats ({which})")
        return next(iter(formats.values()))

    def check(self) -> None:
        for m in self.members:
            m.check()

    @property
    def protocol_options(self):  # type: ignore[override]
        return frozenset.intersection(*(m.backend.protocol_options for m in self.members))

    def timing_resource(self) -> str:
        return ", ".join(m.timing_resource() for m in self.members)

    def fingerprint(self) -> dict:
        fps = {m.name: m.fingerprint() for m in self.members}
        keys = {fp["key"] for fp in fps.values()}
        first = self.members[0].name
        if len(keys) > 1 and not self.options.allow_mixed:
            which = ", ".join(f"{k}: {fp['key']}" for k, fp in fps.items())
            raise HwnasError(f"device {self.device_name!r}: the pool mixes fingerprints "
                             f"({which}); its rows would not be one "
                             f"table. Set allow_mixed: true to store them all under {first}'s fingerprint")
        return {k: v for k, v in fps[first].items() if k != "key"}

    def _each(self, call):
        err: Exception | None = None
        n = len(self.members)
        for i in range(n):
            m = self.members[(self._next + i) % n]
            try:
                out = call(m)
                self._next = (self._next + i + 1) % n
                return out
            except HwnasError as e:
                err = e
        raise HwnasError(f"device {self.device_name!r}: no member of the pool could run it (last: {err})")

    def measure(self, artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False, **protocol):
        return self._each(lambda m: m.measure(artifact, warmup=warmup, runs=runs, adaptive=adaptive, **protocol))

    def profile_ops(self, artifact, *, warmup: int = 5, runs: int = 20):
        return self._each(lambda m: m.profile_ops(artifact, warmup=warmup, runs=runs))

    def close(self) -> None:
        for m in self._members or []:
            m.close()


def list_devices(devices_file: str | os.PathLike | None = None) -> dict[str, DeviceEntry]:
    return load_devices(devices_file)


def get_device(name: str, devices_file: str | os.PathLike | None = None) -> Device:
    entries = load_devices(devices_file)
    if name not in entries:
        raise HwnasError(f"unknown device {name!r}; known devices: {', '.join(sorted(entries))} "
                         f"(add your own with --devices FILE or HWNAS_DEVICES)")
    return Device(entries[name])
