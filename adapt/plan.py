"""The choice of cuts in a NetAdapt iteration: which proposals it makes (per group, the largest channel count
predicted to meet the iteration's target, with Δ halved while there is too little choice) and which one it
keeps (the least accuracy lost per ms removed, never below the accuracy floor)."""
from __future__ import annotations

from dataclasses import dataclass

from hwnas.adapt.groups import candidate_counts, conv_changes
from hwnas.errors import HwnasError

# the last step aims this far below the budget: the same network measured minutes apart on a shared VM drifts
# by a few percent (resnet50 at 224: 19.3 ms after an iteration, 20.1 ms after the long fine-tune), and a final
# measurement over the budget costs another iteration
BUDGET_MARGIN = 0.03
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


# how far measurement may correct the per-layer costs (a pooled ratio of measured to predicted savings)
SCALE_RANGE = (0.5, 2.0)


def cost_scale(rows: list[dict], prior_ms: float = 0.0) -> float:
    """How much of the per-layer costs' predicted saving the measurements delivered so far: Σ measured saving /
    Σ predicted saving over the iterations that recorded their anchor (pooled, so large cuts weigh most), with
    a prior of ratio 1 worth `prior_ms` of predicted saving (one measurement's noise is then not taken for a
    trend: at 30 ms a cut predicted to save 3 ms once measured 1 ms slower), clipped to SCALE_RANGE; 1.0
    before any. Convs timed alone miss what changes with them (the BN, activation, add and copies of the
    narrower tensor, and fusion), which at some input sizes misjudged cuts by up to ~10×; the next iteration's
    predictions are scaled by this ratio, so measurement corrects the table as it goes."""
    pred = meas = -abs(prior_ms)
    for r in rows:
        if r.get("anchor_ms") is None or not r.get("cost_scale"):
            continue
        raw = (r["predicted_ms"] - r["anchor_ms"]) / r["cost_scale"]
        if raw < 0:
            pred += raw
            meas += r["measured_ms"] - r["anchor_ms"]
    if pred >= 0:
        return 1.0
    lo, hi = SCALE_RANGE
    return min(max(meas / pred, lo), hi)


def _fewest(cuts: list, most: int | None) -> list:
    """At most `most` cuts: those removing the smallest fraction of their group (the least damage for the same
    predicted saving), in group order."""
    if most is None or len(cuts) <= most:
        return cuts
    keep = sorted(cuts, key=lambda c: ((c.channels - c.new_channels) / c.channels, c.index))[:most]
    return sorted(keep, key=lambda c: c.index)


def _allowed_counts(channels: int, unit: int, max_cut: float) -> list[int]:
    """Candidate channel counts for one iteration: multiples of `unit`, removing at most `max_cut` of the
    group (but always at least one step of `unit`, so a narrow group can still shrink)."""
    counts = candidate_counts(channels, unit)
    return counts[:1] + [c for c in counts[1:] if c >= channels * (1 - max_cut)]


def _largest_meeting(costs, model, graph, group: str, counts: list[int], channels: int, cur_ms: float,
                     target: float, scale: float = 1.0):
    """Largest of `counts` whose predicted latency ≤ target (bisection: latency falls with width)."""
    if not counts:
        return None

    def predicted(c):
        return cur_ms + scale * costs.delta(conv_changes(model, graph, group, channels - c))

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
    found: int = 0        # groups that could meet the target (before max_proposals kept the least cut of them)


def plan_cuts(costs, model, graph, groups: dict, cur_ms: float, delta: float, budget_ms: float, unit: int,
              max_cut: float, min_proposals: int, halvings: int = 6, max_proposals: int | None = None,
              scale: float = 1.0) -> Plan:
    """One iteration's proposals: per group, the largest allowed channel count predicted to meet
    target = max(cur − Δ, (1 − BUDGET_MARGIN)·budget). While fewer than `min_proposals` groups can (and Δ
    still sets the target), Δ is halved, up to `halvings` times; the widest choice found is kept, and of it at most
    `max_proposals` (the least cut). Predictions are cur + scale·Σ per-layer cost changes (see cost_scale)."""
    allowed = {g: _allowed_counts(ch, unit, max_cut) for g, ch in groups.items()}
    want = min(min_proposals, sum(1 for c in allowed.values() if c))
    best = None
    for _ in range(halvings + 1):
        t = max(cur_ms - delta, budget_ms * (1 - BUDGET_MARGIN))
        cuts = []
        for k, (g, ch) in enumerate(sorted(groups.items())):
            found = _largest_meeting(costs, model, graph, g, allowed[g], ch, cur_ms, t, scale)
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
        return Plan(_fewest(best.cuts, max_proposals), best.target, best.delta, found=len(best.cuts))
    # The per-layer costs say no group reaches even the smallest target: take the cut they rate best (even
    # if they predict no gain: on tiny layers they are noise, and the measurement of the result judges).
    options = []
    for k, (g, ch) in enumerate(sorted(groups.items())):
        if allowed[g]:
            low = allowed[g][-1]
            options.append(Cut(k, g, ch, low, cur_ms + scale * costs.delta(conv_changes(model, graph, g, ch - low))))
    if not options:
        raise HwnasError(f"cannot shrink further: every group is at minimum width and the measured latency "
                         f"{cur_ms:.3f} ms is still above the budget {budget_ms:g} ms")
    return Plan([min(options, key=lambda c: c.predicted_ms)], best.target, best.delta, forced=True, found=0)
