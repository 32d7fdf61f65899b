"""The demo runs the main job end to end on the embedded default device and writes its report (small settings:
the README's `bash scripts/demo.sh` runs the same code with the defaults)."""
import json

import pytest


@pytest.mark.slow
def test_the_demo_runs_the_main_job_and_writes_one_report(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    from hwnas.demo import run_demo
    out = tmp_path / "demo"
    r = run_demo(out=str(out), steps=60, samples=8, validate_samples=4)
    assert set(r["seconds"]) == {"zoo", "table", "search", "adapt"}
    assert [z["model"] for z in r["zoo"]["rows"]][0] == "mobilenet_v2" and r["zoo"]["rows"][0]["latency_ratio"] == 1
    assert r["table"]["ops"] > 0 and 0 <= r["table"]["predictor"]["within_10pct"] <= 1
    assert 0 <= r["table"]["noise_floor"]["within_10pct"] <= 1
    assert r["search"]["best"]["measured_ms"] > 0 and r["search"]["samples"] == 8
    a = r["adapt"]["summary"]
    assert a["adapted"]["measured_ms"] > 0 and r["adapt"]["uniform"]["measured_ms"] > 0
    assert json.loads((out / "demo.json").read_text())["device"] == "cpu"
    report = (out / "report.md").read_text()
    for part in ("Speed is not FLOPs", "latency table", "noise floor", "Search under", "NetAdapt", "Uniform width"):
        assert part in report, part
    for png in ("validation.png", "search/pareto.png", "adapt/trajectory.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in report, png
