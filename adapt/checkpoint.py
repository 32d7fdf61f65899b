"""Run state on disk: state.json (small, rewritten atomically after every finished step) plus model files.

Order of writes makes kill -9 safe: a step's model file is written (fsynced, renamed) before the state
that names it, so a resumed run either sees the step finished with its model, or redoes it entirely.
The durable writes, the one-writer lock and the same-settings rule are hwnas.rundir's.
"""
from __future__ import annotations

from pathlib import Path

from hwnas.rundir import atomic_write_json, check_same_config, read_json

STATE = "state.json"


def load_state(out: Path) -> dict | None:
    p = out / STATE
    if not p.exists():
        return None
    state = read_json(p, "NetAdapt run state")
    if not isinstance(state, dict) or "trajectory" not in state:
        from hwnas.errors import HwnasError
        raise HwnasError(f"the NetAdapt run state {p} is not one hwnas wrote (no trajectory); start a new --out")
    return state


def save_state(out: Path, state: dict) -> None:
    atomic_write_json(out / STATE, state)


def check_same_run(saved: dict, config: dict, out) -> None:
    """Every recorded setting of the run must be the same on resume (except the RESUMABLE ones)."""
    from hwnas.adapt.config import RESUMABLE, saved_record
    check_same_config(saved_record(saved), config, out, "NetAdapt settings", ignore=RESUMABLE)
