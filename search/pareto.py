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


def plot_pareto(records: Sequence[dict], path: str | Path, target_ms: float | None = None,
                title: str = "", measured: Sequence[dict] = ()) -> Path:
    """Every sample (grey), the front (line), the target (dashed) and device-measured points if given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    if records:
        ax.scatter([r["latency_ms"] for r in records], [r["accuracy"] for r in records], s=10,
                   color="0.7", label=f"samples ({len(records)})")
        front = pareto_front(records)
        ax.plot([r["latency_ms"] for r in front], [r["accuracy"] for r in front], "o-", color="C0",
                ms=4, label="Pareto front (predicted latency)")
    if measured:
        ax.scatter([m["measured_ms"] for m in measured], [m["accuracy"] for m in measured], marker="x",
                   color="C3", s=40, label="top-k measured on device")
    if target_ms is not None:
        ax.axvline(target_ms, color="C2", ls="--", label=f"target {target_ms:g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    from hwnas.rundir import atomic_path
    with atomic_path(path) as tmp:  # a reader (or a kill) never sees half a plot
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
