"""A speed-up or a met target is claimed only outside the measurement noise."""
from hwnas.latency.verdict import NOISE_PCT, against_target, noise_pct, speedup


def test_noise_is_the_floor_or_twice_the_spread_of_the_halves():
    assert noise_pct() == NOISE_PCT == noise_pct(1.0, None)
    assert noise_pct(1.0, 4.0) == 8.0


def test_a_speedup_inside_the_noise_is_not_called_one():
    assert speedup(10.0, 9.6) == "within noise"  # 1.04x: inside the default ±5%
    assert speedup(10.0, 9.43, noise=noise_pct(3.5)) == "within noise"  # the probe's 1.06x, halves 3.5% apart
    assert speedup(10.0, 9.0) == "faster" and speedup(9.0, 10.0) == "slower"
    assert speedup(10.0, 9.0, noise=12.0) == "within noise"


def test_a_target_is_met_or_missed_only_outside_the_noise():
    assert against_target(9.0, 10.0) == "meets"
    assert against_target(9.8, 10.0) == against_target(10.3, 10.0) == "within noise"
    assert against_target(11.0, 10.0) == "misses"

