"""Measured latency: the one definition every part of hwnas reports (profile, lut, search, scale, adapt,
the benches). It sits on the one timing loop (hwnas.latency.measure, reached through Device.measure).

    from hwnas.latency.protocol import Protocol, measure_latency
    lat = measure_latency(device, {"a": art_a, "b": art_b})          # {"a": Latency, "b": Latency}
    lat["a"].ms, lat["a"].statistic, lat["a"].spread_pct

A measurement of a set of artifacts on one device is made of rounds. Round r times every artifact not yet
settled once: `warmup` runs, then a segment of `runs` timed runs; the order rotates from round to round, so
no artifact always follows the same one. Where the device can (every local backend, and an agent's device),
each timed run is paired with a run of the calibration reference (hwnas.latency.calibration) and a segment's
value is the median of run/reference ratios times the reference's nominal time: the artifact's latency at
the machine's nominal speed, whatever speed the machine had during the segment. Elsewhere (a phone's
benchmark_model) the segment's value is its median.

Interference: a segment whose reference runs ran more than `spoil_bound` slower than the reference's typical
reading in this measurement so far (the median over every segment measured: a burst of other work that came
and went, beyond what the ratio corrects; a lasting slowdown is what the ratio is for) is spoiled: it is not
counted and the artifact gets another round (at most `max_reruns`); the result says how many and why.

Stop rule: after `min_rounds` counted segments, an artifact is settled when the median of its even-numbered
segments and that of its odd-numbered ones (two independent halves of the rounds) agree within ±`agree`;
else it gets more rounds, up to `max_rounds`. Its latency is the median of all its counted segments.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Hashable

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.measure import Measurement

CALIBRATED = "calibrated median"          # median over rounds of (run / reference) x reference nominal ms
UNCALIBRATED = "median of round medians"  # where the device cannot pair runs with the reference
VERSION = "rounds/1"                      # recorded in fingerprints: tables of another protocol never mix
LIMITS = {"runs": 100_000, "rounds": 1_000, "warmup": 10_000}


@dataclass(frozen=True)
class Protocol:
    warmup: int = 3          # untimed runs before each segment (the artifact's caches after other artifacts)
    runs: int = 10           # timed runs per segment (raised for artifacts much shorter than the reference)
    min_rounds: int = 6      # counted segments before the stop rule is asked
    max_rounds: int = 16
    agree: float = 0.01      # the two halves of the rounds agree within this fraction
    calibrate: bool | None = None  # pair with the reference: None = wherever the device can
    spoil_bound: float = 0.5   # a segment whose reference ran > (1 + bound) x its typical reading is re-run
    max_reruns: int = 6      # spoiled segments re-run per artifact, at most

    def check(self) -> "Protocol":
        if not 0 <= self.warmup <= LIMITS["warmup"]:
            raise HwnasError(f"warm-up runs must be between 0 and {LIMITS['warmup']}, got {self.warmup}")
        if not 1 <= self.runs <= LIMITS["runs"]:
            raise HwnasError(f"runs per round must be between 1 and {LIMITS['runs']}, got {self.runs}")
        if not 2 <= self.min_rounds <= self.max_rounds <= LIMITS["rounds"]:
            raise HwnasError(f"rounds must satisfy 2 <= min rounds ({self.min_rounds}) <= max rounds "
                             f"({self.max_rounds}) <= {LIMITS['rounds']} (the stop rule compares two halves)")
        if not 0 < self.agree < 1 or not self.spoil_bound > 0 or self.max_reruns < 0:
            raise HwnasError("agreement must be in (0, 1), the spoil bound > 0 and max re-runs >= 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def but(self, **changes) -> "Protocol":
        """This protocol with some settings changed, e.g. NETWORK.but(runs=30)."""
        return replace(self, **changes)


# whole networks (tables' fit and validation networks, search top-k, NetAdapt budgets, scaling, baselines,
# profile) and single ops or layers (table rows, NetAdapt's per-layer costs: short, so fewer counted rounds)
NETWORK = Protocol()
OP = Protocol(min_rounds=3, max_rounds=10)


@dataclass
class Latency:
    """The measured latency of one artifact on one device."""

    ms: float                       # the headline: `statistic` over the counted segments
    statistic: str
    segments_ms: list[float]        # each counted segment's value, in the order measured
    halves_ms: tuple[float, float]  # the statistic over even / odd segments
    stopped_by: str                 # "agreement" (the halves agreed) or "max_rounds"
    reruns: dict[str, int]          # spoiled segments re-run, by reason
    raw: Measurement                # every timed run of the counted segments, uncalibrated
    reference: dict | None = None   # {"nominal_ms", "observed_ms", "slowdown"}: the machine's speed seen
    pair_every: int = 0
    protocol: dict = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return len(self.segments_ms)

    @property
    def spread_pct(self) -> float:
        """How far the two independent halves of the rounds are apart, in % of the headline."""
        a, b = self.halves_ms
        return 100.0 * abs(a - b) / self.ms if self.ms else 0.0

    def describe(self) -> str:
        rer = sum(self.reruns.values())
        return (f"{self.ms:.3f} ms ({self.statistic} of {self.rounds} rounds, halves within "
                f"±{self.spread_pct / 2:.1f}%{f', {rer} re-run' if rer else ''})")

    def to_dict(self, samples: bool = False) -> dict:
        return {"ms": self.ms, "statistic": self.statistic, "rounds": self.rounds, "segments_ms": self.segments_ms,
                "halves_ms": list(self.halves_ms), "spread_pct": self.spread_pct, "stopped_by": self.stopped_by,
                "reruns": dict(self.reruns), "reference": self.reference, "pair_every": self.pair_every,
                "protocol": self.protocol, "raw": self.raw.to_dict(samples=samples)}

    @classmethod
    def from_dict(cls, d: dict) -> "Latency":
        return cls(ms=float(d["ms"]), statistic=d["statistic"], segments_ms=[float(x) for x in d["segments_ms"]],
                   halves_ms=tuple(d["halves_ms"]), stopped_by=d["stopped_by"], reruns=dict(d["reruns"]),
                   raw=Measurement.from_dict(d["raw"]), reference=d.get("reference"),
                   pair_every=int(d.get("pair_every", 0)), protocol=dict(d.get("protocol", {})))


def calibrates(device, protocol: Protocol | None = None) -> bool:
    """Whether `protocol` pairs runs with the reference on `device`: where the device can, unless told not to
    (told to where it cannot: the device's one-line refusal)."""
    asked = (protocol or NETWORK).calibrate
    can = "paired" in device.backend.protocol_options
    if asked and not can:
        device.check_protocol(paired=True)
    return can if asked is None else bool(asked)


def statistic_of(device, protocol: Protocol | None = None) -> str:
    """The statistic `protocol` reports on `device`."""
    return CALIBRATED if calibrates(device, protocol) else UNCALIBRATED


# -- the statistic, in one place (the latency tables combine stored segments with it too) ----------------
def combine(segments) -> float:
    """The headline over counted segments: their median."""
    return float(np.median(np.asarray(segments, dtype=np.float64)))


def halves(segments) -> tuple[float, float]:
    """The statistic over the even- and the odd-numbered segments: two independent halves of the rounds."""
    a = list(segments)
    if len(a) < 2:
        v = combine(a)
        return v, v
    return combine(a[0::2]), combine(a[1::2])


def agreed(segments, agree: float) -> bool:
    a, b = halves(segments)
    return abs(a - b) <= agree * (a + b) / 2


def segment_value(m: Measurement) -> float:
    """A segment's value: calibrated (median of run/reference ratios x nominal reference ms) when it was
    paired, else its median."""
    if not m.paired_ms or m.reference_ms is None:
        return m.median
    s, p = np.asarray(m.samples_ms), np.asarray(m.paired_ms)
    if m.pair_every == 1 and len(p) == len(s):
        return float(np.median(s / p) * m.reference_ms)
    return float(np.median(s) / np.median(p) * m.reference_ms)


def spoiled(m: Measurement, typical_ms: float | None, bound: float) -> str | None:
    """Why a paired segment must be re-run (its reference readings `bound` slower than `typical_ms`), or None."""
    if not m.paired_ms or typical_ms is None:
        return None
    slow = float(np.median(m.paired_ms)) / typical_ms - 1.0
    return f"interference: reference {100 * bound:.0f}%+ slower than its typical reading" if slow > bound else None


def pooled(segments: list[Measurement], warmup: int) -> Measurement:
    """Every timed run of the counted segments as one Measurement (raw, uncalibrated). Targets that report
    only summaries (a phone's benchmark_model) pool the segments' medians, with no samples kept."""
    runs = [x for m in segments for x in m.samples_ms]
    if len(runs) == sum(m.count for m in segments):
        return Measurement.from_samples(runs, warmup=warmup)
    m = Measurement.from_samples([s.median for s in segments], warmup=warmup)
    m.count, m.samples_ms = sum(s.count for s in segments), []
    return m


def machine_speed(segments: list[Measurement]) -> dict | None:
    """What the reference read during the counted segments, against its nominal time (None: unpaired)."""
    paired = [m for m in segments if m.paired_ms and m.reference_ms]
    if not paired:
        return None
    observed, nominal = float(np.median([np.median(m.paired_ms) for m in paired])), paired[0].reference_ms
    return {"nominal_ms": nominal, "observed_ms": observed, "slowdown": observed / nominal}


def pairing(artifact_ms: float, reference_ms: float, runs: int) -> tuple[int, int]:
    """(pair_every, runs): one reference run after every timed run when the artifact is at least half as long
    as the reference; for shorter ones after every k runs (the reference costing about twice the artifact's
    time), with enough runs for at least 5 reference readings per segment."""
    if artifact_ms <= 0 or artifact_ms * 2 >= reference_ms:
        return 1, runs
    k = min(int(math.ceil(reference_ms / (2 * artifact_ms))), 1000)
    return k, max(runs, 5 * k)


# -- the rounds -------------------------------------------------------------------------------------------
def measure_latency(device, artifacts: dict[Hashable, object], protocol: Protocol | None = None, *,
                    on_done: Callable[[Hashable, Latency], None] | None = None, **overrides) -> dict[Hashable, Latency]:
    """Measured latency of every artifact on `device`: prepared Artifacts, (model, input_shape) pairs, or
    model files / zoo names (what Device.prepare takes). `on_done(key, latency)` is called as each artifact
    settles (e.g. to store it at once)."""
    p = replace(protocol or NETWORK, **overrides).check()
    from hwnas.latency.devices import Artifact
    arts = {k: a if isinstance(a, Artifact) else device.prepare(*a) if isinstance(a, tuple) else device.prepare(a)
            for k, a in artifacts.items()}
    calibrate = calibrates(device, p)
    device.backend.check()

    # per artifact: pairing (decided from a short probe), counted segments, raw runs, re-runs
    plan: dict = {}
    if calibrate:
        probe_runs = 3
        for k, art in arts.items():
            m = device.measure(art, warmup=1, runs=probe_runs, paired=True)
            plan[k] = pairing(m.median, float(np.median(m.paired_ms)), p.runs)
    else:
        plan = {k: (0, p.runs) for k in arts}
    segs: dict = {k: [] for k in arts}
    raws: dict = {k: [] for k in arts}  # the counted segments' Measurements
    reruns: dict = {k: Counter() for k in arts}
    results: dict = {}
    readings: list[float] = []  # every segment's median reference reading, in order
    active = list(arts)
    r = 0
    while active:
        shift = r % len(active)
        for k in active[shift:] + active[:shift]:
            every, runs = plan[k]
            if calibrate:
                m = device.measure(arts[k], warmup=p.warmup, runs=runs, paired=True, pair_every=every)
            else:
                m = device.measure(arts[k], warmup=p.warmup, runs=runs)
            typical = float(np.median(readings)) if len(readings) >= 3 else None
            if m.paired_ms:
                readings.append(float(np.median(m.paired_ms)))
            why = spoiled(m, typical, p.spoil_bound)
            if why is not None and sum(reruns[k].values()) < p.max_reruns:
                reruns[k][why] += 1
                continue
            segs[k].append(segment_value(m))
            raws[k].append(m)
        r += 1
        still = []
        for k in active:
            n = len(segs[k])
            done = "agreement" if n >= p.min_rounds and agreed(segs[k], p.agree) else \
                "max_rounds" if n >= p.max_rounds else None
            if done is None:
                still.append(k)
                continue
            results[k] = Latency(ms=combine(segs[k]), statistic=CALIBRATED if calibrate else UNCALIBRATED,
                                 segments_ms=segs[k], halves_ms=halves(segs[k]), stopped_by=done,
                                 reruns=dict(reruns[k]), raw=pooled(raws[k], p.warmup),
                                 reference=machine_speed(raws[k]), pair_every=plan[k][0], protocol=p.to_dict())
            if on_done is not None:
                on_done(k, results[k])
        active = still
    return {k: results[k] for k in arts}
