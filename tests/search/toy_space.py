"""A tiny real search space for the search tests: three conv blocks on 16x16 inputs, each block choosing
a kernel (3, 5), a width (8, 16, 24) and an expansion (1, 3). It builds real torch networks; its latency
"predictor" is a fixed additive cost table (so tests do not depend on a LUT build or on timing noise)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

try:  # implement the project's Space ABC when it is there
    from hwnas.search.spaces.base import Decision, OpSpec, Space
except ImportError:  # pragma: no cover - before search/spaces lands
    from abc import ABC as Space

    @dataclass(frozen=True)
    class Decision:
        name: str
        choices: tuple

    OpSpec = None

KERNELS = (3, 5)
WIDTHS = (8, 16, 24)
EXPANDS = (1, 3)
BLOCKS = 3


class _Block(nn.Module):
    def __init__(self, cin, cout, k, e, stride):
        super().__init__()
        mid = cin * e
        layers = []
        if e != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU()]
        layers += [nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class ToySpace(Space):
    name = "toy"

    def __init__(self, input_size: int = 16, num_classes: int = 10):
        self.input_size = input_size
        self.num_classes = num_classes
        self._decisions = []
        for b in range(BLOCKS):
            self._decisions += [Decision(f"b{b}.kernel", KERNELS), Decision(f"b{b}.width", WIDTHS),
                                Decision(f"b{b}.expand", EXPANDS)]

    def decisions(self):
        return list(self._decisions)

    def sample(self, rng):
        return tuple(int(rng.integers(len(d.choices))) for d in self._decisions)

    def mutate(self, arch, rng):
        arch = list(self.validate(arch))
        i = int(rng.integers(len(arch)))
        n = len(self._decisions[i].choices)
        arch[i] = (arch[i] + 1 + int(rng.integers(n - 1))) % n
        return tuple(arch)

    def validate(self, arch):
        arch = tuple(int(a) for a in arch)
        if len(arch) != len(self._decisions) or any(not 0 <= a < len(d.choices) for a, d in zip(arch, self._decisions)):
            raise ValueError(f"not an architecture of the toy space: {arch}")
        return arch

    def describe(self, arch):
        return {d.name: d.choices[a] for a, d in zip(self.validate(arch), self._decisions)}

    def build(self, arch, num_classes=None):
        d = self.describe(arch)
        layers = [nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
        cin = 8
        for b in range(BLOCKS):
            cout = d[f"b{b}.width"]
            layers += [_Block(cin, cout, d[f"b{b}.kernel"], d[f"b{b}.expand"], 2 if b else 1), nn.ReLU()]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes or self.num_classes)]
        return nn.Sequential(*layers)

    def ops(self, arch):  # not needed by the search tests
        return []

    def all_ops(self):
        return []

    def encode(self, archs):
        return np.array([self.validate(a) for a in archs], dtype=np.int64).reshape(len(archs), len(self._decisions))


class ToyPredictor:
    """Additive latency: base + a cost per chosen option, in ms. Bigger kernels/widths/expansions cost more."""

    BASE = 1.0

    def __init__(self, space: ToySpace):
        self.space = space
        self.costs = []
        for d in space.decisions():
            if d.name.endswith("kernel"):
                self.costs.append(np.array([0.2, 0.5]))
            elif d.name.endswith("width"):
                self.costs.append(np.array([0.2, 0.6, 1.2]))
            else:
                self.costs.append(np.array([0.1, 0.8]))
        self.fingerprint_key = "toy"

    def predict(self, arch) -> float:
        return float(self.BASE + sum(c[a] for c, a in zip(self.costs, self.space.validate(arch))))

    def predict_batch(self, archs) -> np.ndarray:
        archs = np.asarray(archs)
        return self.BASE + sum(c[archs[:, i]] for i, c in enumerate(self.costs))

    def min_latency(self) -> float:
        return float(self.BASE + sum(c.min() for c in self.costs))

    def max_latency(self) -> float:
        return float(self.BASE + sum(c.max() for c in self.costs))
