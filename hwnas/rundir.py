"""Run directories on disk, written one way by every long job (search, scale, NetAdapt, estimator caches).

- `RunLock(out)`: one writer at a time. An exclusive `flock` on `out/.hwnas.lock` (released by the kernel
  when the process dies, so a kill -9 leaves no stale lock), with the owner's PID written in it so that a
  second run on the same directory is refused with one line naming who holds it.
- `atomic_write_bytes/json`, `atomic_path`: write a temporary file with a name no other writer uses, fsync,
  rename, fsync the directory: a reader sees the old file or the new one, never half of one.
- `append_jsonl` / `read_jsonl`: one fsynced line per record. A torn last line (a kill mid-write) is the only
  damage repaired; a bad line followed by good ones means the file was edited or mixed with another run, and is
  refused with its line number (never silently truncated).
- `check_same_config`: the one "same run?" rule on resume: every recorded setting must match, except the
  named ones that cannot change a result.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError

LOCK = ".hwnas.lock"


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def dumps(obj, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, default=_json_default)


def prepare_dir(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Create `out` (and parents) and check it can be written, before any long work starts."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HwnasError(f"{flag} {out} exists and is not a directory") from None
    except NotADirectoryError:
        raise HwnasError(f"{flag} {out}: a parent of it is a file, not a directory") from None
    except OSError as e:
        raise HwnasError(f"cannot create {flag} {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise HwnasError(f"{flag} {out} is not writable")
    return out


class RunLock:
    """Hold `out/.hwnas.lock` for as long as this object lives (or its `with` block runs)."""

    def __init__(self, out: str | os.PathLike, what: str = "run"):
        self.path = Path(out) / LOCK
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise HwnasError(f"cannot lock {self.path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = f" ({holder})" if holder else ""
                raise HwnasError(f"{self.path.parent} is in use by another hwnas {self.what}{who}; wait for it to "
                                 f"finish or choose another --out") from None
            raise HwnasError(f"cannot lock {self.path.parent}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock; the empty file stays (unlinking would race a waiter)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary name beside `path`, unique to this writer, for code that writes a file by name (an exporter):
    renamed onto `path` when the block ends normally, removed if it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode())


def append_jsonl(path: str | os.PathLike, obj) -> None:
    """Append one record as one line (one write, fsynced). A run repairs a torn last line (read_jsonl with
    repair=True) before its first append, so every record starts on a line of its own."""
    line = (dumps(obj) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list:
    """The records of a JSON-lines file. Only the last line may be torn (no newline, or not JSON): it is
    ignored and, with repair=True, cut off the file so the next append starts on a clean line. A bad line
    anywhere else is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HwnasError(f"cannot read {path}: {e.strerror}") from None
    records, pos, good_end = [], 0, 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        end = pos + len(line) + 1
        last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        complete = end <= len(raw)
        if not line.strip():
            if complete:
                good_end = end
            pos = end
            continue
        try:
            rec = json.loads(line)
        except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
            rec = _BAD
        if rec is _BAD or not complete:
            if last:
                break  # a torn last line: the kill came mid-write
            raise HwnasError(f"{path}: line {number} is not a complete JSON record but lines after it are: the "
                             f"file was edited or damaged; --resume cannot repair that (restore the line or start "
                             f"a new --out)")
        records.append(rec)
        pos = good_end = end
    if repair and good_end < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return records


_BAD = object()


def read_json(path: str | os.PathLike, what: str = "run file"):
    """A JSON file hwnas wrote, with damage named instead of a decoder's exception."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except OSError as e:
        raise HwnasError(f"cannot read the {what} {path}: {e.strerror}") from None
    except ValueError as e:
        raise HwnasError(f"the {what} {path} is damaged (not JSON: {str(e).splitlines()[0][:80]}); it is rewritten "
                         f"by every step, so a damaged copy means the run directory was edited: restore it or start "
                         f"a new --out") from None


def check_same_config(saved: dict, config: dict, where: str | os.PathLike, what: str = "settings",
                      ignore: tuple[str, ...] = ()) -> None:
    """On resume: every recorded setting must be the same, except `ignore` (ones that cannot change a result,
    e.g. how many samples are still to come, or how many workers run)."""
    changed = [k for k in sorted(set(config) - set(ignore)) if saved.get(k) != config.get(k)]
    if changed:
        from hwnas.settings import SettingError, literal
        details = ", ".join("{}: " + literal(f"{saved.get(k)!r} -> {config.get(k)!r}") for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise SettingError(f"cannot resume {literal(where)}: the {what} changed ({details}{more}); resume with the same "
                           f"settings or choose another {{}}", *changed[:4], "out")


def save_figure(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure as PNG, replaced atomically (a reader or a kill never sees half a plot), then closed."""
    import matplotlib.pyplot as plt
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
