"""bench/versus.py end to end on mnasnet-tiny: a baseline's width bisected to the found network's measured
latency, all trained with the same settings; a training that diverges is reported, not a crash."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCH = [0, 0, 0, 1, 0, 0] * 7  # mnasnet-tiny: dwconv k3, no SE, no skip, one layer per block


def versus(tmp_path, *args):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "versus.py"), "--space", "mnasnet-tiny",
                        "--arch", json.dumps(ARCH), "--baselines", "mobilenet_v2", "--seeds", "0", "1",
                        "--out", str(out), "--json", str(tmp_path / "r.json"), *args],
                       capture_output=True, text=True, timeout=900,
                       env={**os.environ, "HWNAS_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads((tmp_path / "r.json").read_text())


@pytest.mark.slow
def test_a_baseline_matched_and_trained_beside_the_found_network(tmp_path):
    out, report = versus(tmp_path, "--steps", "4")
    width = report["widths"]["mobilenet_v2"]
    assert 0.1 <= width <= 1.5
    rows = report["rows"]
    assert set(rows) == {"found", f"mobilenet_v2 x{width:.3f}"}
    for r in rows.values():
        assert r["ms"] > 0 and r["params"] > 0 and r["macs"] > 0
        assert len(r["top1"]) == 2 and all(0.0 <= t <= 1.0 for t in r["top1"])
    assert "found - mobilenet_v2" in out and "over the 2 seeds both trained" in out
    assert (tmp_path / "out" / "found-s1" / "summary.json").exists()  # each training has its own run directory


@pytest.mark.slow
def test_a_diverged_training_is_a_result(tmp_path):
    out, report = versus(tmp_path, "--steps", "6", "--lr", "1e12")
    assert all(t is None for r in report["rows"].values() for t in r["top1"])
    assert "2 of 2 seeds diverged, left out" in out
