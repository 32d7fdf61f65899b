"""The Estimator interface, its registry, and the per-architecture cache."""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from functools import partial
from pathlib import Path
from typing import ClassVar

from hwnas.errors import HwnasError
from hwnas.options import check_options
from hwnas.registry import Registry
from hwnas.rundir import append_jsonl, read_jsonl

ESTIMATORS = Registry("accuracy estimator", set_name=True)
register_estimator = ESTIMATORS.register
list_estimators = ESTIMATORS.names


def estimator_class(name: str) -> type["Estimator"]:
    return ESTIMATORS.get(name)


def get_estimator(name: str, space, data=None, seed: int = 0, train_device: str = "cpu", **options) -> "Estimator":
    """An estimator by name; `train_device` (auto, cpu, cuda, cuda:N) is where estimators that train do so."""
    from hwnas.train import resolve_train_device
    cls = estimator_class(name)
    est = cls(space, data=data, seed=seed, **check_options("estimator", name, cls, options))
    est.train_device = resolve_train_device(train_device)
    return est


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

    #: True when trained_model(arch) gives the network the estimate was measured on (a search exports it)
    trains: ClassVar[bool] = False
    #: what the weights of trained_model(arch) are, as a search's summary says of its exported network
    weights_note: ClassVar[str] = "short-trained like the accuracy estimate"
    #: where an estimator that trains runs its steps ("cpu", "cuda", "cuda:N"; get_estimator resolves "auto").
    #: Not part of config(): a value trained on the GPU estimates the same architecture as one from the CPU
    train_device: str = "cpu"

    @abstractmethod
    def estimate(self, arch) -> float:
        ...

    def estimate_many(self, archs, executor=None, log=None) -> list[float]:
        """Estimates of `archs`, in order; with an executor (hwnas.executor) the distinct ones are computed
        as its free tasks, in parallel."""
        archs = [tuple(int(a) for a in arch) for arch in archs]
        if executor is None or len(archs) <= 1:
            return [float(self.estimate(a)) for a in archs]
        from hwnas.executor import map_tasks
        todo = sorted(set(archs))
        threads = max(1, (os.cpu_count() or 1) // max(1, executor.capacity))
        values = {}
        for j, v in map_tasks(executor, partial(_estimate_task, self, threads), todo, log=log):
            values[todo[j]] = v
        return [values[a] for a in archs]

    def num_classes(self) -> int | None:
        """The class count of the data the estimate is measured on (a network built for it, e.g. the one a
        search exports, gets a head of that size); None when the estimator has no such data."""
        return None

    def trained_model(self, arch):
        """The network of `arch` as trained for its estimate (estimators with `trains`)."""
        raise HwnasError(f"estimator {self.name!r} trains no network")

    def info(self) -> dict:
        """What a run's summary should say about the estimator beyond its config."""
        return {}

    def warm_up(self, log=None) -> None:
        """Work done once before the first estimate (a supernet's training): a search runs it before its bar
        starts, so that the bar's ETA measures search steps only. Nothing by default."""

    def options(self) -> dict:
        return {}

    def config(self) -> dict:
        data = self.data if isinstance(self.data, (str, type(None))) else repr(self.data)
        if isinstance(data, str) and os.path.exists(data):
            data = os.path.abspath(data)
        # the input size the estimate is measured at (a search's --train-size): values at 32 and 224 differ
        return {"estimator": self.name, "space": getattr(self.space, "name", type(self.space).__name__),
                "input_size": getattr(self.space, "input_size", None), "data": data, "seed": self.seed,
                **self.options()}

    def config_key(self) -> str:
        return key_of(self.config())


def key_of(config: dict) -> str:
    """A short stable hash of a config (what cache keys and checkpoint names are made of)."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _estimate_task(estimator: Estimator, threads: int, arch) -> float:
    """A free task: one estimate, in a worker of an executor."""
    import torch
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return float(estimator.estimate(arch))


class CachedEstimator(Estimator):
    """An estimator with an append-only JSON-lines cache (one line per architecture, fsynced): an
    architecture is never estimated twice, in this run or in a resumed one. Lines written under another
    estimator config are ignored; a torn last line (a kill mid-write) is cut off, damage elsewhere is an
    error naming the line. Everything else (name, config, capabilities) is the wrapped estimator's."""

    def __init__(self, estimator: Estimator, path: str | os.PathLike | None = None):
        super().__init__(estimator.space, data=estimator.data, seed=estimator.seed)
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
    def name(self) -> str:  # type: ignore[override]
        return self.estimator.name

    @property
    def is_accuracy(self) -> bool:  # type: ignore[override]
        return self.estimator.is_accuracy

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return self.estimator.trains

    @property
    def weights_note(self) -> str:  # type: ignore[override]
        return self.estimator.weights_note

    def config(self) -> dict:
        return self.estimator.config()

    def options(self) -> dict:
        return self.estimator.options()

    def num_classes(self) -> int | None:
        return self.estimator.num_classes()

    def trained_model(self, arch):
        return self.estimator.trained_model(arch)

    def info(self) -> dict:
        return self.estimator.info()

    def warm_up(self, log=None) -> None:
        self.estimator.warm_up(log)

    def estimate(self, arch) -> float:
        return self.estimate_many([arch])[0]

    def estimate_many(self, archs, executor=None, log=None) -> list[float]:
        """Cached values first; the distinct others estimated by the wrapped estimator (in parallel on an
        executor) and recorded once each, in order."""
        archs = [tuple(int(a) for a in arch) for arch in archs]
        todo = sorted({a for a in archs if a not in self.values})
        self.hits += sum(a in self.values for a in archs)
        self.misses += len(todo)
        for arch, value in zip(todo, self.estimator.estimate_many(todo, executor, log)):
            self._record(arch, float(value))
        return [self.values[a] for a in archs]

    def _record(self, arch: tuple[int, ...], value: float) -> None:
        self.values[arch] = value
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, {"config": self.key, "arch": list(arch), "value": value})
