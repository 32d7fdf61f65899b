"""The measurement protocol (hwnas.latency.protocol): its statistic, its stop rule on two halves of the
rounds, the re-run of rounds spoiled by interference, core pinning, and what each backend does with options
it cannot honour."""
import os
import time

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.devices.base import PROTOCOL_OPTIONS, pinned
from hwnas.latency.measure import Measurement, measure
from hwnas.latency.protocol import (CALIBRATED, UNCALIBRATED, Protocol, agreed, halves, measure_latency, pairing,
                                    segment_value)


class Scripted:
    """A device whose segments read the values of a script, in order (the rounds logic in isolation)."""

    def __init__(self, values, paired=False):
        self.values, self.calls, self.name = list(values), 0, "scripted"
        self.backend = self
        self.protocol_options = PROTOCOL_OPTIONS if paired else frozenset()

    def check(self):
        pass

    def check_protocol(self, **kw):
        raise HwnasError("scripted device cannot pair")

    def prepare(self, model, shape=None):
        from hwnas.latency.devices import Artifact
        return Artifact(format="onnx", name=str(model), input_shapes={})

    def measure(self, art, warmup, runs, paired=False, pair_every=1, **kw):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        m = Measurement.from_samples([v] * runs)
        if paired:
            m.paired_ms, m.pair_every, m.reference_ms = [1.0] * runs, 1, 1.0
        return m


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 16, 3, padding=1)).eval()


# -- the statistic --------------------------------------------------------------------------------------
def test_a_paired_segment_is_the_median_ratio_times_the_nominal_reference():
    m = Measurement.from_samples([2.0, 4.0, 3.0])
    m.paired_ms, m.pair_every, m.reference_ms = [1.0, 2.0, 1.5], 1, 0.5
    assert segment_value(m) == pytest.approx(1.0)  # every run took 2x the reference, which is nominally 0.5 ms
    m.pair_every, m.paired_ms = 3, [1.5]
    assert segment_value(m) == pytest.approx(3.0 / 1.5 * 0.5)
    assert segment_value(Measurement.from_samples([2.0, 4.0, 3.0])) == 3.0  # unpaired: the median


def test_halves_are_even_and_odd_rounds():
    assert halves([1.0, 2.0, 1.0, 2.0]) == (1.0, 2.0)
    assert agreed([1.0, 1.005, 1.0, 1.005], 0.01) and not agreed([1.0, 1.1, 1.0, 1.1], 0.01)


def test_pairing_keeps_the_reference_cost_bounded():
    assert pairing(2.0, 1.0, 10) == (1, 10)                 # long artifact: a reference reading after every run
    every, runs = pairing(0.01, 1.0, 10)
    assert every == 50 and runs == 250 and runs // every >= 5  # short: one after 50 runs, 5 readings per round


# -- the stop rule ----------------------------------------------------------------------------------------
def test_stops_at_the_minimum_when_the_halves_agree():
    dev = Scripted([2.0] * 100)
    lat = measure_latency(dev, {"a": "a"}, Protocol(min_rounds=4, max_rounds=10))["a"]
    assert lat.rounds == 4 and lat.stopped_by == "agreement" and lat.ms == 2.0 and lat.statistic == UNCALIBRATED
    assert lat.spread_pct == 0.0


def test_keeps_going_while_the_halves_disagree_up_to_the_cap():
    dev = Scripted([1.0, 1.2] * 50)  # even rounds 1.0, odd rounds 1.2: the halves never agree
    lat = measure_latency(dev, {"a": "a"}, Protocol(min_rounds=4, max_rounds=9))["a"]
    assert lat.rounds == 9 and lat.stopped_by == "max_rounds"
    assert lat.halves_ms == (1.0, 1.2) and lat.spread_pct == pytest.approx(100 * 0.2 / 1.0)


def test_stops_once_the_halves_come_to_agree():
    # rounds 0-3 disagree (1.0 / 1.3), then the machine settles at 1.1: the halves meet after a few more
    dev = Scripted([1.0, 1.3, 1.0, 1.3] + [1.1] * 40)
    lat = measure_latency(dev, {"a": "a"}, Protocol(min_rounds=4, max_rounds=30, agree=0.01))["a"]
    assert lat.stopped_by == "agreement" and 4 < lat.rounds < 30 and lat.ms == pytest.approx(1.1)


def test_each_artifact_stops_on_its_own():
    class Two(Scripted):
        def measure(self, art, warmup, runs, **kw):
            self.calls += 1
            return Measurement.from_samples([1.0 if art.name == "steady" else (1.0 if self.calls % 2 else 1.5)] * runs)
    lat = measure_latency(Two([0]), {"steady": "steady", "noisy": "noisy"}, Protocol(min_rounds=3, max_rounds=8))
    assert lat["steady"].rounds == 3 and lat["noisy"].rounds == 8


def test_protocol_bounds_are_one_clear_line():
    for bad, match in [(dict(min_rounds=1), "2 <= min rounds"), (dict(min_rounds=5, max_rounds=4), "min rounds"),
                       (dict(runs=0), "runs per round"), (dict(agree=0), "agreement"), (dict(runs=10**9), "runs")]:
        with pytest.raises(HwnasError, match=match):
            Protocol(**bad).check()


# -- on a real device -------------------------------------------------------------------------------------
def test_a_real_measurement_is_calibrated_and_reproducible_in_its_halves():
    dev = get_device("cpu")
    lat = dev.latency(net(), (1, 3, 32, 32), Protocol(min_rounds=4, max_rounds=12))
    assert lat.statistic == CALIBRATED and 4 <= lat.rounds <= 12 and lat.ms > 0
    assert lat.reference["nominal_ms"] > 0 and lat.reference["observed_ms"] > 0
    assert lat.raw.count >= lat.rounds * 10 and lat.raw.min <= lat.raw.median
    # the headline and the raw median describe the same runs: within the machine's speed swings of each other
    assert 0.3 < lat.ms / lat.raw.median < 3


def test_a_round_spoiled_by_interference_is_re_run_and_reported(monkeypatch):
    """An injected burst: while one round runs, the reference (and the artifact) are slowed 3x by work the
    test adds inside the timed calls. That round is not counted; the result says it was re-run and why."""
    dev = get_device("cpu")
    backend = dev.backend
    art = dev.prepare(net(), (1, 3, 32, 32))
    real_measure = backend.measure
    state = {"segment": 0}

    def measure_with_a_burst(artifact, **kw):
        if kw.get("paired") and kw.get("runs", 0) > 3:  # a counted segment, not the probe
            state["segment"] += 1
            if state["segment"] == 4:  # after three readings set what is typical
                from hwnas.latency import calibration
                ref = calibration.reference(backend)
                ref_run, run = backend.runner(ref.artifact), backend.runner(artifact)
                slow = {}

                def burst(fn):
                    from hwnas.latency.devices.base import Runner

                    def slowed():
                        t = time.perf_counter()
                        fn()
                        while time.perf_counter() - t < 3 * max(slow.setdefault(fn, 0.0), 1e-4):
                            pass
                    return Runner(slowed)
                for fn in (ref_run, run):
                    t = time.perf_counter()
                    fn()
                    slow[fn] = time.perf_counter() - t
                key_ref = next(k for k, v in backend._open.items() if v is ref_run)
                key_art = next(k for k, v in backend._open.items() if v is run)
                backend._open[key_ref], backend._open[key_art] = burst(ref_run), burst(run)
                try:
                    return real_measure(artifact, **kw)
                finally:
                    backend._open[key_ref], backend._open[key_art] = ref_run, run
        return real_measure(artifact, **kw)

    monkeypatch.setattr(backend, "measure", measure_with_a_burst)
    lat = measure_latency(dev, {"net": art}, Protocol(min_rounds=4, max_rounds=4))["net"]
    assert lat.rounds == 4 and sum(lat.reruns.values()) == 1, lat.reruns
    assert "interference" in next(iter(lat.reruns))
    assert max(lat.segments_ms) < 2 * min(lat.segments_ms)  # the 3x round is not among the counted ones


def test_a_device_that_cannot_pair_measures_uncalibrated_or_refuses_when_asked():
    dev = Scripted([1.0] * 20)
    assert measure_latency(dev, {"a": "a"}, Protocol(min_rounds=2, max_rounds=2))["a"].statistic == UNCALIBRATED
    with pytest.raises(HwnasError, match="cannot pair"):
        measure_latency(dev, {"a": "a"}, Protocol(min_rounds=2, max_rounds=2, calibrate=True))


# -- isolation: core pinning, recorded in the fingerprint --------------------------------------------------
def _devices(tmp_path, **cpu):
    import yaml
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"pinned": {"backend": "onnxruntime", "threads": 1, **cpu}}))
    return path


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core pinning needs Linux")
def test_timing_runs_on_the_chosen_core_and_the_fingerprint_says_which(tmp_path, monkeypatch):
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[0]
    dev = get_device("pinned", _devices(tmp_path, cores=[core]))
    fp = dev.fingerprint()
    assert fp["cores"] == str(core) and fp["threads"] == 1
    seen = []
    monkeypatch.setattr(type(dev.backend), "open", lambda self, art: (lambda: seen.append(os.sched_getaffinity(0))))
    dev.measure(dev.prepare(net(), (1, 3, 8, 8)), warmup=1, runs=3)
    assert seen and all(s == {core} for s in seen)
    assert os.sched_getaffinity(0) == set(allowed)  # restored afterwards
    assert get_device("pinned", _devices(tmp_path, cores="none")).fingerprint()["cores"] == "unpinned"
    auto = get_device("pinned", _devices(tmp_path)).fingerprint()["cores"]
    assert auto == (str(allowed[-1]) if len(allowed) > 1 else "unpinned")  # the default: the last core
    # which core is recorded but does not split tables
    assert get_device("pinned", _devices(tmp_path, cores="none")).fingerprint_key() == dev.fingerprint_key()


def test_bad_core_and_thread_settings_are_one_clear_line(tmp_path):
    with pytest.raises(HwnasError, match=r"device 'pinned': field 'cores'.*not available"):
        get_device("pinned", _devices(tmp_path, cores=[4096]))
    with pytest.raises(HwnasError, match=r"field 'threads'"):
        get_device("pinned", _devices(tmp_path, threads=100000))
    with pytest.raises(HwnasError, match=r"field 'threads'"):
        get_device("pinned", _devices(tmp_path, threads=-1))
    if len(os.sched_getaffinity(0)) > 1:
        with pytest.raises(HwnasError, match="2 threads on 1 core"):
            get_device("pinned", _devices(tmp_path, threads=2, cores=[sorted(os.sched_getaffinity(0))[0]])).fingerprint()


def test_pinned_restores_the_previous_binding():
    before = os.sched_getaffinity(0)
    with pinned([sorted(before)[0]]):
        assert os.sched_getaffinity(0) == {sorted(before)[0]}
    assert os.sched_getaffinity(0) == before


# -- device facts: one timing resource, options honoured or refused -----------------------------------------
def test_devices_on_this_machines_cores_share_one_timing_resource():
    from hwnas.executor import queue_id
    a, b = get_device("cpu"), get_device("cpu-all")
    assert a.timing_resource() == b.timing_resource() == queue_id(a) == get_device("torch-cpu").timing_resource()


def test_an_unknown_measurement_option_is_refused_not_dropped():
    with pytest.raises(HwnasError, match="unknown measurement option 'min_tim_s'"):
        get_device("cpu").measure(net(), (1, 3, 8, 8), min_tim_s=1.0)


def test_paired_measurement_on_a_host_device():
    dev = get_device("cpu")
    m = dev.measure(net(), (1, 3, 16, 16), warmup=1, runs=6, paired=True, pair_every=2)
    assert len(m.samples_ms) == 6 and len(m.paired_ms) == 3 and m.reference_ms > 0 and m.pair_every == 2


def test_measure_pairs_the_reference_and_warms_it_untimed():
    calls = []
    m = measure(lambda: calls.append("a"), warmup=1, runs=4, pair=lambda: calls.append("r"), pair_every=2)
    # warm-up: a r; then a a r(untimed) r(timed) a a r r
    assert calls == ["a", "r", "a", "a", "r", "r", "a", "a", "r", "r"]
    assert len(m.samples_ms) == 4 and len(m.paired_ms) == 2 and m.pair_every == 2
    assert np.all(np.asarray(m.paired_ms) >= 0)
