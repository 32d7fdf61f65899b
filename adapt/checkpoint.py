"""Run state on disk: state.json (small, rewritten atomically after every finished step) plus model files.

Order of writes makes kill -9 safe: a step's model file is written (fsynced, renamed) before the state
that names it, so a resumed run either sees the step finished with its model, or redoes it entirely.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from hwnas.errors import HwnasError

STATE = "state.json"


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=float)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_state(out: Path) -> dict | None:
    p = out / STATE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HwnasError(f"cannot read the run state {p}: {e}") from None


def save_state(out: Path, state: dict) -> None:
    write_json_atomic(out / STATE, state)


def check_same_run(saved: dict, config: dict, keys=("model", "budget_ms", "device", "data", "input_size",
                                                     "unit", "seed")) -> None:
    diff = [k for k in keys if saved.get(k) != config.get(k)]
    if diff:
        k = diff[0]
        raise HwnasError(f"cannot resume: the run in this --out used {k}={saved.get(k)!r}, not {config.get(k)!r}")
