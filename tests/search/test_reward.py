import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.search.reward import Reward


def test_soft_reward_exact_numbers():
    r = Reward.soft(20.0)
    assert (r.alpha, r.beta, r.mode) == (-0.07, -0.07, "soft")
    assert r(0.8, 20.0) == pytest.approx(0.8)
    assert r(0.8, 40.0) == pytest.approx(0.762110, abs=1e-6)    # 0.8 * 2 ** -0.07
    assert r(0.8, 10.0) == pytest.approx(0.839774, abs=1e-6)    # 0.8 * 0.5 ** -0.07
    assert Reward(20.0)(0.5, 30.0) == pytest.approx(0.5 * 1.5 ** -0.07)


def test_hard_reward_exact_numbers():
    r = Reward.hard(20.0)
    assert r.mode == "hard"
    assert r(0.8, 10.0) == 0.8          # under the target only accuracy counts
    assert r(0.8, 20.0) == 0.8          # the target itself is within
    assert r(0.8, 40.0) == pytest.approx(0.4)   # 0.8 * 20 / 40
    assert r(0.9, 30.0) == pytest.approx(0.6)


def test_custom_alpha_beta_and_batch():
    r = Reward(20.0, alpha=-0.1, beta=-0.5)
    assert r.mode == "custom"
    assert r(0.8, 80.0) == pytest.approx(0.4)                    # 0.8 * 4 ** -0.5
    assert r(0.8, 5.0) == pytest.approx(0.918959, abs=1e-6)      # 0.8 * 0.25 ** -0.1
    acc = np.array([0.8, 0.8, 0.8])
    lat = np.array([5.0, 20.0, 80.0])
    assert np.allclose(r.batch(acc, lat), [r(a, l) for a, l in zip(acc, lat)])
    assert Reward.from_dict(r.to_dict()) == r


def test_soft_reward_is_a_tradeoff_hard_is_a_constraint():
    soft, hard = Reward.soft(20.0), Reward.hard(20.0)
    # soft: 1% accuracy buys about 15% latency (2**-0.07 ~ 0.953)
    assert soft(0.80, 23.0) > soft(0.79, 20.0)
    # hard: a faster network with less accuracy never wins under the target
    assert hard(0.80, 19.9) > hard(0.79, 5.0)


@pytest.mark.parametrize("kw", [dict(target_ms=0), dict(target_ms=-1), dict(target_ms=20, alpha=0.1),
                                dict(target_ms=20, beta=float("nan"))])
def test_bad_reward_settings_are_clear_errors(kw):
    with pytest.raises(HwnasError):
        Reward(**kw)


def test_nonpositive_latency_is_an_error():
    with pytest.raises(HwnasError):
        Reward.soft(20.0)(0.5, 0.0)
