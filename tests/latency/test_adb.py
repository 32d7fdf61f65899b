"""The adb backend end to end against the emulated phone (tests/latency/phone/): a real `adb`
executable on PATH acting on a temp folder, and a benchmark_model that really times the .tflite."""
import json
import subprocess
import sys

import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.latency.benchmark_model import parse
from hwnas.latency.devices import get_device
from tests.latency.phone.fake_phone import SERIAL, fake_phone  # noqa: F401  (pytest fixture)

SHAPE = (1, 3, 16, 16)


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1)).eval()


@pytest.fixture(scope="module")
def net():
    return tiny_net()


def phone(fake, **options):
    return get_device("phone", fake.devices_file(**options))


def test_measure_fingerprint_and_cleanup(fake_phone, net):
    dev = phone(fake_phone, cpu_mask="1")
    fp = dev.fingerprint()
    assert fp["backend"] == "adb" and fp["serial"] == SERIAL
    assert fp["soc"] == "SM8150" and fp["android"] == "13" and fp["cpu_mask"] == "1"
    # a different CPU mask is a different table
    assert phone(fake_phone, cpu_mask="2").fingerprint_key() != dev.fingerprint_key()
    m = dev.measure(net, SHAPE, warmup=2, runs=7)
    assert m.count == 7 and m.warmup == 2 and m.samples_ms == []
    assert 0 < m.min <= m.median <= m.max and m.min <= m.mean <= m.max
    assert dev.backend.last_run["median_source"] == "median"
    # what the shim printed parses back to the same figures, and nothing pushed is left behind
    out = parse(dev.backend.last_run["raw_output"])
    assert out.inference.count == 7 and out.inference.median / 1000 == pytest.approx(m.median)
    assert sorted(p.name for p in fake_phone.tmp_dir().iterdir()) == ["benchmark_model"]


def test_profile_ops_from_op_profiling_tables(fake_phone, net):
    dev = phone(fake_phone)
    ops = dev.profile_ops(net, SHAPE, warmup=1, runs=5)
    types = [o.op_type for o in ops]
    assert types.count("CONV_2D") == 2
    out = parse(dev.backend.last_run["raw_output"])
    assert "APPROXIMATED" in dev.backend.last_run["raw_output"]  # the emulated phone says what it is
    assert sum(o.median_ms for o in ops) == pytest.approx(out.inference.avg / 1000, abs=0.01)


def test_adb_not_installed(fake_phone, monkeypatch, tmp_path, net):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HwnasError, match="adb is not installed"):
        phone(fake_phone).measure(net, SHAPE, warmup=1, runs=2)


def test_no_device(fake_phone):
    fake_phone.remove_device()
    with pytest.raises(HwnasError, match="no Android phone attached"):
        phone(fake_phone).check()


def test_serial_not_attached(fake_phone):
    with pytest.raises(HwnasError, match=r"serial 'NOPE' is not attached \(attached: EMU0PIXEL\)"):
        phone(fake_phone, serial="NOPE").check()


def test_several_devices_need_a_serial(fake_phone):
    fake_phone.add_device("SECOND")
    with pytest.raises(HwnasError, match="several phones attached"):
        phone(fake_phone).check()
    phone(fake_phone, serial="SECOND").check()


def test_unauthorized(fake_phone):
    fake_phone.set_state("unauthorized")
    with pytest.raises(HwnasError, match="unauthorized.*Allow USB debugging"):
        phone(fake_phone).check()


def test_benchmark_model_missing_says_how_to_push(fake_phone):
    fake_phone.remove_benchmark_model()
    with pytest.raises(HwnasError, match=r"benchmark_model not found at /data/local/tmp/benchmark_model.*adb -s "
                                         r"EMU0PIXEL push benchmark_model"):
        phone(fake_phone).check()


def test_model_rejected(fake_phone, net):
    fake_phone.set(reject_model=True)
    with pytest.raises(HwnasError, match="rejected.*Didn't find op for builtin opcode"):
        phone(fake_phone).measure(net, SHAPE, warmup=1, runs=2)
    assert sorted(p.name for p in fake_phone.tmp_dir().iterdir()) == ["benchmark_model"]


def test_gpu_delegate_unavailable_is_a_clear_error(fake_phone, net):
    with pytest.raises(HwnasError, match="rejected.*GPU/NNAPI delegate"):
        phone(fake_phone, use_gpu=True).measure(net, SHAPE, warmup=1, runs=2)


@pytest.mark.timeout(60)
def test_disconnect_mid_run_times_out_instead_of_hanging(fake_phone, net):
    dev = phone(fake_phone, timeout_s=3.0)
    dev.check()
    fake_phone.set(hang=True)
    with pytest.raises(HwnasError, match="benchmark_model got no answer within 3s.*disconnected"):
        dev.measure(net, SHAPE, warmup=1, runs=2)


@pytest.mark.slow
def test_cli_profile_mobilenet_v2_on_the_emulated_phone(fake_phone, tmp_path):
    out = tmp_path / "r.json"
    # the shipped `pixel` entry (taskset mask 70, default benchmark_model path) on the emulated phone
    cmd = [sys.executable, "-m", "hwnas", "profile", "--device", "pixel", "--model", "mobilenet_v2", "--input-size", "64", "--warmup", "1", "--runs", "3", "--per-op",
           "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["device"] == "pixel" and res["fingerprint"]["backend"] == "adb"
    assert res["fingerprint"]["cpu_mask"] == "70" and res["runs_per_round"] == 3
    assert res["statistic"] == "median of round medians" and res["runs"] == 3 * res["reproducibility"]["rounds"]
    assert res["latency_ms"]["median"] > 0 and res["samples_ms"] == []
    assert sum(1 for o in res["per_op"] if o["op_type"] == "DEPTHWISE_CONV_2D") >= 10


def test_unplugged_after_check(fake_phone, net):
    dev = phone(fake_phone)
    dev.check()
    fake_phone.remove_device()
    with pytest.raises(HwnasError, match="EMU0PIXEL is no longer attached"):
        dev.measure(net, SHAPE, warmup=1, runs=2)


def test_options_the_phone_cannot_honour_are_refused_and_the_others_forwarded(fake_phone, net):
    """benchmark_model has --min_secs / --max_secs but no confidence-interval stop rule and no paired
    calibration: the first are forwarded, the others refused with one line (never silently dropped)."""
    dev = phone(fake_phone)
    for kw, option in [({"adaptive": True}, "adaptive"), ({"paired": True}, "paired"), ({"rel_ci": 0.01}, "rel_ci")]:
        with pytest.raises(HwnasError, match=f"device 'phone' \\(adb\\) cannot honour {option}: .*fixed count"):
            dev.measure(net, SHAPE, warmup=1, runs=2, **kw)
    cmd = dev.backend._command("/data/local/tmp/m.tflite", dev.prepare(net, SHAPE), 1, 3, False, 0.4, 5.0)
    assert "--min_secs=0.4" in cmd and "--max_secs=5" in cmd
    m = dev.measure(net, SHAPE, warmup=1, runs=3, min_time_s=0.3)
    assert m.count > 3  # the emulated benchmark_model kept running for --min_secs, as the real one does


def test_the_protocol_on_a_phone_is_uncalibrated_and_says_so(fake_phone, net):
    from hwnas.latency.protocol import UNCALIBRATED, Protocol
    lat = phone(fake_phone).latency(net, SHAPE, Protocol(warmup=1, runs=3, min_rounds=2, max_rounds=3))
    assert lat.statistic == UNCALIBRATED and lat.reference is None and 2 <= lat.rounds <= 3
    assert lat.raw.samples_ms == [] and lat.raw.count >= 2 * 3  # benchmark_model reports summaries only
