"""The Estimator interface, its registry, and the per-architecture cache."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from hwnas.errors import HwnasError
from hwnas.registry import Registry
from hwnas.rundir import append_jsonl, read_jsonl

ESTIMATORS = Registry("accuracy estimator", set_name=True)
register_estimator = ESTIMATORS.register
list_estimators = ESTIMATORS.names


def estimator_class(name: str) -> type["Estimator"]:
    return ESTIMATORS.get(name)


def get_estimator(name: str, space, data=None, seed: int = 0, **options) -> "Estimator":
    cls = estimator_class(name)
    allowed = [p for p in inspect.signature(cls.__init__).parameters
               if p not in ("self", "space", "data", "seed")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise HwnasError(f"estimator {name!r} has no option {', '.join(unknown)}; its options: "
                         f"{', '.join(allowed) or 'none'}")
    return cls(space, data=data, seed=seed, **options)


class Estimator(ABC):
    """Estimates the accuracy of an architecture of `space`, as a number in [0, 1].

    `config()` identifies everything the value depends on (estimator, data, seed, options): the cache
    is keyed by it, so changing an option never reuses stale values."""

    name: ClassVar[str]
    #: True when the value is an accuracy measured on data; False for proxy scores mapped to (0, 1)
    is_accuracy: ClassVar[bool] = True

    def __init__(self, space, data=None, seed: int = 0):
        self.space = space
        self.data = data
        self.seed = int(seed)

    @abstractmethod
    def estimate(self, arch) -> float:
        ...

    def options(self) -> dict:
        return {}

    def config(self) -> dict:
        data = self.data if isinstance(self.data, (str, type(None))) else repr(self.data)
        if isinstance(data, str) and os.path.exists(data):
            data = os.path.abspath(data)
        return {"estimator": self.name, "space": getattr(self.space, "name", type(self.space).__name__),
                "data": data, "seed": self.seed, **self.options()}

    def config_key(self) -> str:
        return hashlib.sha1(json.dumps(self.config(), sort_keys=True, default=str).encode()).hexdigest()[:12]


class CachedEstimator:
    """Wraps an estimator with an append-only JSON-lines cache (one line per architecture, fsynced):
    an architecture is never estimated twice, in this run or in a resumed one. Lines written under
    another estimator config are ignored; a torn last line (a kill mid-write) is cut off, damage elsewhere
    is an error naming the line."""

    def __init__(self, estimator: Estimator, path: str | os.PathLike | None = None):
        self.estimator = estimator
        self.key = estimator.config_key()
        self.path = Path(path) if path else None
        self.values: dict[tuple[int, ...], float] = {}
        self.hits = 0
        self.misses = 0
        if self.path:
            # a torn last line (a kill mid-write) is cut off here, so later appends start on a clean line
            for row in read_jsonl(self.path, repair=True):
                if isinstance(row, dict) and row.get("config") == self.key:
                    self.values[tuple(row["arch"])] = float(row["value"])

    @property
    def name(self) -> str:
        return self.estimator.name

    def config(self) -> dict:
        return self.estimator.config()

    def estimate(self, arch) -> float:
        arch = tuple(int(a) for a in arch)
        if arch in self.values:
            self.hits += 1
            return self.values[arch]
        self.misses += 1
        value = float(self.estimator.estimate(arch))
        self.values[arch] = value
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, {"config": self.key, "arch": list(arch), "value": value})
        return value
