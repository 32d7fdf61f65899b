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
        plot_scatter(predicted, measured, png, f"{space.name} on {device.name}: predicted vs measured",
                     metrics=report["predictor"], noise_floor=report["noise_floor"], statistic=report["statistic"])
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


def metrics_text(metrics: dict, noise_floor: dict | None = None) -> str:
    """The figure's own numbers: the predictor's agreement with the measurement and, under it, the noise floor
    (the second measurement against the first, which no predictor can beat)."""
    def lines(m: dict) -> list[str]:
        rho = m.get("spearman", float("nan"))
        return [f"  within ±5%   {100 * m['within_5pct']:5.1f}%", f"  within ±10%  {100 * m['within_10pct']:5.1f}%",
                f"  RMSE  {m['rmse_ms']:.3g} ms", f"  Spearman  {'n/a' if not math.isfinite(rho) else f'{rho:.3f}'}"]
    out = [f"predictor vs measured (n = {metrics['n']})"] + lines(metrics)
    if noise_floor:
        out += ["", "noise floor: 2nd measurement", "vs the 1st (same networks)"] + lines(noise_floor)
    return "\n".join(out)


def plot_scatter(predicted, measured, path, title: str, metrics: dict | None = None, noise_floor: dict | None = None,
                 statistic: str | None = None) -> dict:
    """Predicted against measured latency: the y = x line, a ±10% band, and a text box right of the axes with
    the figure's metrics (`metrics`, default computed here) and the noise floor when given. Written
    atomically. Returns {"path", "text", "points", "legend_box", "text_box", "axes_box"} (figure pixels)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hwnas.rundir import save_figure
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    metrics = metrics or agreement(predicted, measured)
    text = metrics_text(metrics, noise_floor)
    fig, (ax, side) = plt.subplots(1, 2, figsize=(8.4, 5.2), dpi=110, layout="constrained",
                                   gridspec_kw={"width_ratios": [3.0, 1.45]})
    side.axis("off")  # the legend and the numbers, beside the data
    lo, hi = float(min(np.min(predicted), np.min(measured))), float(max(np.max(predicted), np.max(measured)))
    xs = np.linspace(lo * 0.9, hi * 1.1, 10)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10% of measured")
    ax.plot(xs, xs, "k-", lw=1, label="y = x (a perfect prediction)")
    ax.scatter(measured, predicted, s=14, color="C0", zorder=3, label=f"held-out networks ({len(measured)})")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(xs[0], xs[-1])
    ax.set_aspect("equal")
    ax.set_xlabel(f"measured latency, ms{f' ({statistic})' if statistic else ''}", fontsize=9)
    ax.set_ylabel("predicted latency, ms (table + correction)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    legend = side.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="upper left", borderaxespad=0.0)
    box = side.text(0.0, 0.0, text, transform=side.transAxes, fontsize=8, family="monospace", va="bottom",
                    ha="left", bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.6"})
    fig.canvas.draw()
    drawn = {"path": Path(path), "text": text, "points": int(len(measured)),
             "legend_box": tuple(legend.get_window_extent().extents),
             "text_box": tuple(box.get_window_extent().extents), "axes_box": tuple(ax.get_window_extent().extents)}
    save_figure(fig, path)
    return drawn
