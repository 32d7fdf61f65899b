"""`hwnas adapt` from the command line: the contract options and one-line errors."""

import pytest

from tests.cli_helpers import assert_one_line_error, hwnas


def test_help_lists_the_contract_options():
    r = hwnas("adapt", "--help")
    assert r.returncode == 0
    for opt in ("--budget", "--device", "--data", "--weights", "--input-size", "--short-steps", "--long-epochs",
                "--workers", "--out", "--resume", "--min-proposals", "--max-cut"):
        assert opt in r.stdout


@pytest.mark.parametrize("args,match", [
    (["mobilenet_v2", "--budget", "20"], "cannot read latency"),
    (["mobilenet_v2", "--budget", "fast"], "cannot read latency"),
    (["no_such_net", "--budget", "2ms"], "no_such_net"),
    (["mobilenet_v2", "--budget", "2ms", "--device", "no-such-device"], "unknown device"),
    (["mobilenet_v2", "--budget", "2ms", "--weights", "/nonexistent/w.pt"], "not found"),
    (["mobilenet_v2", "--budget", "2ms", "--max-cut", "0"], "max-cut"),
    (["mobilenet_v2", "--budget", "2ms", "--min-proposals", "0"], "min-proposals"),
])
def test_bad_input_is_one_clear_line(args, match, tmp_path):
    assert_one_line_error(hwnas("adapt", *args, "--out", str(tmp_path / "run")), match)


def test_unreachable_budget_is_reported_before_training(tmp_path):
    pytest.importorskip("hwnas.data")
    r = hwnas("adapt", "mobilenet_v2", "--budget", "1us", "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "out of reach")
    assert "training" not in r.stderr


@pytest.mark.slow
def test_proposals_on_a_local_ray_cluster(tmp_path):
    """`--executor ray`: the proposals of each iteration are fine-tuned as Ray tasks (a local cluster is
    started and stopped by the run); the run meets its budget as measured like a local one."""
    pytest.importorskip("ray")
    import json
    out = tmp_path / "run"
    from hwnas.latency.devices import get_device
    from hwnas.models import create
    # mobilenet_v2 at 32x32: ~0.4 ms, ~0.06 ms at minimum width (lenet5 is all overhead: no room to prune).
    # The min of three medians: a process's first measurement can read high (0.44 vs 0.36 ms), and a budget
    # above what the run itself measures leaves nothing to prune.
    net, dev = create("mobilenet_v2", num_classes=10).eval(), get_device("cpu")
    ms = min(dev.measure(net, input_shape=(1, 3, 32, 32), runs=50).median for _ in range(3))
    r = hwnas("adapt", "mobilenet_v2", "--budget", f"{0.9 * ms:.4f}ms", "--device", "cpu", "--input-size", "32",
              "--short-steps", "3", "--pretrain-steps", "20", "--long-epochs", "1", "--initial-step", "0.2",
              "--executor", "ray", "--out", str(out), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert "proposals run on ray" in r.stderr + r.stdout
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["budget_met"] and s["iterations"] >= 1
