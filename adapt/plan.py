"""The choice of cuts in a NetAdapt iteration: which proposals it makes (per group, the largest channel count
predicted to meet the iteration's target, with Δ halved while there is too little choice) and which one it
keeps (the least accuracy lost per ms removed, never below the accuracy floor)."""
from __future__ import annotations

from dataclasses import dataclass

from hwnas.adapt.groups import candidate_counts, conv_changes
from hwnas.errors import HwnasError

MAX_HALVINGS = 4  # an iteration whose proposals all fall below the accuracy floor retries with Δ/2, Δ/4, ...


def accuracy_floor(asked: float | None, start_acc: float, num_classes: int) -> float:
    """The top-1 below which no proposal is kept: as asked, else halfway between chance and the start (a cut
    to chance is never a result, even if it is the only proposal). A start within 10 points of chance has
    nothing to protect (an untrained network): no default floor then."""
    if asked is not None:
        return float(asked)
    chance = 1.0 / max(num_classes, 1)
    if start_acc < chance + 0.1:
        return 0.0
    return chance + 0.5 * (start_acc - chance)


def pick(results, cur_acc: float, cur_ms: float):
    """Least accuracy lost per ms removed (an accuracy gain counts as negative loss)."""
    def score(r):
        saved = max(cur_ms - r.predicted_ms, 1e-6)
        return ((cur_acc - r.accuracy) / saved, -r.accuracy)
    return min(results, key=score)


def _allowed_counts(channels: int, unit: int, max_cut: float) -> list[int]:
    """Candidate channel counts for one iteration: multiples of `unit`, removing at most `max_cut` of the
    group (but always at least one step of `unit`, so a narrow group can still shrink)."""
    counts = candidate_counts(channels, unit)
    return counts[:1] + [c for c in counts[1:] if c >= channels * (1 - max_cut)]


def _largest_meeting(costs, model, graph, group: str, counts: list[int], channels: int, cur_ms: float,
                     target: float):
    """Largest of `counts` whose predicted latency ≤ target (bisection: latency falls with width)."""
    if not counts:
        return None

    def predicted(c):
        return cur_ms + costs.delta(conv_changes(model, graph, group, channels - c))

    lo_ms = predicted(counts[-1])
    if lo_ms > target:
        return None
    lo, hi = 0, len(counts) - 1  # invariant: counts[hi] meets the target
    best = (counts[hi], lo_ms)
    while lo < hi:
        mid = (lo + hi) // 2
        p = predicted(counts[mid])
        if p <= target:
            hi, best = mid, (counts[mid], p)
        else:
            lo = mid + 1
    return best


@dataclass
class Cut:
    index: int          # position of the group in name order (seeds and file names derive from it)
    group: str
    channels: int
    new_channels: int
    predicted_ms: float


@dataclass
class Plan:
    cuts: list
    target: float
    delta: float
    forced: bool = False  # no cut was predicted to meet any target: the best-rated one, to be measured


def plan_cuts(costs, model, graph, groups: dict, cur_ms: float, delta: float, budget_ms: float, unit: int,
              max_cut: float, min_proposals: int, halvings: int = 6) -> Plan:
    """One iteration's proposals: per group, the largest allowed channel count predicted to meet
    target = max(cur − Δ, 0.99·budget). While fewer than `min_proposals` groups can (and Δ still sets the
    target), Δ is halved, up to `halvings` times; the widest choice found is kept."""
    allowed = {g: _allowed_counts(ch, unit, max_cut) for g, ch in groups.items()}
    want = min(min_proposals, sum(1 for c in allowed.values() if c))
    best = None
    for _ in range(halvings + 1):
        t = max(cur_ms - delta, budget_ms * 0.99)
        cuts = []
        for k, (g, ch) in enumerate(sorted(groups.items())):
            found = _largest_meeting(costs, model, graph, g, allowed[g], ch, cur_ms, t)
            if found is not None:
                cuts.append(Cut(k, g, ch, found[0], found[1]))
        if best is None or len(cuts) > len(best.cuts):
            best = Plan(cuts, t, delta)
        # enough choice; or the budget sets the target and something meets it (a smaller Δ would only raise
        # the target above the budget); with nothing meeting it, halving goes on (a smaller step, not a
        # forced cut to minimum width)
        if len(best.cuts) >= want or (t <= budget_ms and best.cuts):
            break
        delta /= 2
    if best.cuts:
        return best
    # The per-layer costs say no group reaches even the smallest target: take the cut they rate best (even
    # if they predict no gain: on tiny layers they are noise, and the measurement of the result judges).
    options = []
    for k, (g, ch) in enumerate(sorted(groups.items())):
        if allowed[g]:
            low = allowed[g][-1]
            options.append(Cut(k, g, ch, low, cur_ms + costs.delta(conv_changes(model, graph, g, ch - low))))
    if not options:
        raise HwnasError(f"cannot shrink further: every group is at minimum width and the measured latency "
                         f"{cur_ms:.3f} ms is still above the budget {budget_ms:g} ms")
    return Plan([min(options, key=lambda c: c.predicted_ms)], best.target, best.delta, forced=True)
