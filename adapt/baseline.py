"""The NetAdapt baseline: the same network made uniformly narrower (every group × one width multiplier),
from the same starting weights (weakest-L2 filters removed), fine-tuned for the same number of steps.

`match_latency` finds the widest multiplier whose *measured* latency meets a target (bisection on the
device: `widest_within`, which bench/versus.py also uses for zoo networks); `evaluate_width` trains and
measures one multiplier; `latency_at_accuracy` interpolates a curve.
"""
from __future__ import annotations

import copy

from hwnas.adapt.groups import scale_width
from hwnas.adapt.proposals import fine_tune


def measure_width(device, start, shape, mult: float, unit: int, runs: int, lat_shape=None) -> tuple[float, object]:
    """(measured latency, model) of `start` scaled to `mult` (the measurement protocol, `runs` per round), traced
    at `shape` and timed at `lat_shape` (the deployment input; default `shape`)."""
    from hwnas.latency.protocol import NETWORK
    model = scale_width(copy.deepcopy(start), shape, mult, unit).eval()
    return device.latency(model, lat_shape or shape, NETWORK.but(runs=runs)).ms, model


def match_latency(device, start, shape, target_ms: float, unit: int = 8, runs: int = 10,
                  iterations: int = 7, lat_shape=None) -> tuple[float, float]:
    """(multiplier, measured ms): the widest uniform multiplier of `start` measuring ≤ target_ms (at `lat_shape`)."""
    return widest_within(lambda mult: measure_width(device, start, shape, mult, unit, runs, lat_shape)[0],
                         target_ms, 1e-9, 1.0, iterations)


def widest_within(latency_of, target_ms: float, lo: float, hi: float, iterations: int = 7) -> tuple[float, float]:
    """(multiplier, ms): bisection for the widest multiplier in [lo, hi] whose measured latency
    (`latency_of(mult)`, one measurement each) is ≤ target_ms; `hi` itself when it already is, `lo` when
    nothing is."""
    ms_hi = latency_of(hi)
    if ms_hi <= target_ms:
        return hi, ms_hi
    best = (lo, latency_of(lo))
    for _ in range(iterations):
        mid = (lo + hi) / 2
        ms = latency_of(mid)
        if ms <= target_ms:
            lo, best = mid, (mid, ms)
        else:
            hi = mid
    return best


def evaluate_width(device, start, shape, mult: float, data: dict, steps: int, *, unit: int = 8, batch_size: int = 64,
                   lr: float = 0.01, seed: int = 0, runs: int = 10, lat_shape=None, teacher=None, test=None) -> dict:
    """One multiplier: measured at `lat_shape` (default `shape`), fine-tuned `steps` at `data`'s size (distilled
    from `teacher` when given, as NetAdapt's fine-tuning is), top-1; params and MACs at the measured shape.
    `test` (model -> top-1 on images no choice was made on) adds `test_accuracy`."""
    from hwnas.models import stats
    ms, model = measure_width(device, start, shape, mult, unit, runs, lat_shape)
    acc = fine_tune(model, data, steps, batch_size, lr, seed, f"uniform x{mult:.3f}", teacher=teacher)
    s = stats(model, (1, *(lat_shape or shape)[1:]))
    row = {"width_mult": mult, "measured_ms": ms, "accuracy": float(acc), "params": int(s["params"]),
           "macs": int(s["macs"]), "steps": steps}
    if test is not None:
        row["test_accuracy"] = float(test(model))
    return row


def latency_at_accuracy(points: list[dict], accuracy: float) -> float | None:
    """Latency where a (latency, accuracy) curve first reaches `accuracy`, linearly interpolated; None if
    the curve never gets there."""
    pts = sorted(points, key=lambda p: p["measured_ms"])
    if not pts or max(p["accuracy"] for p in pts) < accuracy:
        return None
    if pts[0]["accuracy"] >= accuracy:
        return pts[0]["measured_ms"]
    for a, b in zip(pts, pts[1:]):
        if a["accuracy"] < accuracy <= b["accuracy"]:
            f = (accuracy - a["accuracy"]) / (b["accuracy"] - a["accuracy"])
            return a["measured_ms"] + f * (b["measured_ms"] - a["measured_ms"])
    return pts[-1]["measured_ms"]
