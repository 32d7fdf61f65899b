"""The MnasNet reward: ACC(m) * (LAT(m) / T) ** w, with w = alpha if LAT <= T else beta.

- soft (the default): alpha = beta = -0.07. A network twice as slow as the target loses ~5% of reward,
  one twice as fast gains ~5%: latency is traded against accuracy on a smooth Pareto curve.
- hard: alpha = 0, beta = -1. Under the target only accuracy counts; over it, the reward falls in
  proportion to the overshoot (ACC * T / LAT).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError

SOFT_W = -0.07


@dataclass(frozen=True)
class Reward:
    target_ms: float
    alpha: float = SOFT_W
    beta: float = SOFT_W

    def __post_init__(self):
        if not (self.target_ms > 0 and np.isfinite(self.target_ms)):
            raise HwnasError(f"the latency target must be positive, got {self.target_ms!r} ms")
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not np.isfinite(v) or v > 0:
                raise HwnasError(f"the reward exponent {name} must be a finite number <= 0, got {v!r}")

    @classmethod
    def soft(cls, target_ms: float, w: float = SOFT_W) -> "Reward":
        return cls(target_ms, w, w)

    @classmethod
    def hard(cls, target_ms: float) -> "Reward":
        return cls(target_ms, 0.0, -1.0)

    @property
    def mode(self) -> str:
        if self.alpha == 0.0 and self.beta == -1.0:
            return "hard"
        return "soft" if self.alpha == self.beta else "custom"

    def __call__(self, accuracy: float, latency_ms: float) -> float:
        if not latency_ms > 0:
            raise HwnasError(f"latency must be positive to compute a reward, got {latency_ms!r} ms")
        ratio = latency_ms / self.target_ms
        w = self.alpha if latency_ms <= self.target_ms else self.beta
        return float(accuracy) * ratio ** w

    def batch(self, accuracy, latency_ms) -> np.ndarray:
        acc = np.asarray(accuracy, dtype=float)
        lat = np.asarray(latency_ms, dtype=float)
        ratio = lat / self.target_ms
        w = np.where(lat <= self.target_ms, self.alpha, self.beta)
        return acc * ratio ** w

    def to_dict(self) -> dict:
        return {"target_ms": self.target_ms, "alpha": self.alpha, "beta": self.beta, "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict) -> "Reward":
        return cls(float(d["target_ms"]), float(d["alpha"]), float(d["beta"]))
