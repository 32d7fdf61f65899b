"""Latency prediction from a table: the sum of a network's op latencies, corrected per device.

    from hwnas.latency.predict import LatencyPredictor
    p = LatencyPredictor.for_space(space, "cpu")          # loads the table of this device's fingerprint
    p.predict(arch); p.predict_batch(archs)               # ms; the batch path is vectorised

Bare op sums can drift from whole-network latency (operator fusion across op boundaries, framework
overhead per op and per run), so the prediction is
    predicted = a * sum(op latencies) + b * (number of ops) + c,
fitted on a few whole networks timed end to end on the device (sampled with their own seed, never reused
for validation). The form is chosen by leave-one-out error among identity (a=1, b=c=0), scale and affine,
and a form is accepted only if it predicts a positive latency for the space's fastest network. A table is
used only once its build finished: every op timed and the correction fitted. The space (from hwnas.search)
is passed in, duck-typed: it provides all_ops(), op_indices(archs) and decisions().
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.lut.store import LutStore, space_id

IDENTITY = {"a": 1.0, "b": 0.0, "c": 0.0}
MAX_FIT_NETWORKS = 10_000  # whole networks a correction is fitted on, at most (`hwnas lut build --fit-networks`)
MODELS = ("identity", "scale", "affine")  # simplest first: on equal held-out error the simpler one wins


def describe_correction(c: dict) -> str:
    """'affine: 2.017 * op sum - 0.0205 ms * ops - 1.976 ms'."""
    def term(v, unit):
        return f" {'-' if v < 0 else '+'} {abs(v):.4g}{unit}"
    return (f"{c.get('model', 'correction')}: {c['a']:.4g} * op sum" + term(c["b"], " ms * ops")
            + term(c["c"], " ms"))


def correction_problem(c) -> str | None:
    """Why `c` is not a usable correction (a mapping with finite numbers a, b, c and, where given, the count of
    networks it was fitted on), or None."""
    if not isinstance(c, dict):
        return f"a correction is a JSON object with a, b and c, not {type(c).__name__}"
    for k in ("a", "b", "c"):
        v = c.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"its {k} is {v!r}, not a number"
        if not math.isfinite(v):
            return f"its {k} is {v}, not a finite number"
    n = c.get("n_networks", 0)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_FIT_NETWORKS:
        return f"its n_networks is {n!r}, not a whole number from 0 to {MAX_FIT_NETWORKS}"
    return None


def fastest_problem(ms: float) -> str | None:
    """Why a correction predicting `ms` for the space's fastest network is unusable, or None."""
    return None if math.isfinite(ms) and ms > 0 else f"predicts {ms:.4g} ms for the fastest network"


def unusable_latency(keys, values: dict) -> str | None:
    """The first of `keys` whose stored latency in `values` is not a finite positive number (keys not in `values`
    are not looked at), or None."""
    return next((k for k in keys if k in values and not (math.isfinite(values[k]) and values[k] > 0)), None)


def build_command(space, device) -> str:
    """The command that builds (or resumes, or refits) the table of `space` on `device`."""
    size = getattr(space, "input_size", None)
    batch = getattr(space, "batch", 1)
    return (f"hwnas lut build --device {device.name} --space {space.name}"
            + (f" --input-size {size}" if size else "") + (f" --batch {batch}" if batch > 1 else ""))


class LatencyPredictor:
    def __init__(self, space, table: np.ndarray, fingerprint_key: str, correction: dict | None = None):
        self.space = space
        self.table = np.append(np.asarray(table, dtype=np.float64), 0.0)  # index -1 -> 0 ms
        self.fingerprint_key = fingerprint_key
        self.correction = dict(correction or IDENTITY)
        self._sampled: dict = {}  # (op sums, op counts) of the sampled networks min_latency uses, per (samples, seed)
        # which ops were predicted from kernels, not timed (hwnas.latency.space_fill; None: every op was timed)
        self.from_kernels: np.ndarray | None = None
        self.sources = {"ops_from_table": len(self.table) - 1, "ops_from_kernels": 0, "kernel_ops": [],
                        "correction": f"the table's, fitted on {self.correction.get('n_networks', 0)} measured "
                                      f"networks"}

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def for_space(cls, space, device, db_path: str | os.PathLike | None = None, allow_mixed: bool = False,
                  store: LutStore | None = None, finished: bool = True) -> "LatencyPredictor":
        """The predictor of `space` on `device` (a Device or a device name). Missing ops are an error that
        says how to build them; rows of another fingerprint are used only with allow_mixed=True. A table is
        used only when its build finished (every op timed, the correction fitted) and its correction
        predicts a positive latency for the space's fastest network; `finished=False` (the builder's own
        use, before it fits the correction) gives the ops with the identity correction."""
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
        what = (f"the latency table of space {space.name!r} on device {device.name!r} (fingerprint {used_fp}) "
                f"in {store.path}")
        if missing:
            others = [k for k in store.fingerprints() if k != fp and store.values(k).keys() >= set(keys)]
            hint = (f"; the database has a complete table for fingerprint {', '.join(others)}, which is not this "
                    f"device's: rows of another fingerprint are not mixed in unless you ask (allow_mixed)") if others else ""
            raise HwnasError(f"{what} lacks {len(missing)} of {len(keys)} ops: run `{build_command(space, device)}`"
                             f"{hint}")
        table = np.array([values[k] for k in keys])
        bad = unusable_latency(keys, values)
        if bad is not None:
            raise HwnasError(f"{what} holds {values[bad]} ms for op {bad!r}; latencies must be finite and positive "
                             f"(delete the table or import a good one)")
        if not finished:
            return cls(space, table, used_fp)
        corr = store.get_correction(used_fp, space_id(space))
        if corr is None:
            rounds = store.rounds(used_fp)
            counts = sorted({rounds.get(k, 0) for k in keys})
            span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
            nets = len(store.networks(used_fp, space_id(space), "fit"))
            raise HwnasError(f"{what} is unfinished: its {len(keys)} ops have {span} rounds each but no correction "
                             f"is fitted ({nets} whole networks timed for it so far); resume it with "
                             f"`{build_command(space, device)}`")
        refit = f"refit it with `{build_command(space, device)}` (what is timed already is not timed again)"
        why = correction_problem(corr)
        if why is not None:
            raise HwnasError(f"{what} has an unusable correction: {why}; {refit}")
        predictor = cls(space, table, used_fp, corr)
        why = fastest_problem(predictor.min_latency())
        if why is not None:
            raise HwnasError(f"{what} has an unusable correction ({describe_correction(corr)}): it {why}; {refit}")
        return predictor

    # -- prediction -----------------------------------------------------------------------------------
    def _indices(self, archs) -> np.ndarray:
        """Each network's op indices into the table (-1: no op)."""
        return self.space.op_indices(np.asarray(archs, dtype=np.int64).reshape(-1, len(self.space.decisions())))

    def features(self, archs) -> tuple[np.ndarray, np.ndarray]:
        idx = self._indices(archs)
        return self.table[idx].sum(axis=1), (idx >= 0).sum(axis=1)

    def kernel_ops(self, archs) -> np.ndarray:
        """How many of each network's ops were predicted from the kernel table rather than timed."""
        idx = self._indices(archs)
        if self.from_kernels is None:
            return np.zeros(len(idx), dtype=np.int64)
        return self.from_kernels[idx].sum(axis=1)

    def raw_batch(self, archs) -> np.ndarray:
        """Bare op sums, ms."""
        return self.features(archs)[0]

    def predict_batch(self, archs) -> np.ndarray:
        s, n = self.features(archs)
        c = self.correction
        return c["a"] * s + c["b"] * n + c["c"]

    def predict(self, arch) -> float:
        return float(self.predict_batch([arch])[0])

    def min_latency(self, samples: int = 200_000, seed: int = 0, correction: dict | None = None) -> float:
        """The fastest network the space can build, by the table (under `correction`, default this
        predictor's): exact by dynamic programming where the space exposes its block structure, else the
        minimum over a large random sample."""
        c = self.correction if correction is None else correction
        exact = self.space.min_cost(c["a"] * self.table[:-1] + c["b"])
        if exact is not None:
            return float(exact + c["c"])
        # the sampled networks cost seconds on spaces without a DP (cells); a search asks twice, a fit thrice
        key = (samples, seed)
        if key not in self._sampled:
            rng = np.random.default_rng(seed)
            self._sampled[key] = self.features(np.stack([self.space.sample(rng) for _ in range(min(samples, 20_000))]))
        s, n = self._sampled[key]
        return float((c["a"] * s + c["b"] * n + c["c"]).min())

    # -- the correction ---------------------------------------------------------------------------------
    @staticmethod
    def fit_correction(op_sums, op_counts, measured, fastest: Callable[[dict], float] | None = None) -> dict:
        """Choose and fit the correction on whole-network timings. Three models compete: identity (the bare
        op sum), scale (a * sum) and affine (a * sum + b * n_ops + c, least squares); the one with the
        lowest leave-one-out mean relative error wins, so a correction is applied only where it predicts
        held-out networks better than the bare sum (an affine fit on a few noisy timings can be worse).
        `fastest(correction)` is the latency it predicts for the space's fastest network: a model whose
        prediction there is not positive is rejected (the next best is taken; the bare sum always stands),
        and the result's `rejected` says why."""
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
            err = float(100 * np.mean(rel)) if rel else float("inf")
            errors[name] = err if math.isfinite(err) else float("inf")
        rejected = {}
        for name in sorted(errors, key=lambda k: (errors[k], MODELS.index(k))):
            a, b, c = fits[name](np.arange(len(y)))
            corr = {"a": a, "b": b, "c": c}
            why = correction_problem(corr)
            if why is None and fastest is not None and name != "identity":
                why = fastest_problem(fastest(corr))
            if why is None or name == "identity":  # the bare sum always stands
                break
            rejected[name] = why
        out = {"a": a, "b": b, "c": c, "model": name, "n_networks": int(len(y)),
               "loo_mean_abs_pct": {k: round(v, 3) for k, v in errors.items()}, "rejected": rejected}
        if fastest is not None:
            out["fastest_ms"] = float(fastest(out))
        return out
