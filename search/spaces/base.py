"""The search-space contract shared by the LUT builder, the latency predictor and the strategies.

An architecture (`Arch`) is a tuple with one choice index per decision: hashable, JSON-able as a list,
and what an RL controller emits decision by decision. A space builds an architecture as a torch model
and lists the ops (layers) the model is made of, each with a canonical key: the key is what the latency
table stores, so two ops with the same key must be the same computation.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

Arch = tuple  # tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple


@dataclass(frozen=True)
class OpSpec:
    """One distinct op of a built network: its canonical key, its input shape and how to build it alone."""

    key: str
    input_shape: tuple
    builder: Callable[[], torch.nn.Module] = field(compare=False, repr=False)

    def build(self) -> torch.nn.Module:
        return self.builder().eval()


class Space(ABC):
    name: str = ""
    # whether build(arch) is exactly its ops(arch) in sequence (the supernet estimator shares modules by op)
    ops_are_network: bool = False
    input_size: int
    num_classes: int

    @abstractmethod
    def decisions(self) -> list[Decision]:
        """The ordered decisions; a controller picks each in turn."""

    @abstractmethod
    def build(self, arch: Arch, num_classes: int | None = None) -> torch.nn.Module:
        """The network of `arch`."""

    @abstractmethod
    def ops(self, arch: Arch) -> list[OpSpec]:
        """The ops the network of `arch` is made of, in order (stem and head included)."""

    @abstractmethod
    def all_ops(self) -> list[OpSpec]:
        """Every distinct op the space can produce, deduplicated by key (what a LUT build times)."""

    # -- generic parts ---------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        return tuple(int(rng.integers(len(d.choices))) for d in self.decisions())

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one decision to another of its choices."""
        arch = list(self.validate(arch))
        decisions = self.decisions()
        movable = [i for i, d in enumerate(decisions) if len(d.choices) > 1]
        i = movable[int(rng.integers(len(movable)))]
        n = len(decisions[i].choices)
        arch[i] = (arch[i] + 1 + int(rng.integers(n - 1))) % n
        return tuple(arch)

    def validate(self, arch) -> Arch:
        decisions = self.decisions()
        try:
            arch = tuple(int(a) for a in arch)
        except (TypeError, ValueError):
            raise ValueError(f"an architecture of space {self.name!r} is a list of integers, got {arch!r}") from None
        if len(arch) != len(decisions):
            raise ValueError(f"an architecture of space {self.name!r} has {len(decisions)} decisions, got {len(arch)}")
        for a, d in zip(arch, decisions):
            if not 0 <= a < len(d.choices):
                raise ValueError(f"decision {d.name!r} has {len(d.choices)} choices; index {a} is out of range")
        return arch

    def describe(self, arch: Arch) -> dict:
        return {d.name: d.choices[a] for a, d in zip(self.validate(arch), self.decisions())}

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.asarray([self.validate(a) for a in archs], dtype=np.int64).reshape(len(archs), len(self.decisions()))

    # -- optional capabilities, declared here (None: the space has none; a strategy or predictor then
    #    takes its general path)
    def min_cost(self, op_costs) -> float | None:
        """The cost of the cheapest network given a cost per op of all_ops() (exact, e.g. by dynamic
        programming over independent blocks), or None where the space has no such structure."""
        return None

    def features(self, archs) -> np.ndarray | None:
        """A numeric encoding of `archs` for accuracy predictors (one row each), or None (then encode())."""
        return None

    def op_indices(self, archs: np.ndarray) -> np.ndarray:
        """[N, L] indices into all_ops() of each architecture's ops (-1 pads). Spaces override this with a
        vectorised version; this generic one goes through ops() architecture by architecture."""
        index = {op.key: i for i, op in enumerate(self.all_ops())}
        rows = [[index[op.key] for op in self.ops(tuple(a))] for a in np.asarray(archs)]
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out


class Batched:
    """`space` with its ops timed at batch `batch` (a GPU's throughput story: batch 1 vs 64). Everything but the
    ops is the space's own: the same decisions, networks and indices; each op's key gains `-n:BATCH` and its input
    shape that batch, so a table at batch 32 never mixes with one at batch 1 (nor, through space_id, its networks).
    `batched(space, 1)` is the space itself."""

    def __init__(self, space, batch: int):
        self.space, self.batch = space, int(batch)
        self._all = None

    def _op(self, op: OpSpec) -> OpSpec:
        from hwnas.latency.lut.layers import batch_key
        return OpSpec(batch_key(op.key, self.batch), (self.batch, *op.input_shape[1:]), op.builder)

    def ops(self, arch: Arch) -> list[OpSpec]:
        return [self._op(op) for op in self.space.ops(arch)]

    def all_ops(self) -> list[OpSpec]:
        if self._all is None:
            self._all = [self._op(op) for op in self.space.all_ops()]
        return self._all

    def __getattr__(self, name):  # decisions, build, op_indices, min_cost, ...: the space's
        if name.startswith("__") or name in ("space", "batch", "_all"):  # a copy being made: not set yet
            raise AttributeError(name)
        return getattr(self.space, name)

    def __repr__(self) -> str:
        return f"Batched({self.space!r}, {self.batch})"


def batched(space, batch: int):
    if batch < 1:
        raise ValueError(f"a batch is at least 1, got {batch}")
    return space if batch == 1 else Batched(space, batch)


def batch_of(space) -> int:
    """The batch a space's networks are timed at (1 unless it is `batched`)."""
    return getattr(space, "batch", 1)
