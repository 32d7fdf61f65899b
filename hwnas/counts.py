"""Parameter and MAC counts of zoo models, cached: counting builds the network and runs it once (the whole zoo
takes tens of seconds), so `hwnas models` and `hwnas profile` keep the counts in the cache ("counts" kind).

An entry is one JSON file per (model, input shape) holding the counts and the key they were made under: the
model name, the hwnas version and a hash of the model's source files (the module that registers it, the
hwnas.models modules it imports, directly or not, and the counting code). An entry whose key differs (the source
changed) is stale: it is recomputed and overwritten, never shown.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

from hwnas import __version__, cache
from hwnas.rundir import atomic_write_json

KIND = "counts"
_COUNTING_CODE = "hwnas.models.stats"


def _module_file(module: str) -> Path | None:
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    return Path(path) if path and path.endswith(".py") else None


def _imported(module: str, source: str) -> set[str]:
    """The modules a module's source imports (absolute names; relative imports resolved)."""
    package = module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in (*parts, base) if p)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


@lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_files(module: str) -> list[Path]:
    """`module`'s file and the files of the hwnas.models modules it imports, directly or not, and the counting
    code. Empty when the module has no source file (a model defined in an interactive session)."""
    first = _module_file(module)
    if first is None:
        return []
    seen, todo, files = set(), [module, _COUNTING_CODE], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        files[name] = path
        todo += [m for m in _imported(name, path.read_text()) if m.startswith("hwnas.models.") and m not in seen]
    return [files[n] for n in sorted(files)]


def module_hash(module: str) -> str | None:
    """A hash of the files `source_files(module)` lists (None when it has none)."""
    files = source_files(module)
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(p.name.encode() + b"\0" + _file_digest(str(p), st.st_mtime_ns, st.st_size).encode())
    return h.hexdigest()[:20]


def source_hash(name: str) -> str | None:
    """A hash of the source files of zoo model `name` (None: it has none, and its counts are not cached)."""
    from hwnas.models import get_info
    return module_hash(get_info(name).builder.__module__)


def _key(name: str, input_shape) -> dict:
    return {"model": name, "input_shape": [int(d) for d in tuple(input_shape)[1:]], "hwnas_version": __version__,
            "source_hash": source_hash(name)}


def entry_path(name: str, input_shape) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return cache.cache_dir(KIND) / f"{safe}-{'x'.join(str(int(d)) for d in tuple(input_shape)[1:])}.json"


def lookup(name: str, input_shape) -> dict | None:
    """The cached {'params', 'macs'} of zoo model `name` at `input_shape` (MACs per image), or None when there is
    no entry or it is stale."""
    key = _key(name, input_shape)
    if key["source_hash"] is None:
        return None
    try:
        path = entry_path(name, input_shape)
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    found = saved.get("counts")
    if not (isinstance(found, dict) and all(isinstance(found.get(k), int) for k in ("params", "macs"))):
        return None
    cache.touch(path)
    return {"params": found["params"], "macs": found["macs"]}


def compute(name: str, input_shape) -> dict:
    """Build zoo model `name` (1000 classes), count its parameters and MACs at `input_shape`, and cache them."""
    import torch

    import hwnas.models as zoo
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        found = zoo.stats(zoo.create(name), tuple(input_shape))
    key = _key(name, input_shape)
    if key["source_hash"] is not None:
        try:
            path = entry_path(name, input_shape)
            atomic_write_json(path, {"key": key, "counts": found})
            cache.evict(keep=path)
        except OSError:  # a cache this user cannot write: the counts are still right
            pass
    return found


def counts(name: str, input_shape) -> dict:
    """{'params', 'macs'} of zoo model `name` at `input_shape`: from the cache, else counted (and cached)."""
    return lookup(name, input_shape) or compute(name, input_shape)
