"""OFA's evolution over predictors: vectorised, it beats random sampling with the same number of evaluations on a
synthetic objective, asks its best distinct architectures in reward order, says how many it evaluated a second,
and refuses an estimator that cannot predict a batch with one line."""
import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.predict import LatencyPredictor
from hwnas.search.reward import Reward
from hwnas.search.spaces import get_space
from hwnas.search.strategies import get_strategy
from hwnas.search.strategies.predictor_evolution import evolve


@pytest.fixture(scope="module")
def problem():
    """mnasnet at 224 with fixed per-op costs, and an accuracy that grows with the log of the cost, with an
    architecture-dependent wiggle: the best reward is neither the fastest nor the largest network."""
    space = get_space("mnasnet")
    costs = np.random.default_rng(0).uniform(0.01, 0.2, len(space.all_ops()))
    lat = LatencyPredictor(space, costs, "synthetic")
    w = np.random.default_rng(1).normal(size=len(space.decisions()))

    def accuracy(archs):
        a = np.asarray(archs, dtype=np.float64)
        return 0.5 + 0.05 * np.log(lat.predict_batch(a)) + 0.01 * np.sin(a @ w)

    rng = np.random.default_rng(2)
    target = float(np.median(lat.predict_batch([space.sample(rng) for _ in range(200)])))
    return space, lat, accuracy, Reward.soft(target)


def test_it_beats_random_sampling_with_the_same_evaluations(problem):
    space, lat, accuracy, reward = problem
    gaps = []
    for seed in range(3):
        out = evolve(space, accuracy, lat.predict_batch, reward, np.random.default_rng(seed), population=100,
                     generations=40)
        rand = np.random.default_rng(seed + 10)
        archs = np.array([space.sample(rand) for _ in range(out["evaluated"])])
        best_random = reward.batch(accuracy(archs), lat.predict_batch(archs)).max()
        gaps.append(out["reward"][0] - best_random)
        assert out["evaluated"] == 100 + 40 * 75  # the population, then 75 children a generation
        assert list(out["reward"]) == sorted(out["reward"], reverse=True)
        assert len({tuple(a) for a in out["archs"]}) == len(out["archs"])  # distinct
    assert min(gaps) > 0, gaps


def test_the_strategy_asks_the_best_first_and_reports_its_speed(problem):
    space, lat, accuracy, reward = problem

    class Predictor:
        name = "synthetic"

        def warm_up(self, log=None):
            pass

        def predict_batch(self, archs):
            return accuracy(archs)

    s = get_strategy("predictor-evolution", space, seed=0, population=50, generations=10)
    s.bind(latency=lat, reward=reward, estimator=Predictor())
    asked = [s.ask() for _ in range(5)]
    got = reward.batch(accuracy(asked), lat.predict_batch(asked))
    assert list(got) == sorted(got, reverse=True)
    info = s.info()
    assert info["evaluated"] == 50 + 10 * 38 and info["architectures_per_s"] > 0


def test_an_estimator_without_batches_is_one_line(problem):
    space, lat, _, reward = problem
    s = get_strategy("predictor-evolution", space, seed=0)

    class Proxy:
        name = "naswot"

    s.bind(latency=lat, reward=reward, estimator=Proxy())
    with pytest.raises(HwnasError, match="ofa-mlp.*not 'naswot'"):
        s.ask()
