"""The accuracy-estimator contract, over every registered estimator (a new one is tested by registering it), at
its cheapest settings on the shipped digits: estimate() is a finite value in [0, 1], the same for the same
seed; config_key() (what the accuracy cache and the supernet checkpoint are keyed by) changes with every
option the value depends on and only those may be left out of it; bad options (as -E KEY=VALUE hands them
over) are one line."""
import json
import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from hwnas.search.estimators import estimator_class, get_estimator, list_estimators
from hwnas.search.spaces import get_space
from tests.contract_helpers import bad_values, coverage, is_count, is_real, keyword_options, one_line_error
from tests.search.toy_space import ToySpace

SPACES = {"toy": ToySpace, "mnasnet-tiny": lambda: get_space("mnasnet-tiny")}  # the supernet needs op sequences
# the cheapest settings that still estimate: a step or two of training, a few calibration networks
CHEAP = {
    "naswot": dict(batch_size=8, calibration=4),
    "synflow": dict(calibration=4),
    "short-train": dict(steps=2, batch_size=16),
    "supernet": dict(steps=2, batch_size=16, bn_batches=1, validate=0),
    "ofa": dict(steps=2, batch_size=16, bn_batches=1, validate=0),
    "ofa-mlp": dict(steps=2, batch_size=16, bn_batches=1, validate=0, fit=10, hidden=8, layers=1),
    "train-mlp": dict(steps=2, batch_size=16, fit=10, hidden=8, layers=1),
}
DATA = "digits"


@lru_cache(maxsize=None)
def space(key):
    return SPACES[key]()


def make(name, key, checkpoint=None, seed=0, data=DATA, **over):
    """The estimator at its CHEAP settings; one that keeps a checkpoint (the supernet) or the estimates it is
    fitted on (train-mlp) keeps them at `checkpoint`,
    so that two instances train apart (by default a second one would reuse the first one's training)."""
    opts = {**CHEAP.get(name, {}), **over}
    if checkpoint is not None and "checkpoint" in keyword_options(estimator_class(name)):
        opts["checkpoint"] = str(checkpoint)
    if checkpoint is not None and "evals" in keyword_options(estimator_class(name)):
        opts["evals"] = str(checkpoint) + ".evals.jsonl"
    return get_estimator(name, space(key), data=data, seed=seed, **opts)


_, REFUSED, FIRST = coverage(list_estimators(), SPACES, make)  # FIRST: each estimator's first space served


def archs(key, n=2):
    rng = np.random.default_rng(7)
    return [space(key).sample(rng) for _ in range(n)]


def test_every_estimator_serves_a_contract_space():
    assert set(FIRST) == set(list_estimators())


@pytest.mark.parametrize("name,key", REFUSED)
def test_a_space_it_cannot_serve_is_one_line(name, key):
    one_line_error(lambda: make(name, key), space(key).name)


@pytest.mark.parametrize("name", list_estimators())
def test_estimates_are_finite_in_the_unit_interval_and_seeded(name, tmp_path):
    key = FIRST[name]
    first, again = make(name, key, tmp_path / "a"), make(name, key, tmp_path / "b")  # each its own training
    values = [first.estimate(a) for a in archs(key)]
    for v in values:
        assert isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0
    assert [again.estimate(a) for a in archs(key)] == values


@pytest.mark.parametrize("name", list_estimators())
def test_an_estimate_depends_on_the_architecture_alone(name, tmp_path):
    """Not on the estimates before it: a resumed search, or one whose cache already holds some values,
    estimates in another order."""
    key = FIRST[name]
    est = make(name, key, tmp_path / "a")
    a, b = archs(key)
    first = est.estimate(a)
    est.estimate(b)
    assert est.estimate(a) == first


@pytest.mark.parametrize("name", list_estimators())
def test_info_is_json_and_a_trained_network_has_the_datas_classes(name, tmp_path):
    key = FIRST[name]
    est = make(name, key, tmp_path / "a")
    info = est.info()
    assert isinstance(info, dict)
    json.dumps(info, allow_nan=False)
    if est.trains:  # a search exports trained_model(best): its head must fit the data
        sp = space(key)
        net = est.trained_model(archs(key, 1)[0])
        with torch.no_grad():
            assert net(torch.zeros(1, 3, sp.input_size, sp.input_size)).shape == (1, est.num_classes())


def changed(value):
    """Another valid value of an option, of its type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return 1 if value != 1 else 2
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if value in OTHER_CHOICE:
        return OTHER_CHOICE[value]
    raise TypeError(value)


OTHER_CHOICE = {"blockwise": "sandwich", "sandwich": "blockwise"}  # string options: another valid choice


def _keyed_options():
    out = []
    for name in list_estimators():
        est = make(name, FIRST[name])
        out += [pytest.param(name, opt, id=f"{name}-{opt}") for opt in est.options()]
    return out


@pytest.mark.parametrize("name,option", _keyed_options())
def test_config_key_changes_with_each_option(name, option):
    key = FIRST[name]
    base = make(name, key)
    assert make(name, key, **{option: changed(base.options()[option])}).config_key() != base.config_key()


@pytest.mark.parametrize("name", list_estimators())
def test_config_key_changes_with_seed_and_data(name):
    key = FIRST[name]
    base = make(name, key)
    assert make(name, key).config_key() == base.config_key()
    assert make(name, key, seed=1).config_key() != base.config_key()
    assert make(name, key, data="other.npz").config_key() != base.config_key()


def _unkeyed_options():
    """Options left out of options() (so out of the cache key), but for where a checkpoint lives."""
    out = []
    for name in list_estimators():
        est = make(name, FIRST[name])
        defaults = {**keyword_options(estimator_class(name)), **CHEAP.get(name, {})}
        out += [(name, opt) for opt, v in defaults.items()
                if opt not in est.options() and opt != "checkpoint" and (is_count(v) or is_real(v))]
    return out


@pytest.mark.parametrize("name,option", _unkeyed_options())
def test_an_option_left_out_of_the_key_does_not_change_the_estimate(name, option, tmp_path):
    key = FIRST[name]
    defaults = {**keyword_options(estimator_class(name)), **CHEAP.get(name, {})}
    base = make(name, key, tmp_path / "a")
    other = make(name, key, tmp_path / "b", **{option: changed(defaults[option])})
    assert other.config_key() == base.config_key()
    assert [other.estimate(a) for a in archs(key)] == [base.estimate(a) for a in archs(key)]


@pytest.mark.parametrize("name", list_estimators())
def test_an_unknown_option_is_one_line_listing_the_options(name):
    msg = one_line_error(lambda: get_estimator(name, space(FIRST[name]), epochs=3), name, "epochs")
    for option in keyword_options(estimator_class(name)):
        assert option in msg


# -- bad values, as `-E KEY=VALUE` hands them over (int, else float, else the string) -------------------------
def _refused(name, option, value):
    one_line_error(lambda: make(name, FIRST[name], **{option: value}), option)



@pytest.mark.parametrize("name,option,value", bad_values(list_estimators(), estimator_class))
def test_a_bad_value_is_one_line(name, option, value):
    _refused(name, option, value)
