"""Versioned JSON results. Every JSON result hwnas writes (each command's `--json OUT|-`, and the .json file of
`hwnas lut export`) starts with one key naming its kind and version:

    {"schema": "hwnas.profile/1", "model": "lenet5", ...}

A result that is a list (devices, models, lut list) is wrapped: {"schema": "hwnas.devices/1", "items": [...]}.
Each kind is described by a JSON Schema, docs/schemas/<kind>.schema.json, and docs/schemas/README.md.
The rule: removing a key or changing what one means bumps that kind's version here (and in its schema
document); adding a key does not (readers ignore keys they do not know)."""
from __future__ import annotations

# kind -> current version; a kind is the command's words joined by "-" ("hwnas lut build" -> "lut-build")
SCHEMA_VERSIONS = {
    "profile": 1,
    "devices": 1,
    "models": 1,
    "lut-build": 1,
    "lut-validate": 1,
    "lut-list": 1,
    "lut-export": 1,
    "lut-kernels": 1,
    "predict": 1,
    "search": 1,
    "scale": 1,
    "adapt": 1,
    "cache-info": 1,
    "profile-devices": 1,   # `hwnas profile --device a,b`: one profile result per device
}
# the results that are lists, written as {"schema": ..., "items": [...]}
LISTS = frozenset({"devices", "models", "lut-list", "profile-devices"})


def schema_id(kind: str) -> str:
    """"hwnas.<kind>/<version>" for a known kind."""
    if kind not in SCHEMA_VERSIONS:
        raise KeyError(f"no JSON schema is registered for results of kind {kind!r} (SCHEMA_VERSIONS in "
                       f"hwnas/schemas.py)")
    return f"hwnas.{kind}/{SCHEMA_VERSIONS[kind]}"


def kind_of(words) -> str:
    """The kind of the results of a command given by its words after `hwnas`: ["lut", "build"] -> "lut-build"."""
    return "-".join(words)


def stamp(kind: str, data) -> dict:
    """`data` with {"schema": "hwnas.<kind>/<n>"} as its first key; a list becomes {"schema": ..., "items": [...]}."""
    sid = schema_id(kind)
    if kind in LISTS:
        if not isinstance(data, (list, tuple)):
            raise TypeError(f"results of kind {kind!r} are a list, got {type(data).__name__}")
        return {"schema": sid, "items": list(data)}
    if not isinstance(data, dict):
        raise TypeError(f"results of kind {kind!r} are an object, got {type(data).__name__}")
    if "schema" in data:
        raise ValueError(f"results of kind {kind!r} already have a 'schema' key")
    return {"schema": sid, **data}


def parse(value) -> tuple[str, int] | None:
    """("lut-export", 1) for "hwnas.lut-export/1"; None for anything that is not such a name."""
    if not isinstance(value, str) or not value.startswith("hwnas.") or "/" not in value:
        return None
    kind, _, version = value[len("hwnas."):].rpartition("/")
    return (kind, int(version)) if kind and version.isdigit() else None
