"""Compound scaling: the grid's constraint, the phi search, and a tiny end-to-end run on cpu + digits."""
import json
import math

import pytest

from hwnas.errors import HwnasError
from hwnas.latency.protocol import Protocol
from hwnas.search.config import ScaleConfig
from hwnas.search.scaling import CompoundScaling, Scaled, compound_grid, find_phi


def test_grid_meets_the_flops_constraint():
    grid = compound_grid(step=0.1, tolerance=0.05)
    assert len(grid) > 3
    for a, b, g in grid:
        assert min(a, b, g) >= 1.0
        assert abs(a * b * b * g * g / 2.0 - 1.0) <= 0.05 + 1e-9
    assert (2.0, 1.0, 1.0) in grid  # depth alone doubles the FLOPs
    few = compound_grid(step=0.1, tolerance=0.05, max_candidates=3)
    assert len(few) == 3 and few[0] == grid[0] and few[-1] == grid[-1]


def test_grid_with_nothing_in_tolerance_is_a_clear_error():
    with pytest.raises(HwnasError, match="no \\(alpha, beta, gamma\\)"):
        compound_grid(step=0.7, tolerance=0.0)


def test_scaled_coefficients():
    s = Scaled(1.2, 1.1, 1.15, 2.0, 32)
    assert s.depth == pytest.approx(1.44) and s.width == pytest.approx(1.21)
    assert s.resolution == round(32 * 1.15 ** 2)
    assert Scaled(1.2, 1.1, 1.15, -10.0, 32).resolution == 16  # floor
    assert s.input_size == s.resolution  # deployed at the training size unless told
    d = Scaled(1.2, 1.1, 1.15, 2.0, 32, 224)
    assert d.resolution == s.resolution and d.input_size == round(224 * 1.15 ** 2)
    assert d.to_dict()["input_size"] == d.input_size


def test_phi_search_upwards_finds_the_largest_phi_within_target():
    calls = []

    def lat(phi):
        calls.append(phi)
        return 5.0 * 2.0 ** phi

    phi, probes = find_phi(lat, 20.0, bisect_steps=4)
    assert phi == pytest.approx(2.0)  # 5 * 2^2 = 20 meets it exactly; 3 does not
    assert all(probes[p] <= 20.0 for p in probes if p <= phi)
    assert len(calls) == len(set(calls))  # no phi measured twice


def test_phi_search_downwards_and_bisection():
    true = math.log2(3.0 / 5.0)  # 5 * 2^phi = 3
    phi, probes = find_phi(lambda p: 5.0 * 2.0 ** p, 3.0, bisect_steps=6)
    assert phi <= true and phi > true - 1.0 / 2 ** 6 - 1e-9
    assert probes[round(phi, 4)] <= 3.0


def test_phi_search_unreachable_target():
    with pytest.raises(HwnasError, match="unreachable"):
        find_phi(lambda p: 100.0, 1.0, phi_min=-2)


def test_non_efficientnet_base_is_refused():
    with pytest.raises(HwnasError, match="cannot be compound-scaled"):
        CompoundScaling(ScaleConfig(target="20ms", base="mobilenet_v2", out="/tmp/unused"), None)


@pytest.mark.slow
def test_scale_end_to_end_and_resume(tmp_path):
    from hwnas.latency.devices import get_device
    dev = get_device("cpu")
    grid = [(2.0, 1.0, 1.0), (1.0, 1.0, 1.4)]
    out = tmp_path / "run"
    kw = dict(base="efficientnet_b0", target=1000.0, resolution=16, steps=2, final_steps=1, batch_size=16,
              grid=grid, phi_min=-1.0, phi_max=1.0, bisect_steps=1, out=str(out))
    protocol = Protocol(warmup=1, runs=3, min_rounds=2, max_rounds=3)

    def runner(**more):
        return CompoundScaling(ScaleConfig(**{**kw, **more}), dev, protocol=protocol)
    r1 = runner()
    summary = r1.run()
    assert r1.trained == 3  # two grid points and the final network
    for name in ("config.json", "samples.jsonl", "phi.jsonl", "grid.json", "pareto.json", "pareto.png",
                 "summary.json", "best.onnx"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["arch"] for r in rows] == [list(g) for g in grid]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["latency_ms"] > 0 for r in rows)
    c = summary["chosen"]
    assert c["phi"] == 1.0  # a 1 s target: the largest phi allowed
    assert summary["measured_latency_ms"] > 0 and summary["meets_target"]
    assert (c["alpha"], c["beta"], c["gamma"]) in grid

    import onnxruntime as ort
    sess = ort.InferenceSession(str(out / "best.onnx"))
    assert list(sess.get_inputs()[0].shape)[-1] == c["resolution"]

    # without --resume the directory is refused; with it, nothing of the grid is trained again
    with pytest.raises(HwnasError, match="pass resume to continue"):
        runner().run()
    r2 = runner(resume=True)
    again = r2.run()
    assert r2.trained == 1  # the final network only
    assert again["chosen"] == summary["chosen"]
    with pytest.raises(HwnasError, match="settings changed"):
        runner(resume=True, steps=3).run()


def test_cli_bad_target_is_one_line_error(tmp_path):
    from tests.cli_helpers import hwnas
    res = hwnas("scale", "--target", "fast", "--out", str(tmp_path / "r"), timeout=300)
    assert res.returncode != 0
    assert "Error:" in res.stderr + res.stdout and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_scale_trains_at_the_resolution_and_measures_at_the_input_size(tmp_path):
    from hwnas.latency.devices import get_device
    out = tmp_path / "run"
    cfg = ScaleConfig(base="efficientnet_b0", target=1000.0, resolution=16, input_size=40, steps=1, final_steps=1,
                      batch_size=16, grid=[(1.0, 1.0, 1.2)], phi_min=0.0, phi_max=1.0, bisect_steps=0, out=str(out))
    summary = CompoundScaling(cfg, get_device("cpu"), protocol=Protocol(warmup=1, runs=3, min_rounds=2,
                                                                         max_rounds=3)).run()
    c = summary["chosen"]
    assert c["phi"] == 1.0 and c["resolution"] == round(16 * 1.2) and c["input_size"] == 48
    assert summary["input_sizes"] == {"latency": 48, "accuracy": 19}
    import onnxruntime as ort
    assert list(ort.InferenceSession(str(out / "best.onnx")).get_inputs()[0].shape) == [1, 3, 48, 48]
    phis = [json.loads(line) for line in (out / "phi.jsonl").read_text().splitlines()]
    assert all(p["input_size"] == round(40 * 1.2 ** p["phi"]) for p in phis)
