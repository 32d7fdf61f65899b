"""`hwnas search` from the command line: clear one-line errors, and an end-to-end run on cpu."""
import json
import subprocess
import sys

import pytest


def hwnas(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, timeout=900,
                          cwd=cwd)


def assert_one_line_error(r, match):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.stderr
    assert match in lines[-1], lines[-1]
    assert "Traceback" not in r.stderr


def test_help_lists_the_contract_options():
    r = hwnas("search", "--help")
    assert r.returncode == 0
    for opt in ("--device", "--space", "--target", "--w", "--hard", "--strategy", "--samples", "--data",
                "--out", "--resume", "--estimator", "--seed", "--top-k", "--db"):
        assert opt in r.stdout


@pytest.mark.parametrize("args,match", [
    (["--target", "20"], "cannot read latency"),
    (["--target", "20ms", "--hard", "--w", "-0.1"], "--hard"),
    (["--target", "20ms", "--w", "0.5"], "<= 0"),
    (["--target", "20ms", "--strategy", "annealing"], "unknown search strategy"),
    (["--target", "20ms", "--estimator", "synflow", "--train-steps", "3"], "--train-steps"),
])
def test_bad_input_is_one_clear_line(args, match, tmp_path):
    assert_one_line_error(hwnas("search", "--out", str(tmp_path / "run"), *args), match)
