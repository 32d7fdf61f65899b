"""Progress for long jobs: a rich bar (count, elapsed, ETA) on a terminal, silence elsewhere.

    with progress(total=len(ops), description="LUT build") as bar:
        for op in ops:
            ...
            bar.advance()
    log("built 120 rows")        # one plain line on stderr, on a terminal or not

Set HWNAS_NO_PROGRESS=1 to silence bars even on a terminal (logs are still printed).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def enabled() -> bool:
    return sys.stderr.isatty() and os.environ.get("HWNAS_NO_PROGRESS", "") in ("", "0")


class _Bar:
    def __init__(self, rich_progress=None, task=None):
        self._p, self._t = rich_progress, task

    def advance(self, n: int = 1, description: str | None = None) -> None:
        if self._p is not None:
            kw = {"description": description} if description else {}
            self._p.update(self._t, advance=n, **kw)

    def update(self, completed: int | None = None, description: str | None = None) -> None:
        if self._p is not None:
            kw = {}
            if completed is not None:
                kw["completed"] = completed
            if description:
                kw["description"] = description
            self._p.update(self._t, **kw)


@contextmanager
def progress(total: int | None, description: str = "", enabled_: bool | None = None, completed: int = 0):
    """A context manager yielding a bar with .advance(n) and .update(completed=..., description=...)."""
    on = enabled() if enabled_ is None else enabled_
    if not on:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=False) as p:
        task = p.add_task(description, total=total, completed=completed)
        yield _Bar(p, task)


def log(message: str) -> None:
    """One plain line on stderr (not silenced: long jobs say what they do even off a terminal)."""
    print(message, file=sys.stderr, flush=True)
