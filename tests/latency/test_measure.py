import time

import numpy as np
import pytest

from hwnas.latency.measure import Measurement, measure, median_ci_halfwidth


def test_fixed_runs_counts_calls_and_keeps_samples():
    calls = []
    m = measure(lambda: calls.append(1), warmup=3, runs=17)
    assert len(calls) == 20
    assert m.count == 17 and len(m.samples_ms) == 17 and m.warmup == 3
    assert m.stopped_by == "runs"


def test_statistics_match_numpy_on_the_samples():
    m = Measurement.from_samples([5.0, 1.0, 3.0, 2.0, 4.0])
    assert m.median == 3.0 and m.min == 1.0 and m.max == 5.0 and m.mean == 3.0
    assert m.std == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    assert m.p90 == pytest.approx(np.percentile([1, 2, 3, 4, 5], 90))
    assert m.stat("p10") == pytest.approx(1.4)
    with pytest.raises(ValueError):
        m.stat("avg")


def test_times_are_milliseconds():
    m = measure(lambda: time.sleep(0.002), warmup=0, runs=5)
    assert 1.9 <= m.min < 50  # a 2 ms sleep, in ms (upper bound only guards unit errors)


def test_adaptive_stops_when_ci_is_tight():
    m = measure(lambda: sum(range(2000)), warmup=2, adaptive=True, rel_ci=0.5, min_runs=10, time_cap_s=30)
    assert m.stopped_by == "converged" and 10 <= m.count < 2000


def test_adaptive_times_at_least_min_time():
    # converges within ~10 runs of a few microseconds, but must keep timing for 0.15 s first
    t0 = time.monotonic()
    m = measure(lambda: sum(range(200)), warmup=2, adaptive=True, rel_ci=0.5, min_runs=10, max_runs=10**7,
                time_cap_s=30, min_time_s=0.15)
    assert m.stopped_by == "converged" and time.monotonic() - t0 >= 0.15 and m.count > 100


def test_adaptive_respects_time_cap():
    rng = np.random.default_rng(0)
    m = measure(lambda: time.sleep(float(rng.uniform(0, 0.002))), warmup=0, adaptive=True, rel_ci=1e-6,
                time_cap_s=0.2)
    assert m.stopped_by == "time_cap"


def test_median_ci_shrinks_with_more_samples():
    rng = np.random.default_rng(1)
    small = median_ci_halfwidth(rng.normal(10, 1, 20))
    large = median_ci_halfwidth(rng.normal(10, 1, 2000))
    assert large < small / 4


def test_round_trip_dict():
    m = Measurement.from_samples([1.0, 2.0, 3.0], warmup=2)
    assert Measurement.from_dict(m.to_dict()) == m


def test_bad_arguments():
    with pytest.raises(ValueError):
        measure(lambda: None, runs=0)
