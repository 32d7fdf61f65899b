"""Progress for long jobs: a rich bar (count, elapsed, ETA) on a terminal, silence elsewhere.

    with progress(total=len(ops), description="LUT build") as bar:
        for op in ops:
            ...
            bar.advance()
    for op in track(ops, description="LUT build"):   # the same, wrapping an iterable
        ...
    log("built 120 rows")        # one plain line on stderr, on a terminal or not

Bars are drawn only when stderr is a terminal and HWNAS_NO_PROGRESS is unset (or 0); otherwise
nothing at all is written. `log` is never silenced, so jobs off a terminal still say what they do.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def bars_enabled() -> bool:
    """True when a bar would be drawn: stderr is a terminal and HWNAS_NO_PROGRESS is not set."""
    return sys.stderr.isatty() and os.environ.get("HWNAS_NO_PROGRESS", "") in ("", "0")


class _Bar:
    """Handle yielded by `progress`; a no-op when bars are off."""

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
def progress(total: int | None, description: str = "", enabled: bool | None = None, completed: int = 0):
    """Yield a bar with .advance(n) and .update(completed=..., description=...).

    `enabled`: None = decide by `bars_enabled()`, False = always quiet, True = draw even off a terminal.
    `completed` starts the count (a resumed job).
    """
    on = bars_enabled() if enabled is None else enabled
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


def track(items: Iterable[T], description: str = "", total: int | None = None,
          enabled: bool | None = None) -> Iterator[T]:
    """Iterate over `items`, advancing a bar (same rules as `progress`) by one per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, description, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()


def log(message: str) -> None:
    """One plain line on stderr, never silenced. Printed verbatim (no rich markup: shapes like
    [1, 3, 32, 32] stay as written)."""
    print(message, file=sys.stderr, flush=True)
