import threading
import time

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.measure import Measurement, MeasurementCancelled, cancellable, measure, median_ci_halfwidth


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


def test_adaptive_never_calls_a_two_mode_sample_converged():
    from hwnas.latency.measure import modes_apart
    calls = iter(range(10**9))

    def fast_and_slow():  # 3 of 4 calls take ~1 ms, every 4th ~4 ms: a narrow median CI, and two modes
        time.sleep(0.004 if next(calls) % 4 == 3 else 0.001)

    m = measure(fast_and_slow, warmup=0, adaptive=True, rel_ci=0.2, min_runs=20, max_runs=120, time_cap_s=30)
    assert m.stopped_by == "runs" and m.count == 120 and modes_apart(np.array(m.samples_ms))
    rng = np.random.default_rng(0)
    assert not modes_apart(rng.normal(10, 0.3, 500)) and not modes_apart(np.r_[rng.normal(10, 0.3, 495), [40] * 5])
    assert modes_apart(np.r_[rng.normal(3.3, 0.1, 100), rng.normal(15.2, 0.5, 300)])  # the probe's sample


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


@pytest.mark.parametrize("kw", [{}, {"adaptive": True, "min_runs": 10**7, "max_runs": 10**7, "time_cap_s": 600},
                                {"pair": lambda: None}, {"warmup": 10**7}],
                         ids=["fixed", "adaptive", "paired", "warmup"])
def test_an_event_set_from_another_thread_stops_a_measurement(kw):
    """The agent's way to stop a measurement whose client left: an event, checked between two calls."""
    stop = threading.Event()
    calls = []
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    t0 = time.monotonic()
    with cancellable(stop), pytest.raises(MeasurementCancelled) as e:
        measure(lambda: calls.append(1), **{"warmup": 0, "runs": 10**7, **kw})
    timer.join()
    assert e.value.reason == "cancelled"
    assert time.monotonic() - t0 < 30 and len(calls) < 10**7  # stopped early, not after ten million calls
    assert isinstance(e.value, HwnasError)


def test_a_deadline_stops_a_measurement():
    with cancellable(deadline=time.monotonic() + 0.3), pytest.raises(MeasurementCancelled) as e:
        measure(lambda: time.sleep(0.001), warmup=0, runs=10**7)
    assert e.value.reason == "deadline"
    with cancellable(deadline=time.monotonic() - 1), pytest.raises(MeasurementCancelled):
        measure(lambda: pytest.fail("no call after the deadline"), warmup=0, runs=5)


def test_the_stop_check_is_only_inside_its_block_and_its_thread():
    stop = threading.Event()
    stop.set()
    with cancellable(stop):
        other = {}
        t = threading.Thread(target=lambda: other.update(m=measure(lambda: None, warmup=1, runs=3)))
        t.start()
        t.join(30)
        assert other["m"].count == 3  # another thread's measurement is not this block's
    assert measure(lambda: None, warmup=1, runs=3).count == 3  # after the block: nothing left installed
