"""Where hwnas keeps its caches, and how big they may grow.

A cache holds what hwnas can make again on its own (ONNX and .tflite exports, trained supernets). All of it
lives under one root,

    $HWNAS_CACHE, else $HWNAS_HOME/cache when HWNAS_HOME is set, else ~/.cache/hwnas,

one folder per kind (`cache_dir("artifacts")`). An *entry* is a top-level item of a kind folder: a file, or a
folder whose size is counted with everything in it. Measured data (lut.db, calibration.json) is not cache: it
is never counted, evicted or cleared here (see docs/environment.md for where it lives).

The bound, $HWNAS_CACHE_MAX (default 2GB; 0 = no bound), is for all kinds together. A hit calls `touch(entry)`,
which marks the entry used by setting its access time explicitly (a file's modification time stays the time it
was written: device backends use it to tell a changed file). After a write, `evict(keep=entry)` removes the
least-recently-used entries until the cache fits the bound, and never removes

- the entry just written (`keep`),
- an entry used in the last hour (IN_USE_S): a run may still be timing it. The bound can therefore be exceeded
  by an hour's writes; it is met again at the first write after they age,
- a write in progress: writers use temporary names `.NAME.PID.HEX.tmp` (hwnas.rundir.atomic_path); only such
  files left for a day (STALE_TMP_S, a killed writer's) are removed.

Evictions and clears take a lock in the root, one at a time; an entry that vanishes meanwhile (another machine
on a shared cache, a user's `rm`) is skipped, never an error.
"""
from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hwnas.errors import HwnasError

KINDS = {
    "artifacts": "ONNX and .tflite exports of networks, by model hash",
    "supernet": "trained supernet checkpoints and their rank-correlation reports",
    "counts": "parameter and MAC counts of zoo models, by model source hash",
    "tensorrt": "TensorRT engines onnxruntime's TensorRT provider built (one per model, GPU and precision)",
    "kernels": "the small ONNX models a kernel table times (hwnas lut kernels), by kernel configuration",
    "predictor": "the short-training estimates an accuracy predictor (train-mlp) is fitted on",
}
DEFAULT_MAX = "2GB"
IN_USE_S = 3600.0
STALE_TMP_S = 86400.0
PROTECTED = ("lut.db", "calibration.json")  # measured data, never cache (also their -wal, .lock companions)
LOCK = ".cache.lock"

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- where ------------------------------------------------------------------------------------------------
def root_and_source() -> tuple[Path, str]:
    """(the cache root, the variable that chose it: HWNAS_CACHE, HWNAS_HOME or default)."""
    for var, sub in (("HWNAS_CACHE", ""), ("HWNAS_HOME", "cache")):
        value = os.environ.get(var, "").strip()
        if value:
            return (Path(value).expanduser() / sub).absolute(), var
    return Path.home() / ".cache" / "hwnas", "default"


def cache_root() -> Path:
    return root_and_source()[0]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise HwnasError(f"unknown cache kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return kind


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cache (created). Checks $HWNAS_CACHE_MAX too, so that a bad bound is reported
    before the work whose result would be cached, not after it."""
    check_kind(kind)
    max_bytes()
    d = cache_root() / kind
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- how big ----------------------------------------------------------------------------------------------
def parse_size(text: str, what: str = "HWNAS_CACHE_MAX") -> int | None:
    """'2GB' -> 2_000_000_000, '1.5GiB', '500M', '800k', '123' (bytes); '0' -> None (no bound)."""
    m = _SIZE.match(str(text))
    if not m:
        raise HwnasError(f"{what}={text!r} is not a size; write it like 2GB, 500MB or 1.5GiB (0 means no bound)")
    n = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    return n or None


def max_bytes() -> int | None:
    """The bound from $HWNAS_CACHE_MAX (default 2GB); None = no bound."""
    return parse_size(os.environ.get("HWNAS_CACHE_MAX", "").strip() or DEFAULT_MAX)


def parse_duration(text: str, what: str = "--older-than") -> float:
    """'7d', '12h', '30m', '45s', '2w' -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise HwnasError(f"{what} {text!r} is not a duration; write it like 7d, 12h, 30m or 2w")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def format_size(n: int) -> str:
    for div, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


# -- entries ----------------------------------------------------------------------------------------------
@dataclass
class Entry:
    path: Path
    kind: str
    bytes: int
    last_use: float  # seconds since the epoch


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _is_entry(name: str) -> bool:
    return not name.startswith(".") and not name.startswith(PROTECTED)


def _size(path: Path) -> int:
    """Bytes of a file, or of everything in a folder (symbolic links not followed); what vanishes counts 0."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                total += _size(Path(e.path))
    except (FileNotFoundError, NotADirectoryError):
        pass
    return total


def _last_use(st: os.stat_result) -> float:
    # a folder's access time changes whenever it is listed (its size is counted by listing it): only its
    # modification time, set by touch(), says when it was used
    return st.st_mtime if stat.S_ISDIR(st.st_mode) else max(st.st_atime, st.st_mtime)


def last_use(path: str | os.PathLike) -> float | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _last_use(st)


def touch(path: str | os.PathLike) -> bool:
    """Mark a cache entry used now. False if it does not exist (a miss). A file's modification time is kept;
    touching is best effort (a shared cache this user may not change still serves hits)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        if stat.S_ISDIR(st.st_mode):
            os.utime(path)
        else:
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


def _kinds(kind: str | None) -> list[str]:
    return [check_kind(kind)] if kind is not None else list(KINDS)


def _listing(kind: str | None, keep, when) -> list[Entry]:
    """Entries of the kind folders whose name `keep` accepts, dated by `when(path)`; vanished ones skipped."""
    root, out = cache_root(), []
    for k in _kinds(kind):
        try:
            with os.scandir(root / k) as it:
                items = [Path(e.path) for e in it if keep(e.name)]
        except FileNotFoundError:
            continue
        for p in items:
            try:
                out.append(Entry(p, k, _size(p), when(p)))
            except FileNotFoundError:
                continue
    return out


def entries(kind: str | None = None) -> list[Entry]:
    """The entries of one kind (or all), least recently used first."""
    return sorted(_listing(kind, _is_entry, lambda p: _last_use(os.stat(p))), key=lambda e: e.last_use)


def temp_files(kind: str | None = None) -> list[Entry]:
    """Writes in progress, or left behind by a killed writer."""
    return _listing(kind, is_temp, lambda p: os.lstat(p).st_mtime)


def remove(path: Path) -> bool:
    """Remove an entry; False if it was already gone (OSError for one that cannot be removed). A folder is first
    renamed to a temporary name, so no reader sees half of it and an interrupted removal is cleaned up as a
    stale temporary."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            doomed = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            os.unlink(path)
        return True
    except FileNotFoundError:
        return False


@contextmanager
def _locked():
    """One eviction or clear at a time over the cache root (released by the kernel if the process dies)."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a root this user cannot write: nothing here can be removed by it anyway
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _drop_stale_temps(now: float) -> None:
    for t in temp_files():
        if now - t.last_use > STALE_TMP_S:
            try:
                remove(t.path)
            except OSError:
                pass


def select_lru(ents: list[Entry], bound: int, keep: str | os.PathLike | None = None,
               now: float | None = None) -> list[Entry]:
    """The entries to remove, least recently used first, for `ents` to fit in `bound` bytes: never `keep`, never
    one used within IN_USE_S of `now`."""
    now = time.time() if now is None else now
    keep = Path(keep).absolute() if keep is not None else None
    total, chosen = sum(e.bytes for e in ents), []
    for e in sorted(ents, key=lambda e: e.last_use):
        if total <= bound:
            break
        if e.path.absolute() == keep or now - e.last_use < IN_USE_S:
            continue
        chosen.append(e)
        total -= e.bytes
    return chosen


def evict(keep: str | os.PathLike | None = None) -> list[Entry]:
    """After a write: remove least-recently-used entries until the cache fits $HWNAS_CACHE_MAX. Best effort (an
    entry this user may not remove stays). Returns the entries removed by this call."""
    bound = max_bytes()
    now = time.time()
    removed = []
    with _locked():
        _drop_stale_temps(now)
        if bound is None:
            return removed
        for e in select_lru(entries(), bound, keep, now):
            used = last_use(e.path)  # a hit may have touched it since it was listed
            if used is None or now - used < IN_USE_S:
                continue
            try:
                if remove(e.path):
                    removed.append(e)
            except OSError:
                pass
    return removed


def clear(kind: str | None = None, older_than: float | None = None) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """Remove every entry (of `kind`; not used for `older_than` seconds). Returns (the entries removed, the
    entries that could not be removed with the reason)."""
    now = time.time()
    removed, failed = [], []
    with _locked():
        _drop_stale_temps(now)
        for e in entries(kind):
            if older_than is not None and now - e.last_use < older_than:
                continue
            try:
                if remove(e.path):
                    removed.append(e)
            except OSError as err:
                failed.append((e, err.strerror or str(err)))
    return removed, failed


def _when(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _summary(ents: list[Entry]) -> dict:
    uses = [e.last_use for e in ents]
    return {"entries": len(ents), "bytes": sum(e.bytes for e in ents),
            "oldest_use": _when(min(uses, default=None)), "newest_use": _when(max(uses, default=None))}


def info() -> dict:
    """Where the cache is, its bound, and per kind: entries, bytes, oldest and newest use (UTC)."""
    root, source = root_and_source()
    bound = max_bytes()
    ents = entries()
    temps = temp_files()
    return {
        "root": str(root), "root_from": source,
        "max_bytes": bound, "max_from": "HWNAS_CACHE_MAX" if os.environ.get("HWNAS_CACHE_MAX", "").strip()
        else "default",
        **_summary(ents),
        "kinds": {k: {"path": str(root / k), "what": what, **_summary([e for e in ents if e.kind == k])}
                  for k, what in KINDS.items()},
        "temp_files": {"count": len(temps), "bytes": sum(t.bytes for t in temps)},
    }
