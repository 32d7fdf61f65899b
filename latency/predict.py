"""Latency prediction from a table: the sum of a network's op latencies, corrected per device.

    from hwnas.latency.predict import LatencyPredictor
    p = LatencyPredictor.for_space(space, "cpu")          # loads the table of this device's fingerprint
    p.predict(arch); p.predict_batch(archs)               # ms; the batch path is vectorised

Bare op sums can drift from whole-network latency (operator fusion across op boundaries, framework
overhead per op and per run), so the prediction is
    predicted = a * sum(op latencies) + b * (number of ops) + c,
fitted on a few whole networks timed end to end on the device (sampled with their own seed, never reused
for validation). The form is chosen by leave-one-out error among identity (a=1, b=c=0), scale and affine. The space (from hwnas.search) is passed in, duck-typed:
it provides all_ops(), op_indices(archs) and decisions().
"""
from __future__ import annotations

import os

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.lut.store import LutStore, space_id

IDENTITY = {"a": 1.0, "b": 0.0, "c": 0.0}


class LatencyPredictor:
    def __init__(self, space, table: np.ndarray, fingerprint_key: str, correction: dict | None = None):
        self.space = space
        self.table = np.append(np.asarray(table, dtype=np.float64), 0.0)  # index -1 -> 0 ms
        self.fingerprint_key = fingerprint_key
        self.correction = dict(correction or IDENTITY)
        self._sampled_min: dict = {}  # min_latency by sampling, per (samples, seed, correction)

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
        corr = store.get_correction(used_fp, space_id(space))
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
        # the sampled minimum costs seconds on spaces without a DP (cells); a search asks for it twice
        key = (samples, seed, c["a"], c["b"], c["c"])
        cache = self._sampled_min
        if key not in cache:
            rng = np.random.default_rng(seed)
            archs = np.stack([self.space.sample(rng) for _ in range(min(samples, 20_000))])
            cache[key] = float(self.predict_batch(archs).min())
        return cache[key]

    # -- the correction ---------------------------------------------------------------------------------
    @staticmethod
    def fit_correction(op_sums, op_counts, measured) -> dict:
        """Choose and fit the correction on whole-network timings. Three models compete: identity (the bare
        op sum), scale (a * sum) and affine (a * sum + b * n_ops + c, least squares); the one with the
        lowest leave-one-out mean relative error wins, so a correction is applied only where it predicts
        held-out networks better than the bare sum (an affine fit on a few noisy timings can be worse)."""
        s, n, y = (np.asarray(v, dtype=np.float64) for v in (op_sums, op_counts, measured))
        fits = {"identity": lambda idx: (1.0, 0.0, 0.0),
                "scale": lambda idx: (float(np.sum(y[idx] * s[idx]) / max(np.sum(s[idx] ** 2), 1e-12)), 0.0, 0.0)}
        if len(y) >= 5 and np.ptp(n) > 0:
            def affine(idx):
                X = np.stack([s[idx], n[idx], np.ones(len(idx))], axis=1)
                return tuple(float(v) for v in np.linalg.lstsq(X, y[idx], rcond=None)[0])
            fits["affine"] = affine
        errors = {}
        for name, fit in fits.items():
            rel = []
            for i in range(len(y)):
                a, b, c = fit(np.delete(np.arange(len(y)), i))
                rel.append(abs(a * s[i] + b * n[i] + c - y[i]) / y[i])
            errors[name] = float(100 * np.mean(rel)) if rel else float("inf")
        chosen = min(errors, key=lambda k: (errors[k], list(fits).index(k)))
        a, b, c = fits[chosen](np.arange(len(y)))
        return {"a": a, "b": b, "c": c, "model": chosen, "n_networks": int(len(y)),
                "loo_mean_abs_pct": {k: round(v, 3) for k, v in errors.items()}}
