"""The progressive (PNAS) strategy on the cell space, against a synthetic objective: stages grow cells one
block at a time, the learned predictor steers toward better cells than chance, state resumes exactly."""
import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.predict import LatencyPredictor
from hwnas.search.reward import Reward
from hwnas.search.spaces import get_space
from hwnas.search.strategies import get_strategy
from hwnas.search.strategies.progressive import AccuracyPredictor

try:
    from .toy_space import ToySpace
except ImportError:
    from toy_space import ToySpace

SMALL = dict(channels=8, stem=8, normal_cells=1, stacks=2, max_blocks=3)


def synthetic_accuracy(space, arch) -> float:
    """Better with more separable convs (sep3/sep5) among the ops in use, a little better with more blocks."""
    ops = [o for cell in space.cells_of(arch) for (_, _, o1, o2) in cell for o in (o1, o2)]
    good = sum(space.config.ops[o] in ("sep3", "sep5") for o in ops) / len(ops)
    return 0.2 + 0.6 * good + 0.03 * space.blocks(arch)


def table(space):
    """A latency table with a cost per op (deterministic, not a device): the reward's latency part."""
    costs = np.random.default_rng(0).uniform(0.01, 0.05, len(space.all_ops()))
    return LatencyPredictor(space, costs, "synthetic")


def drive(strategy, space, n, reward, latency):
    archs = []
    for _ in range(n):
        a = strategy.ask()
        acc, lat = synthetic_accuracy(space, a), latency.predict(a)
        strategy.tell(a, reward(acc, lat), accuracy=acc, latency_ms=lat)
        archs.append(a)
    return archs


def make(space, seed=0, bind=True, **kw):
    strat = get_strategy("progressive", space, seed=seed, **{"beam": 4, "epochs": 150, **kw})
    lat = table(space)
    reward = Reward.soft(float(np.median(lat.predict_batch([space.sample(np.random.default_rng(1))
                                                             for _ in range(50)]))))
    if bind:
        strat.bind(latency=lat, reward=reward)
    return strat, reward, lat


def test_needs_a_cell_space_and_sane_options():
    with pytest.raises(HwnasError, match="needs a cell space"):
        get_strategy("progressive", ToySpace())
    with pytest.raises(HwnasError, match="beam >= 1"):
        get_strategy("progressive", get_space("pnas", **SMALL), beam=0)


def test_stages_grow_the_best_cells_one_block_at_a_time():
    space = get_space("pnas", **SMALL)
    strat, reward, lat = make(space)
    archs = drive(strat, space, 4 * 4, reward, lat)
    blocks = [space.blocks(a) for a in archs]
    assert blocks == [1] * 4 + [2] * 4 + [3] * 4 + [3] * 4       # then local search at B = 3
    assert len(set(archs)) == len(archs)                            # nothing evaluated twice
    hist = {tuple(h["arch"]): h["reward"] for h in strat.history}
    for b in (2, 3):
        stage, before = archs[4 * (b - 1): 4 * b], archs[4 * (b - 2): 4 * (b - 1)]
        top = sorted(before, key=lambda a: -hist[a])[:4]
        for child in stage:                                         # a child keeps a parent's blocks
            assert any(space.cells_of(child)[0][: b - 1] == space.cells_of(p)[0] for p in top)
    for child in archs[12:]:                                        # local search: one decision from the beam
        assert min(sum(x != y for x, y in zip(child, p)) for p in archs[8:12] + archs[12:]
                   if p != child) <= 2
    info = strat.info()
    assert [s["blocks"] for s in info["stages"]] == [1, 2, 3, 3]
    assert info["stages"][0]["candidates"] == 16 * 17 // 2          # unordered pairs of (2 inputs x 8 ops)
    assert info["stages"][1]["candidates"] == 4 * 24 * 25 // 2      # per parent: pairs of (3 inputs x 8 ops)
    assert "spearman" in info["stages"][1]          # None when the chosen cells tie (no ranking to score)


def test_predictor_learns_the_objective_and_beats_random_choices():
    space = get_space("pnas")
    wins, gaps = 0, []
    for seed in range(3):
        strat, reward, lat = make(space, seed=seed, beam=6)
        archs = drive(strat, space, 30, reward, lat)
        late = [synthetic_accuracy(space, a) for a in archs[12:]]
        rng = np.random.default_rng(seed)
        rand = []
        for a in archs[12:]:                         # random cells with the same block counts
            r = list(space.sample(rng))
            r[0] = a[0]
            rand.append(synthetic_accuracy(space, space.validate(r)))
        gaps.append(np.mean(late) - np.mean(rand))
        wins += np.mean(late) > np.mean(rand)
    assert wins == 3, gaps
    # the fitted ensemble ranks held-out cells in order
    rng = np.random.default_rng(9)
    train = [space.sample(rng) for _ in range(60)]
    test = [space.sample(rng) for _ in range(60)]
    p = AccuracyPredictor(space, members=2, epochs=200)
    p.fit(train, [synthetic_accuracy(space, a) for a in train])
    pred = p.predict(test)
    true = [synthetic_accuracy(space, a) for a in test]
    assert np.corrcoef(np.argsort(np.argsort(pred)), np.argsort(np.argsort(true)))[0, 1] > 0.7


def test_reproducible_and_resumes_from_its_state():
    space = get_space("nasnet", **SMALL)
    full = drive(make(space, seed=2)[0], space, 14, *make(space, seed=2)[1:])
    assert drive(make(space, seed=2)[0], space, 14, *make(space, seed=2)[1:]) == full
    first, reward, lat = make(space, seed=2)
    head = drive(first, space, 6, reward, lat)                    # mid-stage: part of the queue left
    second, _, _ = make(space, seed=77)
    second.load_state_dict(first.state_dict())
    assert head + drive(second, space, 8, reward, lat) == full


def test_without_accuracy_or_table_it_learns_the_reward():
    space = get_space("pnas", **SMALL)
    strat, reward, lat = make(space, bind=False)
    for _ in range(10):
        a = strat.ask()
        strat.tell(a, reward(synthetic_accuracy(space, a), lat.predict(a)))
    assert strat.n_told == 10 and strat.stage == 3


def _run(out, n, **kw):
    from hwnas.search.estimators import CachedEstimator, get_estimator
    from hwnas.search.run import SearchRun
    space = get_space("pnas", **SMALL)
    lat = table(space)
    est = CachedEstimator(get_estimator("naswot", space, seed=0, calibration=6, batch_size=8), out / "cache.jsonl")
    strat = get_strategy("progressive", space, seed=0, beam=3, epochs=100)
    return SearchRun(out, space, lat, strat, est, Reward.soft(0.5), samples=n, top_k=2,
                     config={"space": "pnas-small", "strategy": "progressive"}, **kw)


def test_search_run_binds_the_table_and_resumes_after_a_crash(tmp_path):
    ref = _run(tmp_path / "ref", 12).run()
    assert ref.summary["strategy_info"]["stages"][0]["blocks"] == 1
    assert [len(r["describe"]["cell"]) for r in ref.samples[:9]] == [1] * 3 + [2] * 3 + [3] * 3

    class Crash(Exception):
        pass

    def crash(i):
        if i == 7:
            raise Crash

    with pytest.raises(Crash):
        _run(tmp_path / "b", 12, checkpoint_every=3, after_sample=crash).run()
    res = _run(tmp_path / "b", 12, resume=True).run()
    assert res.summary["replay_mismatches"] == 0
    assert [r["arch"] for r in res.samples] == [r["arch"] for r in ref.samples]
