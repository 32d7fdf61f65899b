"""devices.yaml: named devices -> backend + options, validated with each backend's pydantic model.

Sources, later ones overriding earlier ones by name: the devices.yaml shipped with hwnas, then every
file in $HWNAS_DEVICES (separated by os.pathsep), then --devices FILE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, PrivateAttr, ValidationError

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import BackendOptions
from hwnas.latency.devices.registry import backend_class, backend_names


FARM = "farm"


class FarmOptions(BackendOptions):
    """A pool of devices (e.g. several agents or phones of one kind): `pool: [a, b]`, no `backend`.
    A LUT build splits its ops across the pool; rows of different fingerprints are refused unless
    `allow_mixed: true` (then they are stored under the first member's fingerprint)."""

    pool: list[str] = Field(min_length=1)
    allow_mixed: bool = False
    _source: str | None = PrivateAttr(None)  # the file the farm came from (its members are resolved with it)


@dataclass
class DeviceEntry:
    name: str
    backend: str
    options: BackendOptions
    source: str  # the file it came from


def builtin_devices_file() -> Path:
    return Path(str(resources.files("hwnas").joinpath("devices.yaml")))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise HwnasError(f"devices file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HwnasError(f"devices file {path} is not text (YAML): byte {e.object[e.start]:#04x} at offset {e.start} "
                         f"is not UTF-8") from None
    except OSError as e:
        raise HwnasError(f"cannot read devices file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise HwnasError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HwnasError(f"{path}: expected a mapping of device names to settings, got {type(data).__name__}")
    return data


def parse_entries(data: dict, source: str) -> dict[str, DeviceEntry]:
    entries = {}
    for name, raw in data.items():
        if not isinstance(raw, dict):
            raise HwnasError(f"{source}: device {name!r}: expected a mapping with at least 'backend'")
        raw = dict(raw)
        backend = raw.pop("backend", None)
        if backend is None and "pool" in raw:
            backend = FARM
        if backend is None:
            raise HwnasError(f"{source}: device {name!r}: field 'backend' is missing "
                             f"(one of: {', '.join(backend_names())})")
        if backend not in backend_names():
            raise HwnasError(f"{source}: device {name!r}: field 'backend': unknown backend {backend!r} "
                             f"(one of: {', '.join(backend_names())})")
        try:
            options = backend_class(backend).Options(**raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            raise HwnasError(f"{source}: device {name!r}: field {field!r}: {err['msg']}") from None
        if backend == FARM:
            options._source = source
        entries[str(name)] = DeviceEntry(str(name), backend, options, source)
    return entries


def device_files(devices_file: str | os.PathLike | None = None) -> list[Path]:
    files = [builtin_devices_file()]
    env = os.environ.get("HWNAS_DEVICES", "")
    files += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    if devices_file:
        files.append(Path(devices_file))
    return files


def load_devices(devices_file: str | os.PathLike | None = None) -> dict[str, DeviceEntry]:
    entries: dict[str, DeviceEntry] = {}
    for path in device_files(devices_file):
        entries.update(parse_entries(_read_yaml(path), str(path)))
    for e in entries.values():
        if e.backend == FARM:
            for member in e.options.pool:
                if member not in entries:
                    raise HwnasError(f"{e.source}: device {e.name!r}: field 'pool': unknown device {member!r}")
                if entries[member].backend == FARM:
                    raise HwnasError(f"{e.source}: device {e.name!r}: field 'pool': {member!r} is itself a pool "
                                     f"(list its devices instead)")
            if len(set(e.options.pool)) != len(e.options.pool):
                raise HwnasError(f"{e.source}: device {e.name!r}: field 'pool': a device is listed twice")
    return entries
