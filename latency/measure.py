"""The measurement protocol: the only timing loop in hwnas.

warm-up -> repeats (fixed, or adaptive until the 95% confidence interval of the median is within
±rel_ci of it, or a time cap) -> a Measurement holding the raw samples and their statistics, in ms.
Everything that times anything (every backend, the benchmarks, the emulated phone) calls `measure`.

A measurement can be stopped from outside (the agent does, when its client leaves or its time cap passes):
inside `with cancellable(event, deadline):` every `measure` of that thread checks between two calls, outside
the timed window, and raises MeasurementCancelled.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hwnas.errors import HwnasError

STATISTICS = ("median", "mean", "std", "min", "max", "p10", "p90", "p95", "p99")


@dataclass
class Measurement:
    """Latency figures in milliseconds. `samples_ms` holds the raw per-run times when known
    (a phone's benchmark_model reports only its summary; then `samples_ms` is empty)."""

    median: float
    mean: float
    std: float
    min: float
    max: float
    p10: float
    p90: float
    p95: float
    p99: float
    count: int
    warmup: int = 0
    samples_ms: list[float] = field(default_factory=list, repr=False)
    stopped_by: str = "runs"  # "runs", "converged" (adaptive CI reached, one mode) or "time_cap"
    # paired calibration (hwnas.latency.calibration): times of the reference kernel run between the timed calls
    # (one after every `pair_every` of them) and the reference's nominal time on this device
    paired_ms: list[float] = field(default_factory=list, repr=False)
    pair_every: int = 0
    reference_ms: float | None = None

    @classmethod
    def from_samples(cls, samples_ms, warmup: int = 0, stopped_by: str = "runs", paired_ms=(),
                     pair_every: int = 0) -> "Measurement":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        p10, p90, p95, p99, med = np.percentile(a, [10, 90, 95, 99, 50])
        return cls(median=float(med), mean=float(a.mean()), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
                   min=float(a.min()), max=float(a.max()), p10=float(p10), p90=float(p90), p95=float(p95),
                   p99=float(p99), count=int(a.size), warmup=warmup, samples_ms=[float(x) for x in a],
                   stopped_by=stopped_by, paired_ms=[float(x) for x in paired_ms], pair_every=int(pair_every))

    def stat(self, name: str) -> float:
        if name not in STATISTICS:
            raise ValueError(f"unknown statistic {name!r}; choose from {', '.join(STATISTICS)}")
        return float(getattr(self, name))

    def to_dict(self, samples: bool = True) -> dict:
        d = {k: getattr(self, k) for k in STATISTICS}
        d.update(count=self.count, warmup=self.warmup, stopped_by=self.stopped_by)
        if self.reference_ms is not None:
            d.update(reference_ms=self.reference_ms, pair_every=self.pair_every)
        if samples:
            d["samples_ms"] = list(self.samples_ms)
            if self.paired_ms:
                d["paired_ms"] = list(self.paired_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        ref = d.get("reference_ms")
        return cls(**{k: d[k] for k in STATISTICS}, count=int(d["count"]), warmup=int(d.get("warmup", 0)),
                   samples_ms=list(d.get("samples_ms", [])), stopped_by=d.get("stopped_by", "runs"),
                   paired_ms=list(d.get("paired_ms", [])), pair_every=int(d.get("pair_every", 0)),
                   reference_ms=None if ref is None else float(ref))


class MeasurementCancelled(HwnasError):
    """A measurement stopped before its end; `reason` is "cancelled" (its event was set) or "deadline"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


_stop = threading.local()  # .check: the stop check of the `cancellable` block this thread is in


def _keep_going() -> None:
    pass


@contextmanager
def cancellable(event: threading.Event | None = None, deadline: float | None = None):
    """Measurements run by this thread inside the block stop (MeasurementCancelled) once `event` is set or
    time.monotonic() passes `deadline`; they check before the first call and after every call, untimed.
    Yields the check, for the caller's own steps between measurements."""
    def check() -> None:
        if event is not None and event.is_set():
            raise MeasurementCancelled("cancelled", "the measurement was cancelled")
        if deadline is not None and time.monotonic() >= deadline:
            raise MeasurementCancelled("deadline", "the measurement ran past its deadline")

    outer = getattr(_stop, "check", None)
    _stop.check = check
    try:
        yield check
    finally:
        _stop.check = outer


def modes_apart(samples: np.ndarray, gap: float = 0.2, share: float = 0.1) -> bool:
    """Whether the samples form separate clusters: a gap wider than `gap` x the median between two sorted
    neighbours with at least `share` of the samples on each side (a model that runs fast and slow in turns,
    or a machine that changed speed mid-way). Such a sample's median may have a narrow interval and still
    describe neither mode, so the adaptive rule never calls it converged."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = s.size
    k = int(math.ceil(share * n))
    if n < 2 * max(k, 1) + 1:
        return False
    gaps = np.diff(s)[k - 1:n - k]  # gaps with at least k samples on each side
    return bool(gaps.size and gaps.max() > gap * float(np.median(s)))


def median_ci_halfwidth(samples: np.ndarray, z: float = 1.96) -> float:
    """Half-width of a distribution-free ~95% confidence interval of the median (order statistics)."""
    n = samples.size
    if n < 5:
        return math.inf
    s = np.sort(samples)
    k = z * math.sqrt(n) / 2.0
    lo = max(int(math.floor(n / 2.0 - k)), 0)
    hi = min(int(math.ceil(n / 2.0 + k)), n - 1)
    return float(s[hi] - s[lo]) / 2.0


def measure(fn: Callable[[], Any], *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
            rel_ci: float = 0.01, min_runs: int = 10, max_runs: int = 2000, time_cap_s: float = 60.0,
            min_time_s: float = 0.0, on_sample: Callable[[int, float], None] | None = None,
            pair: Callable[[], Any] | None = None, pair_every: int = 1,
            sync: Callable[[], Any] | None = None) -> Measurement:
    """Time `fn()` (which must do one complete inference with inputs made beforehand).

    Fixed mode runs exactly `runs` timed calls. Adaptive mode keeps going until the 95% CI of the
    median is within ±rel_ci of the median and the samples form one cluster (modes_apart) (after at least `min_runs` and `min_time_s` of timing), `max_runs`,
    or `time_cap_s`. `min_time_s` matters for sub-millisecond models: 30 runs of 0.2 ms span 6 ms, short
    enough for one burst of other work on the machine to move the whole median.

    `pair` (paired calibration): a fixed reference kernel run twice after every `pair_every` timed calls, the
    second run timed (the first gives it back its caches, so its reading does not depend on what ran before),
    so that each stretch of samples has a reading of the machine's speed at that moment next to it
    (Measurement.paired_ms; see hwnas.latency.protocol).

    `sync` (an accelerator's): waits until the work `fn` queued has finished. It is called once, untimed, before
    the first timed call (the warm-up's queue drained), and inside every timed window right after `fn()`, so a
    sample is the call's complete time on the device, not the time to queue it (a GPU runs asynchronously).

    Inside a `cancellable` block it raises MeasurementCancelled between two calls once told to stop.
    """
    if warmup < 0 or runs < 1:
        raise ValueError("warmup must be >= 0 and runs >= 1")
    if pair_every < 1:
        raise ValueError("pair_every must be >= 1")
    stop = getattr(_stop, "check", None) or _keep_going
    stop()
    if sync is not None:
        call = fn

        def fn():  # the device's work finished inside the timed window
            call()
            sync()
    for _ in range(warmup):
        fn()
        if pair is not None:
            pair()
        stop()
    if sync is not None:
        sync()  # untimed: nothing queued before the first timed call (fn ends with sync: none after it)
    clock = time.perf_counter_ns
    samples: list[float] = []
    paired: list[float] = []
    append = samples.append
    stopped_by = "runs"

    def one() -> None:
        t0 = clock()
        fn()
        append((clock() - t0) * 1e-6)
        if pair is not None and len(samples) % pair_every == 0:
            pair()  # untimed: the reference's own caches back, whatever ran before it
            t0 = clock()
            pair()
            paired.append((clock() - t0) * 1e-6)
        stop()

    if not adaptive:
        if pair is None:  # the tight loop: nothing but the clock around each call (and the untimed stop check)
            for _ in range(runs):
                t0 = clock()
                fn()
                append((clock() - t0) * 1e-6)
                stop()
        else:
            for _ in range(runs):
                one()
        if on_sample is not None:
            for i, s in enumerate(samples):
                on_sample(i, s)
    else:
        start = time.monotonic()
        deadline, settled = start + time_cap_s, start + min_time_s
        check_every = 5
        while True:
            one()
            n = len(samples)
            if on_sample is not None:
                on_sample(n - 1, samples[-1])
            if n >= max_runs:
                stopped_by = "runs"
                break
            if n >= max(min_runs, 5) and n % check_every == 0 and time.monotonic() >= settled:
                a = np.asarray(samples)
                if median_ci_halfwidth(a) <= rel_ci * float(np.median(a)) and not modes_apart(a):
                    stopped_by = "converged"
                    break
            if time.monotonic() > deadline:
                stopped_by = "time_cap"
                break
    return Measurement.from_samples(samples, warmup=warmup, stopped_by=stopped_by, paired_ms=paired,
                                    pair_every=pair_every if pair is not None else 0)
