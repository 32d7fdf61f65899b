"""The strategy contract, over every registered strategy (a new one is tested by registering it): seeded
ask/tell is reproducible, a checkpoint taken mid-run resumes exactly as search/run.py relies on, only valid
architectures are asked, info() is JSON, and bad options (as -S KEY=VALUE hands them over) are one line."""
import json
from functools import lru_cache

import numpy as np
import pytest

from hwnas.latency.predict import LatencyPredictor
from hwnas.search.reward import Reward
from hwnas.search.spaces import get_space
from hwnas.search.strategies import get_strategy, list_strategies, strategy_class
from hwnas.tensorfile import load_tree, save_tree
from tests.contract_helpers import bad_values, coverage, keyword_options, one_line_error
from tests.search.toy_space import ToyPredictor, ToySpace

# small spaces: the toy one, the real mnasnet-tiny, and a small cell space (progressive grows cells only)
SPACES = {
    "toy": ToySpace,
    "mnasnet-tiny": lambda: get_space("mnasnet-tiny"),
    "pnas-small": lambda: get_space("pnas", channels=8, stem=8, normal_cells=1, stacks=2, max_blocks=3),
}
# settings that reach every phase of a strategy within STEPS asks (updates, mutations, stages)
CHEAP = {
    "evolution": dict(population=6, sample_size=3),
    "rl": dict(batch=4),
    "ppo": dict(batch=4, epochs=2),
    "progressive": dict(beam=3, max_candidates=32, members=1, epochs=10),
    "predictor-evolution": dict(population=8, generations=3),
}
STEPS = 24


@lru_cache(maxsize=None)
def space(key):
    return SPACES[key]()


@lru_cache(maxsize=None)
def problem(key):
    """(latency table, reward) of a space: fixed per-op costs (the toy space's additive table), a soft
    reward with the median sampled latency as its target."""
    sp = space(key)
    lat = ToyPredictor(sp) if key == "toy" else LatencyPredictor(
        sp, np.random.default_rng(0).uniform(0.01, 0.05, len(sp.all_ops())), "synthetic")
    rng = np.random.default_rng(0)
    return lat, Reward.soft(float(np.median(lat.predict_batch([sp.sample(rng) for _ in range(32)]))))


class BatchAccuracy:
    """An estimator that predicts a batch at once (as ofa-mlp does), of score()'s synthetic accuracy."""
    name = "synthetic"

    def warm_up(self, log=None):
        pass

    def predict_batch(self, archs):
        return np.array([accuracy_of(a) for a in archs])


def make(name, key, seed=0):
    """A strategy at its CHEAP settings, bound to the latency table, reward and estimator as SearchRun binds it."""
    strategy = get_strategy(name, space(key), seed=seed, **CHEAP.get(name, {}))
    lat, reward = problem(key)
    strategy.bind(latency=lat, reward=reward, estimator=BatchAccuracy())
    return strategy


SERVED, REFUSED, FIRST = coverage(list_strategies(), SPACES, make)  # FIRST: each one's space for cheaper checks


def accuracy_of(arch) -> float:
    """A fixed synthetic accuracy of an architecture."""
    a = np.asarray(arch, dtype=np.float64)
    w = np.random.default_rng(len(a)).uniform(0.5, 1.5, len(a))
    return 0.5 + 0.4 * float(np.sin(w @ a) ** 2)


def score(key, arch) -> tuple[float, float, float]:
    """(reward, accuracy, latency_ms) of an architecture: a fixed synthetic accuracy, the table's latency."""
    accuracy = accuracy_of(arch)
    lat, reward = problem(key)
    latency_ms = lat.predict(arch)
    return reward(accuracy, latency_ms), accuracy, latency_ms


def drive(strategy, key, n) -> list[tuple]:
    """n rounds of ask / tell as SearchRun does them (the reward with its accuracy and latency parts)."""
    asked = []
    for _ in range(n):
        arch = strategy.ask()
        asked.append(arch)
        reward, accuracy, latency_ms = score(key, arch)
        strategy.tell(arch, reward, accuracy=accuracy, latency_ms=latency_ms)
    return asked


def test_every_strategy_serves_a_contract_space():
    assert set(list_strategies()) == set(FIRST)


@pytest.mark.parametrize("name,key", SERVED)
def test_same_seed_same_sequence_and_only_valid_architectures(name, key):
    sp = space(key)
    a = drive(make(name, key, seed=3), key, STEPS)
    assert drive(make(name, key, seed=3), key, STEPS) == a
    assert drive(make(name, key, seed=4), key, STEPS) != a
    for arch in a:
        assert isinstance(arch, tuple) and sp.validate(arch) == arch


@pytest.mark.parametrize("name,key", SERVED)
@pytest.mark.parametrize("cut", [5, 13])  # mid-batch, mid-stage, before and after the first updates
def test_a_checkpoint_resumes_exactly(name, key, cut, tmp_path):
    """The state after `cut` results, through the checkpoint file search/run.py writes, loaded into an instance
    made with another seed: it asks what the original asks next, and ends in the same state."""
    original = make(name, key, seed=1)
    drive(original, key, cut)
    save_tree(tmp_path / "strategy.ckpt", {"n": cut, "strategy": original.state_dict()}, "search-strategy")
    rest = drive(original, key, STEPS - cut)
    restored = make(name, key, seed=99)
    restored.load_state_dict(load_tree(tmp_path / "strategy.ckpt", "search-strategy")["strategy"])
    assert drive(restored, key, STEPS - cut) == rest
    assert restored.info() == original.info()


@pytest.mark.parametrize("name,key", FIRST.items())
def test_tell_accepts_an_architecture_it_did_not_ask(name, key):
    """A resumed run tells recorded samples back; a user may inject architectures."""
    sp, strategy = space(key), make(name, key)
    rng = np.random.default_rng(5)
    for _ in range(STEPS // 2):
        strategy.ask()
        injected = sp.validate(sp.sample(rng))
        strategy.tell(injected, score(key, injected)[0])
    assert all(sp.validate(a) == a for a in drive(strategy, key, STEPS // 2))


@pytest.mark.parametrize("name,key", FIRST.items())
def test_info_is_json(name, key):
    strategy = make(name, key)
    infos = [strategy.info()]
    for _ in range(3):
        drive(strategy, key, STEPS // 3)
        infos.append(strategy.info())
    for info in infos:  # summary.json's strategy_info
        assert isinstance(info, dict) and info["strategy"] == name
        json.dumps(info, allow_nan=False)
    assert infos[-1]["told"] == 3 * (STEPS // 3)


def test_a_state_for_another_strategy_is_refused():
    names = list_strategies()
    for name, other in zip(names, names[1:] + names[:1]):
        key = FIRST[name]
        state = {"name": other}
        one_line_error(lambda: make(name, key).load_state_dict(state), name, other)


@pytest.mark.parametrize("name,key", REFUSED)
def test_a_space_it_cannot_search_is_one_line(name, key):
    one_line_error(lambda: make(name, key), name, space(key).name)


@pytest.mark.parametrize("name", list_strategies())
def test_an_unknown_option_is_one_line_listing_the_options(name):
    key = FIRST[name]
    msg = one_line_error(lambda: get_strategy(name, space(key), popsize=3), name, "popsize")
    for option in keyword_options(strategy_class(name)):
        assert option in msg


# -- bad values, as `-S KEY=VALUE` hands them over (int, else float, else the string) -------------------------
def _refused(name, option, value):
    one_line_error(lambda: get_strategy(name, space(FIRST[name]), **{**CHEAP.get(name, {}), option: value}), option)



@pytest.mark.parametrize("name,option,value", bad_values(list_strategies(), strategy_class))
def test_a_bad_value_is_one_line(name, option, value):
    _refused(name, option, value)
