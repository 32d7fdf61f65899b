"""What a measured latency may be said to show: a speed-up or a met or missed target only outside the
measurement noise; inside it, "within noise".

The noise of a comparison is the larger of NOISE_PCT (what bench/noise.py measured between two measurements
of one network minutes apart on a shared 2-core machine: 75-100% agree within ±5%, 95-100% within ±10%, over
runs on different days) and twice the spread of the halves of the rounds of any measurement involved (a
measurement whose own halves disagree by s% is not trusted closer than that).
"""
from __future__ import annotations

NOISE_PCT = 5.0


def noise_pct(*spreads_pct: float | None) -> float:
    """The noise (in %) of a comparison between measurements whose halves were `spreads_pct` apart."""
    return max([NOISE_PCT] + [2.0 * float(s) for s in spreads_pct if s is not None])


def against_target(ms: float, target_ms: float, noise: float = NOISE_PCT) -> str:
    """"meets", "misses" or "within noise" of the target."""
    if ms <= target_ms * (1 - noise / 100):
        return "meets"
    if ms > target_ms * (1 + noise / 100):
        return "misses"
    return "within noise"


def speedup(before_ms: float, after_ms: float, noise: float = NOISE_PCT) -> str:
    """"faster", "slower" or "within noise": whether `after` is told apart from `before`."""
    ratio = before_ms / after_ms
    if ratio > 1 + noise / 100:
        return "faster"
    if ratio < 1 / (1 + noise / 100):
        return "slower"
    return "within noise"

