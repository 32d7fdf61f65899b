"""The CLI contract: one-line `Error: ...` on stderr, exit != 0, no traceback (unless --debug)."""
import json

import pytest

from tests.cli_helpers import assert_one_line_error as _assert_error, hwnas


def assert_one_line_error(r, match):
    _assert_error(r, match, only_line=True)


def test_help_and_version():
    r = hwnas("--help")
    assert r.returncode == 0 and "profile" in r.stdout and "devices" in r.stdout
    r = hwnas("--version")
    assert r.returncode == 0 and "0.1.0" in r.stdout


def test_unknown_command_and_option():
    assert_one_line_error(hwnas("nope"), "No such command")
    assert_one_line_error(hwnas("profile", "--model", "lenet5", "--bogus"), "No such option")


def test_devices_lists_and_checks():
    r = hwnas("devices", "--check", "--json", "-")
    rows = {d["name"]: d for d in json.loads(r.stdout)["items"]}
    assert rows["cpu"]["usable"] is True and rows["cpu"]["fingerprint"]["threads"] == 1
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert rows["cuda"]["usable"] is False and "CUDAExecutionProvider" in rows["cuda"]["reason"]


def test_profile_json_contract():
    r = hwnas("profile", "--device", "cpu", "--model", "lenet5", "--runs", "7", "--warmup", "2", "--per-op",
              "--json", "-")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("model", "device", "fingerprint", "latency_ms", "runs", "per_op"):
        assert key in d
    assert set(d["latency_ms"]) >= {"median", "mean", "std", "min", "p90"}
    rep = d["reproducibility"]
    assert d["runs_per_round"] == 7 and d["runs"] == len(d["samples_ms"]) >= 7 * rep["rounds"]
    assert d["input_shapes"] == {"input": [1, 3, 32, 32]} and d["measured_ms"] == d["latency_ms"]["measured"] > 0
    assert d["statistic"] == "calibrated median" and rep["rounds"] >= 6 and len(rep["halves_ms"]) == 2
    assert d["reference"]["nominal_ms"] > 0 and d["fingerprint"]["protocol"].startswith("rounds/1")
    assert all({"name", "op_type", "median_ms"} <= set(o) for o in d["per_op"])


def test_profile_threads_override_recorded():
    r = hwnas("profile", "--model", "lenet5", "--runs", "3", "--threads", "2", "--json", "-")
    assert json.loads(r.stdout)["fingerprint"]["threads"] == 2


@pytest.mark.parametrize("args,match", [
    (["profile", "--device", "phone9", "--model", "lenet5"], "unknown device 'phone9'"),
    (["profile", "--model", "no_such_net"], "unknown model 'no_such_net'"),
    (["profile", "--model", "missing.onnx"], "does not exist"),
    (["profile", "--model", "weights.pt"], "unsupported model file"),
    (["profile", "--model", "lenet5", "--devices", "nowhere.yaml"], "does not exist"),
])
def test_profile_errors(args, match):
    assert_one_line_error(hwnas(*args), match)


def test_bad_input_shape(tmp_path):
    from tests.latency.test_devices import dynamic_onnx
    path = dynamic_onnx(tmp_path / "dyn.onnx")
    assert_one_line_error(hwnas("profile", "--model", str(path)), "dynamic dimensions")
    assert_one_line_error(hwnas("profile", "--model", str(path), "--input-shape", "1x3xbig"), "cannot read input shape")
    r = hwnas("profile", "--model", str(path), "--input-shape", "1x3x48x320", "--runs", "3", "--json", "-")
    assert r.returncode == 0 and json.loads(r.stdout)["input_shapes"] == {"images": [1, 3, 48, 320]}
    # each option belongs to one kind of model: given to the other it is an error, not silently ignored
    assert_one_line_error(hwnas("profile", "--model", str(path), "--input-size", "64"), "--input-size is for zoo")
    assert_one_line_error(hwnas("profile", "--model", "lenet5", "--input-shape", "1x1x32x32"),
                          "--input-shape is for model files")


def test_malformed_devices_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("gpu0:\n  backend: onnxruntime\n  provider: tpu\n")
    assert_one_line_error(hwnas("profile", "--model", "lenet5", "--device", "gpu0", "--devices", str(f)),
                          "device 'gpu0': field 'provider'")


@pytest.mark.parametrize("args,option,limit", [
    (["search", "--target", "1ms", "--samples"], "--samples", 100_000),
    (["search", "--target", "1ms", "--top-k"], "--top-k", 1_000),
    (["lut", "validate", "--samples"], "--samples", 100_000),
    (["lut", "build", "--fit-networks"], "--fit-networks", 10_000),
    (["profile", "--model", "lenet5", "--runs"], "--runs", 100_000),
    (["profile", "--model", "lenet5", "--rounds"], "--rounds", 1_000),
    (["scale", "--target", "1ms", "--steps"], "--steps", 1_000_000),
    (["adapt", "lenet5", "--budget", "1ms", "--short-steps"], "--short-steps", 1_000_000),
])
def test_counts_are_bounded(args, option, limit):
    """A count with a few zeros too many is refused at once, in one line, instead of running for days."""
    r = hwnas(*args, "1000000000000")
    assert r.returncode == 2
    assert_one_line_error(r, f"Invalid value for '{option}': 1000000000000 is not in the range")
    assert f"<={limit}" in r.stderr


def test_count_bounds_are_in_the_help():
    r = hwnas("search", "--help")
    assert r.returncode == 0 and "1<=x<=100000" in r.stdout


def test_debug_shows_traceback():
    r = hwnas("--debug", "profile", "--device", "phone9", "--model", "lenet5")
    assert r.returncode != 0 and "Traceback" in r.stderr
