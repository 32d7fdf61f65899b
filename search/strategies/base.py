"""The Strategy interface and its registry."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from hwnas.errors import HwnasError
from hwnas.options import check_options
from hwnas.registry import Registry

STRATEGIES = Registry("search strategy", set_name=True)
register_strategy = STRATEGIES.register
list_strategies = STRATEGIES.names


def strategy_class(name: str) -> type["Strategy"]:
    return STRATEGIES.get(name)


def get_strategy(name: str, space, seed: int = 0, **options) -> "Strategy":
    cls = strategy_class(name)
    return cls(space, seed=seed, **check_options("strategy", name, cls, options, skip=("self", "space", "seed")))


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


class Strategy(ABC):
    """Proposes architectures (`ask`) and learns from their rewards (`tell`).

    Calls alternate: ask, tell, ask, tell... Given the same seed and the same rewards, a strategy
    proposes the same sequence, which is what makes a search reproducible and resumable: the runner
    restores the last checkpointed `state_dict` and replays the samples recorded after it.
    `tell` accepts any architecture of the space (e.g. replayed or injected ones)."""

    name: ClassVar[str]

    def __init__(self, space, seed: int = 0):
        self.space = space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.n_told = 0

    @abstractmethod
    def ask(self) -> tuple[int, ...]:
        ...

    def tell(self, arch, reward: float, accuracy: float | None = None, latency_ms: float | None = None) -> None:
        """Learn from one result; `accuracy` and `latency_ms` (the reward's parts) are for strategies that
        model them (progressive), the others learn from the reward alone."""
        self.n_told += 1
        self._tell(tuple(int(a) for a in arch), float(reward))

    def _tell(self, arch: tuple[int, ...], reward: float) -> None:
        """Learn from one result (nothing to learn for random search)."""

    def bind(self, latency=None, reward=None, estimator=None) -> None:
        """Given the latency predictor, the reward and the accuracy estimator before the first ask; strategies
        that rank candidates by predicted reward (progressive, predictor-evolution) keep what they use, the
        others need none."""

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "rng": rng_state(self.rng), "n_told": self.n_told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise HwnasError(f"checkpoint is for strategy {state.get('name')!r}, not {self.name!r}")
        set_rng_state(self.rng, state["rng"])
        self.seed = int(state.get("seed", self.seed))
        self.n_told = int(state["n_told"])

    def info(self) -> dict:
        """A few figures about the strategy's progress, for logs and the summary."""
        return {"strategy": self.name, "told": self.n_told}
