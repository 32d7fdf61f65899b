"""One iteration's proposals (plan_cuts) on per-layer costs timed on the real onnxruntime device: no group loses
more than max_cut of its channels, Δ is halved until there is a real choice, the budget clamps the target, and
when nothing is predicted to meet any target the best-rated cut is forced."""
import pytest

from hwnas.adapt.costs import LayerCosts
from hwnas.adapt.groups import build_graph, prunable_groups
from hwnas.adapt.plan import _allowed_counts, plan_cuts
from hwnas.latency.devices import get_device
from tests.latency.lut_helpers import fast_protocol
from tinynet import TinyNet

SHAPE = (1, 3, 32, 32)


def test_allowed_counts_cap_the_cut_but_always_allow_one_step():
    assert _allowed_counts(64, 8, 0.5) == [56, 48, 40, 32]
    assert _allowed_counts(64, 8, 1.0) == [56, 48, 40, 32, 24, 16, 8]
    assert _allowed_counts(16, 8, 0.1) == [8]  # one unit is more than 10% of 16, still allowed
    assert _allowed_counts(8, 8, 0.5) == []


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    model = TinyNet(width=96).eval()
    graph = build_graph(model, SHAPE)
    groups = prunable_groups(model, graph)
    costs = LayerCosts(get_device("cpu"), model, SHAPE, db=tmp_path_factory.mktemp("plan") / "layers.db",
                       protocol=fast_protocol(3, 10, 3))
    yield model, graph, groups, costs
    costs.close()


def _plan(setting, **kw):
    model, graph, groups, costs = setting
    args = dict(cur_ms=1.0, delta=0.99, budget_ms=1e-6, unit=8, max_cut=0.5, min_proposals=3, halvings=12)
    args.update(kw)
    return plan_cuts(costs, model, graph, groups, **args), groups


def test_step_halved_until_enough_groups_can_meet_it(setting):
    plan, groups = _plan(setting)
    assert len(groups) >= 3
    assert not plan.forced and len(plan.cuts) >= 3
    assert plan.delta < 0.99 and plan.target == pytest.approx(1.0 - plan.delta)  # it was halved
    one, _ = _plan(setting, min_proposals=1)
    assert one.delta >= plan.delta  # asking for fewer choices never needs a smaller step
    for c in plan.cuts:
        assert c.channels == groups[c.group]
        assert c.new_channels < c.channels and (c.new_channels >= c.channels * 0.5 or
                                                 c.new_channels == c.channels - 8)
        assert c.predicted_ms <= plan.target


def test_budget_clamps_the_target_and_stops_halving(setting):
    plan, _ = _plan(setting, delta=0.9, budget_ms=0.99)
    assert plan.target == pytest.approx(0.99 * 0.97) and plan.delta == 0.9  # Δ no longer sets the target: not halved
    assert plan.cuts and not plan.forced and all(c.predicted_ms <= plan.target for c in plan.cuts)


def test_clamped_target_nobody_meets_is_relaxed_not_forced(setting):
    plan, _ = _plan(setting, delta=0.99, budget_ms=0.02)  # first target 0.0194 ms: no cut gets there
    assert not plan.forced and plan.cuts and plan.delta < 0.99 and plan.target > 0.02


def test_nothing_predicted_to_meet_the_target_forces_the_best_rated_cut(setting):
    plan, groups = _plan(setting, halvings=0)  # Δ = 0.99 ms of a 1 ms network: no cut can predict that
    assert plan.forced and len(plan.cuts) == 1
    c = plan.cuts[0]
    assert c.new_channels == _allowed_counts(groups[c.group], 8, 0.5)[-1]


def test_max_proposals_keeps_the_least_cut_in_group_order(setting):
    full, _ = _plan(setting)
    assert len(full.cuts) >= 3 and full.found == len(full.cuts)
    capped, _ = _plan(setting, max_proposals=2)  # the same halvings, then the two least cut
    assert len(capped.cuts) == 2 and capped.found == len(full.cuts)

    def frac(c):
        return (c.channels - c.new_channels) / c.channels
    kept = {c.group for c in capped.cuts}
    assert max(frac(c) for c in capped.cuts) <= min(frac(c) for c in full.cuts if c.group not in kept)
    assert [c.index for c in capped.cuts] == sorted(c.index for c in capped.cuts)


def test_a_cost_scale_scales_every_predicted_saving(setting):
    one, _ = _plan(setting, min_proposals=1, halvings=0, delta=0.01)
    two, _ = _plan(setting, min_proposals=1, halvings=0, delta=0.01, scale=2.0)
    assert one.cuts and two.cuts
    by = {c.group: c for c in one.cuts}
    for c in two.cuts:  # twice the saving per channel: a group meets the same target with fewer channels cut
        if c.group in by:
            assert c.new_channels >= by[c.group].new_channels


def _row(anchor, predicted_raw, measured, scale=1.0):
    return {"anchor_ms": anchor, "cost_scale": scale, "predicted_ms": anchor + scale * predicted_raw,
            "measured_ms": measured}


def test_cost_scale_is_the_pooled_ratio_of_measured_to_predicted_savings():
    from hwnas.adapt.plan import SCALE_RANGE, cost_scale
    start = {"iteration": 0, "predicted_ms": 10.0, "measured_ms": 10.0}  # no anchor: not counted
    assert cost_scale([start]) == 1.0
    # predicted savings 1 and 3 ms (the second made with scale 2: raw 1.5), measured 2 and 2: ratio 4 / 2.5
    rows = [start, _row(10.0, -1.0, 8.0), _row(8.0, -1.5, 6.0, scale=2.0)]
    assert cost_scale(rows) == pytest.approx(4.0 / 2.5)
    assert cost_scale([start, _row(10.0, -0.1, 2.0)]) == SCALE_RANGE[1]   # clipped
    assert cost_scale([start, _row(10.0, -4.0, 10.5)]) == SCALE_RANGE[0]  # slower than predicted: clipped low
    assert cost_scale([start, _row(10.0, 0.5, 9.0)]) == 1.0  # no predicted saving: nothing to learn from
    # a prior of ratio 1 worth 3 ms: one noisy measurement (predicted -3, measured +1) moves it part of the way
    assert cost_scale([start, _row(10.0, -3.0, 9.5)], prior_ms=3.0) == pytest.approx((-0.5 - 3.0) / (-3.0 - 3.0))
    assert cost_scale(rows, prior_ms=1.0) == pytest.approx((-4.0 - 1.0) / (-2.5 - 1.0))
