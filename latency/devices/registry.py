"""The backend registry: `@register_backend` on a Backend subclass makes it usable from devices.yaml."""
from __future__ import annotations

import importlib
import importlib.util

_BACKENDS: dict[str, type] = {}

# Backends shipped with hwnas, imported on first use so that e.g. the adb backend costs nothing
# to a user who never names it.
_BUILTIN_MODULES = {
    "onnxruntime": "hwnas.latency.devices.ort",
    "torch": "hwnas.latency.devices.torch_backend",
    "litert": "hwnas.latency.devices.litert",
    "adb": "hwnas.latency.devices.adb",
    "remote": "hwnas.latency.devices.remote",
}


def register_backend(cls):
    _BACKENDS[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    return sorted(set(_BACKENDS) | {n for n, m in _BUILTIN_MODULES.items() if importlib.util.find_spec(m)})


def backend_class(name: str):
    if name not in _BACKENDS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}") from None
