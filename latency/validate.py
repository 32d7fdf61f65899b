"""Validation of a latency predictor: held-out networks timed end to end on the device.

Architectures are sampled with the user's seed from a stream disjoint from the one the correction was
fitted on (and any fit network is skipped). Each network is measured with the measurement protocol (the
same definition as the table's). Next to the predictor's accuracy the report gives the noise floor: the
same networks measured a second time, after the first pass, against the first pass (what the predictor is
compared with), which no predictor can beat.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError
from hwnas.settings import SettingError
from hwnas.latency.lut.build import NETWORK_PROTOCOL, fit_archs, time_networks
from hwnas.latency.lut.store import LutStore, space_id
from hwnas.latency.predict import LatencyPredictor, build_command, describe_correction
from hwnas.latency.protocol import Protocol, combine, statistic_of

VALIDATION_STREAM = 0xA11D


def validation_archs(space, samples: int, seed: int, exclude=()) -> list[tuple]:
    """`samples` distinct architectures drawn with `seed`, none of them in `exclude` (the fit networks)."""
    rng = np.random.default_rng([int(seed), VALIDATION_STREAM])
    excluded, archs = set(map(tuple, exclude)), []
    available = math.prod(len(d.choices) for d in space.decisions()) - len(excluded)
    if samples > available:
        raise HwnasError(f"space {space.name!r} has only {available} architectures that were not used to fit the "
                         f"correction; ask for at most that many --samples")
    while len(archs) < samples:
        a = space.sample(rng)
        if a not in excluded:
            excluded.add(a)
            archs.append(a)
    return archs


def agreement(pred: np.ndarray, meas: np.ndarray) -> dict:
    from scipy.stats import spearmanr
    rel = (pred - meas) / meas
    return {"n": int(len(meas)), "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "rmse_ms": float(np.sqrt(np.mean((pred - meas) ** 2))),
            "mean_abs_pct": float(100 * np.mean(np.abs(rel))), "max_abs_pct": float(100 * np.max(np.abs(rel))),
            "spearman": float(spearmanr(pred, meas).statistic) if len(meas) > 2 else float("nan")}


def validate(space, device, db_path: str | os.PathLike | None = None, *, samples: int = 50, seed: int = 0,
             protocol: Protocol = NETWORK_PROTOCOL, png: str | os.PathLike | None = None,
             store: LutStore | None = None, show_progress: bool = True) -> dict:
    if samples < 1:
        raise SettingError("{} must be at least 1", "samples")
    protocol.check()
    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    store = store or LutStore(db_path)
    predictor = LatencyPredictor.for_space(space, device, store=store)
    # never a network the correction was fitted on: those stored with the table, and (for a table imported
    # without its network timings) the first n_networks of the fit stream, which is where they came from
    fit = set(store.networks(device.fingerprint_key(), space_id(space), "fit"))
    fit |= set(fit_archs(space, int(predictor.correction.get("n_networks", 0))))
    archs = validation_archs(space, samples, seed, exclude=fit)
    predicted = positive_predictions(predictor, archs, device)  # before minutes of timing, not after
    # measured twice, one pass after the other: the second measurement is the noise floor's other half
    passes = []
    for purpose, what in (("validate", "held-out networks"), ("validate-repeat", "held-out networks, again")):
        time_networks(device, space, archs, store, purpose, protocol=protocol, show_progress=show_progress,
                      description=what)
        have = store.networks(device.fingerprint_key(), space_id(space), purpose)
        passes.append([[have[a][r] for r in sorted(have[a])] for a in archs])
    measured, again = (np.array([combine(r) for r in rounds]) for rounds in passes)
    report = {
        "space": space.name, "device": device.name, "fingerprint": device.fingerprint_key(), "seed": seed,
        "rounds": float(np.mean([len(r) for r in passes[0]])), "statistic": statistic_of(device, protocol),
        "protocol": protocol.to_dict(), "correction": predictor.correction,
        "predictor": agreement(predicted, measured),
        "raw_op_sum": agreement(predictor.raw_batch(archs), measured),
        "noise_floor": agreement(again, measured),
        "networks": [{"arch": list(a), "predicted_ms": float(p), "measured_ms": float(m)}
                     for a, p, m in zip(archs, predicted, measured)],
    }
    if png:
        plot_scatter(predicted, measured, png, f"{space.name} on {device.name}: predicted vs measured")
        report["plot"] = str(png)
    return report


def positive_predictions(predictor, archs, device) -> np.ndarray:
    """The predictor's latencies of `archs`, for a report or a plot: a prediction that is not a finite positive
    latency is an error naming the correction that made it, never a point on the plot."""
    predicted = predictor.predict_batch(archs)
    bad = np.flatnonzero(~(np.isfinite(predicted) & (predicted > 0)))
    if bad.size:
        i = int(bad[0])
        raise HwnasError(f"the correction of space {predictor.space.name!r} on device {device.name!r} "
                         f"({describe_correction(predictor.correction)}) predicts {predicted[i]:.4g} ms for network "
                         f"{list(archs[i])} ({bad.size} of {len(archs)} predictions are not positive); refit it with "
                         f"`{build_command(predictor.space, device)}`")
    return predicted


def plot_scatter(predicted, measured, path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = float(min(np.min(predicted), np.min(measured))), float(max(np.max(predicted), np.max(measured)))
    xs = np.linspace(lo * 0.9, hi * 1.1, 10)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10%")
    ax.scatter(measured, predicted, s=12)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
