"""Latency prediction from a table: the sum of a network's op latencies, corrected per device.

    from hwnas.latency.predict import LatencyPredictor
    p = LatencyPredictor.for_space(space, "cpu")          # loads the table of this device's fingerprint
    p.predict(arch); p.predict_batch(archs)               # ms; the batch path is vectorised

Bare op sums drift from whole-network latency (operator fusion across op boundaries, framework
overhead per op and per run), so the prediction is
    predicted = a * sum(op latencies) + b * (number of ops) + c,
with (a, b, c) fitted by least squares on a few whole networks timed end to end on the device (sampled
with their own seed, never reused for validation). The space (from hwnas.search) is passed in, duck-typed:
it provides all_ops(), op_indices(archs) and decisions().
"""
from __future__ import annotations

import os

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.lut.store import LutStore

IDENTITY = {"a": 1.0, "b": 0.0, "c": 0.0}


class LatencyPredictor:
    def __init__(self, space, table: np.ndarray, fingerprint_key: str, correction: dict | None = None):
        self.space = space
        self.table = np.append(np.asarray(table, dtype=np.float64), 0.0)  # index -1 -> 0 ms
        self.fingerprint_key = fingerprint_key
        self.correction = dict(correction or IDENTITY)

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def for_space(cls, space, device, db_path: str | os.PathLike | None = None, allow_mixed: bool = False,
                  store: LutStore | None = None) -> "LatencyPredictor":
        """The predictor of `space` on `device` (a Device or a device name). Missing ops are an error that
        says how to build them; rows of another fingerprint are used only with allow_mixed=True."""
        if isinstance(device, str):
            from hwnas.latency.devices import get_device
            device = get_device(device)
        store = store or LutStore(db_path)
        fp = device.fingerprint_key()
        keys = [op.key for op in space.all_ops()]
        values = store.values(fp)
        missing = [k for k in keys if k not in values]
        used_fp = fp
        if missing and allow_mixed:
            for other in store.fingerprints():
                other_values = store.values(other)
                if other != fp and all(k in other_values for k in missing):
                    values = {**other_values, **values}
                    used_fp = other
                    missing = []
                    break
        if missing:
            others = [k for k in store.fingerprints() if k != fp and store.values(k).keys() >= set(keys)]
            hint = (f"; the database has a complete table for fingerprint {', '.join(others)}, which is not this "
                    f"device's: rows of another fingerprint are not mixed in unless you ask (allow_mixed)") if others else ""
            raise HwnasError(f"the latency table of space {space.name!r} on device {device.name!r} (fingerprint {fp}) "
                             f"lacks {len(missing)} of {len(keys)} ops in {store.path}: run `hwnas lut build --device "
                             f"{device.name} --space {space.name}`{hint}")
        corr = store.get_correction(used_fp, space.name)
        return cls(space, np.array([values[k] for k in keys]), used_fp, corr)

    # -- prediction -----------------------------------------------------------------------------------
    def features(self, archs) -> tuple[np.ndarray, np.ndarray]:
        idx = self.space.op_indices(np.asarray(archs, dtype=np.int64).reshape(-1, len(self.space.decisions())))
        return self.table[idx].sum(axis=1), (idx >= 0).sum(axis=1)

    def raw_batch(self, archs) -> np.ndarray:
        """Bare op sums, ms."""
        return self.features(archs)[0]

    def predict_batch(self, archs) -> np.ndarray:
        s, n = self.features(archs)
        c = self.correction
        return c["a"] * s + c["b"] * n + c["c"]

    def predict(self, arch) -> float:
        return float(self.predict_batch([arch])[0])

    def min_latency(self, samples: int = 200_000, seed: int = 0) -> float:
        """The fastest network the space can build, by the table: exact by dynamic programming where the
        space exposes its block structure, else the minimum over a large random sample."""
        exact = getattr(self.space, "min_cost", None)
        c = self.correction
        if exact is not None:
            return float(exact(c["a"] * self.table[:-1] + c["b"]) + c["c"])
        rng = np.random.default_rng(seed)
        archs = np.stack([self.space.sample(rng) for _ in range(min(samples, 20_000))])
        return float(self.predict_batch(archs).min())

    # -- the correction ---------------------------------------------------------------------------------
    @staticmethod
    def fit_correction(op_sums, op_counts, measured) -> dict:
        """Least squares of measured ≈ a * op_sum + b * n_ops + c (falls back to a scale for < 4 networks)."""
        s, n, y = (np.asarray(v, dtype=np.float64) for v in (op_sums, op_counts, measured))
        if len(y) >= 4 and np.ptp(n) > 0:
            X = np.stack([s, n, np.ones_like(s)], axis=1)
            a, b, c = np.linalg.lstsq(X, y, rcond=None)[0]
        elif len(y) >= 3:
            X = np.stack([s, np.ones_like(s)], axis=1)
            (a, c), b = np.linalg.lstsq(X, y, rcond=None)[0], 0.0
        else:
            a, b, c = float(np.sum(y) / max(np.sum(s), 1e-12)), 0.0, 0.0
        return {"a": float(a), "b": float(b), "c": float(c), "n_networks": int(len(y))}
