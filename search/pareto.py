"""The accuracy/latency Pareto front of a search, its hypervolume, and a plot of it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def pareto_mask(latency_ms: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True where no other point is at least as fast and at least as accurate, and strictly better in
    one of the two. Duplicates of a front point are all kept."""
    lat = np.asarray(latency_ms, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    n = len(lat)
    keep = np.ones(n, dtype=bool)
    order = np.lexsort((-acc, lat))  # by latency, then by accuracy high first
    best_acc = -np.inf
    best_lat = None
    for i in order:
        if acc[i] > best_acc:
            best_acc, best_lat = acc[i], lat[i]
        elif acc[i] == best_acc and lat[i] == best_lat:
            pass  # an exact duplicate of the current front point
        else:
            keep[i] = False
    return keep


def pareto_front(records: Sequence[dict], lat_key: str = "latency_ms", acc_key: str = "accuracy") -> list[dict]:
    """The non-dominated records, fastest first."""
    if not records:
        return []
    mask = pareto_mask([r[lat_key] for r in records], [r[acc_key] for r in records])
    front = [r for r, k in zip(records, mask) if k]
    return sorted(front, key=lambda r: (r[lat_key], -r[acc_key]))


def hypervolume(latency_ms: Sequence[float], accuracy: Sequence[float], ref_latency_ms: float,
                ref_accuracy: float = 0.0) -> float:
    """Area dominated by the points and bounded by the reference point (ref_latency_ms, ref_accuracy):
    latency is minimised, accuracy maximised; points slower than the reference count for nothing.
    Units: ms x accuracy."""
    lat = np.asarray(latency_ms, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    ok = (lat < ref_latency_ms) & (acc > ref_accuracy)
    lat, acc = lat[ok], acc[ok]
    if lat.size == 0:
        return 0.0
    mask = pareto_mask(lat, acc)
    lat, acc = lat[mask], acc[mask]
    order = np.argsort(lat)
    lat, acc = lat[order], acc[order]
    area = 0.0
    for i in range(len(lat)):
        right = lat[i + 1] if i + 1 < len(lat) else ref_latency_ms
        area += (right - lat[i]) * (acc[i] - ref_accuracy)
    return float(area)


def step_points(front: Sequence[dict], until_ms: float | None = None, lat_key: str = "latency_ms",
                acc_key: str = "accuracy") -> tuple[list[float], list[float]]:
    """The vertices of the front drawn as a step: the best accuracy reachable within a latency. Each front
    point (fastest first) holds its accuracy until the next, slower and more accurate, point; the last one
    holds until `until_ms` (when given and beyond it). Exact duplicates make no extra vertex."""
    xs: list[float] = []
    ys: list[float] = []
    for r in front:
        x, y = float(r[lat_key]), float(r[acc_key])
        if xs and (x, y) == (xs[-1], ys[-1]):
            continue
        if xs:
            xs.append(x)
            ys.append(ys[-1])  # the previous accuracy held up to this latency
        xs.append(x)
        ys.append(y)
    if xs and until_ms is not None and until_ms > xs[-1]:
        xs.append(float(until_ms))
        ys.append(ys[-1])
    return xs, ys


def estimator_label(estimator: str | None, is_accuracy: bool = True, input_size: int | None = None) -> str:
    """The y axis: what the estimator's number is, and at which input size it was measured (when given: a search
    estimates accuracy at its training size, not at the deployment size its latency is for)."""
    at = f" at {input_size}x{input_size}" if input_size else ""
    if not estimator:
        return f"accuracy{at}" if is_accuracy else f"score{at} (a proxy, not an accuracy)"
    if is_accuracy:
        return f"top-1 accuracy{at} ({estimator})"
    return f"{estimator} score{at} (a proxy, not an accuracy)"


def latency_label(latency_source: str, statistic: str | None, measured_statistic: str | None,
                  has_measured: bool) -> str:
    """The x axis: where each latency comes from, and the statistic of a measured one."""
    if latency_source == "measured":
        return f"latency, ms (measured on the device{': ' + statistic if statistic else ''})"
    if latency_source != "predicted":
        raise ValueError(f"latency_source must be 'predicted' or 'measured', got {latency_source!r}")
    if not has_measured:
        return "latency, ms (predicted by the table)"
    stat = f", {measured_statistic}" if measured_statistic else ""
    return f"latency, ms\n(dots, rings: predicted by the table; diamonds: measured on the device{stat})"


def plot_pareto(records: Sequence[dict], path: str | Path, target_ms: float | None = None,
                title: str = "", measured: Sequence[dict] = (), *, value_label: str | None = None,
                estimator: str | None = None, is_accuracy: bool = True, value_input_size: int | None = None,
                latency_source: str = "predicted",
                latency_statistic: str | None = None, samples_label: str = "all samples") -> dict:
    """Every sample (faint), the front as a step, the target (vertical line) and, if given, the networks
    re-measured on the device (`measured`: records with measured_ms, and optionally measured_spread_pct and
    measured_statistic as hwnas.search.results records them) at their measured latency, each linked to its
    predicted point. The legend sits below the axes, off the data.

    `latency_source`: whether the records' latency_ms are "predicted" (by the table; the default) or
    "measured" (then `latency_statistic` names the statistic); `samples_label` names the records in the
    legend. The y label is `value_label`, else made from `estimator`, `is_accuracy` and `value_input_size`. Returns what was drawn: {"path", "front": (xs, ys) of the step, "links",
    "error_bars", "xlabel", "ylabel", "legend_box", "axes_box"} (boxes in figure pixels, x0 y0 x1 y1)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hwnas.rundir import save_figure

    path = Path(path)
    ylabel = value_label or estimator_label(estimator, is_accuracy, value_input_size)
    stat = next((m.get("measured_statistic") for m in measured if m.get("measured_statistic")), None)
    xlabel = latency_label(latency_source, latency_statistic, stat, bool(measured))
    fig, ax = plt.subplots(figsize=(7.0, 5.4), dpi=110, layout="constrained")
    drawn = {"path": path, "front": ([], []), "links": 0, "error_bars": 0, "xlabel": xlabel, "ylabel": ylabel}
    xmax = max([r["latency_ms"] for r in records] + [m["measured_ms"] for m in measured] + [target_ms or 0.0])
    if records:
        ax.scatter([r["latency_ms"] for r in records], [r["accuracy"] for r in records], s=9 if len(records) > 50
                   else 16, color="0.55", alpha=0.35 if len(records) > 50 else 0.7, lw=0,
                   label=f"{samples_label} ({len(records)})", zorder=1)
        front = pareto_front(records)
        xs, ys = step_points(front, until_ms=xmax)
        ax.plot(xs, ys, "-", color="C0", lw=1.6, zorder=3,
                label=f"Pareto front ({len(front)}): best within a latency")
        ax.scatter([r["latency_ms"] for r in front], [r["accuracy"] for r in front], s=22, color="C0", zorder=4)
        drawn["front"] = (xs, ys)
    if measured:
        _draw_measured(ax, measured, drawn)
    if target_ms is not None:
        ax.axvline(target_ms, color="C2", ls="--", lw=1.2, label=f"target {target_ms:g} ms", zorder=2)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.canvas.draw()
    if legend.get_window_extent().width > fig.bbox.width:  # too wide side by side: one entry a line
        legend.remove()
        legend = fig.legend(handles, labels, loc="outside lower center", ncol=1, fontsize=8, frameon=False)
    fig.canvas.draw()
    drawn["legend_box"] = tuple(legend.get_window_extent().extents)
    drawn["axes_box"] = tuple(ax.get_tightbbox().extents)
    save_figure(fig, path)
    return drawn


def _draw_measured(ax, measured: Sequence[dict], drawn: dict) -> None:
    """The re-measured networks: a hollow ring on the predicted point, a diamond at the measured latency
    (error bar: the two halves of its rounds, ±spread/2), and a dotted line between the two."""
    pred = [m.get("predicted_ms", m.get("latency_ms")) for m in measured]
    meas = [m["measured_ms"] for m in measured]
    acc = [m["accuracy"] for m in measured]
    for p, q, a in zip(pred, meas, acc):
        ax.plot([p, q], [a, a], ":", color="C3", lw=1.0, alpha=0.8, zorder=5)
        drawn["links"] += 1
    ax.scatter(pred, acc, s=36, facecolors="none", edgecolors="C3", lw=1.0, zorder=6,
               label=f"top-{len(measured)} as predicted (dotted: to measured)")
    spread = [m.get("measured_spread_pct") for m in measured]
    err = [q * s / 200.0 if s is not None else 0.0 for q, s in zip(meas, spread)]
    has_err = any(s is not None for s in spread)
    ax.errorbar(meas, acc, xerr=err if has_err else None, fmt="D", ms=5, color="C3", ecolor="C3",
                elinewidth=1.0, capsize=3, zorder=7,
                label=f"top-{len(measured)} measured on the device" + (" (bar: its two halves)" if has_err else ""))
    drawn["error_bars"] = sum(s is not None for s in spread)

