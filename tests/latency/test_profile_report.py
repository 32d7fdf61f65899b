"""What `hwnas profile` reports beside latency: size on disk, params and MACs, peak memory, per-op-type totals,
--top and --csv. Real runs of small networks on the local runtimes."""
import csv
import json
import os

import pytest
from click.testing import CliRunner

import hwnas.models as zoo
from hwnas.cli import cli
from hwnas.latency.devices.base import OpTiming
from hwnas.latency.report import op_type_totals


@pytest.fixture(scope="module", autouse=True)
def hwnas_env(tmp_path_factory):
    """One HWNAS_HOME and cache for this module's tests: calibration and exports are made once."""
    tmp = tmp_path_factory.mktemp("hwnas")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWNAS_HOME", str(tmp / "home"))
        mp.setenv("HWNAS_CACHE", str(tmp / "cache"))
        yield tmp


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """One `hwnas profile` of lenet5 on cpu with --top 3, --csv and --json."""
    tmp = tmp_path_factory.mktemp("profile")
    r = CliRunner().invoke(cli, ["profile", "--model", "lenet5", "--warmup", "1", "--runs", "3", "--top", "3",
                                 "--csv", str(tmp / "ops.csv"), "--json", str(tmp / "out.json")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output, json.loads((tmp / "out.json").read_text()), tmp / "ops.csv"


def test_size_is_the_artifact_the_device_ran(lenet_run):
    _, d, _ = lenet_run
    assert d["model_path"].endswith(".onnx") and os.path.isfile(d["model_path"])
    assert d["model_bytes"] == os.path.getsize(d["model_path"]) > 0


def test_params_and_macs_are_the_zoo_counts(lenet_run):
    _, d, _ = lenet_run
    net = zoo.create("lenet5")
    assert d["params"] == zoo.count_params(net)
    assert d["macs"] == zoo.count_macs(net, (1, 3, 32, 32))
    assert "zoo model 'lenet5'" in d["params_note"] and "per image" in d["macs_note"]


def test_peak_memory_is_measured_and_described(lenet_run):
    out, d, _ = lenet_run
    mem = d["peak_memory"]
    assert mem["growth_bytes"] > 0 and mem["baseline_rss_bytes"] > 0
    assert mem["peak_rss_bytes"] == mem["baseline_rss_bytes"] + mem["growth_bytes"]
    assert mem["runs"] == 4  # warmup + runs
    assert "fresh process" in mem["what"] and "peak memory: +" in out


def test_per_op_type_totals_add_up(lenet_run):
    _, d, _ = lenet_run
    types = d["per_op_types"]
    assert sum(t["total_ms"] for t in types) == pytest.approx(d["per_op_total_ms"])
    assert sum(t["ops"] for t in types) == len(d["per_op"])
    assert sum(t["share"] for t in types) == pytest.approx(1.0)
    assert [t["total_ms"] for t in types] == sorted((t["total_ms"] for t in types), reverse=True)
    assert {t["op_type"] for t in types} == {o["op_type"] for o in d["per_op"]}


def test_top_limits_the_table_and_csv_holds_the_slowest(lenet_run):
    out, d, csv_path = lenet_run
    ops = d["per_op"]
    assert len(ops) > 3  # --top limits the table, never the JSON
    assert f"... {len(ops) - 3} more" in out and "per op type" in out
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "op", "op_type", "median_ms", "mean_ms", "runs", "share"]
    slowest = sorted(ops, key=lambda o: -o["median_ms"])[:3]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    assert [(r["op"], r["op_type"]) for r in rows] == [(o["name"], o["op_type"]) for o in slowest]
    assert [float(r["median_ms"]) for r in rows] == [o["median_ms"] for o in slowest]
    for r in rows:
        assert float(r["share"]) == pytest.approx(float(r["median_ms"]) / d["per_op_total_ms"])


def test_csv_alone_implies_per_op_and_lists_every_op(tmp_path):
    r = CliRunner().invoke(cli, ["profile", "--model", "mobilenet_v2", "--input-size", "32", "--warmup", "1",
                                 "--runs", "3", "--rounds", "2", "--no-memory", "--csv", str(tmp_path / "ops.csv"),
                                 "--json", str(tmp_path / "out.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "out.json").read_text())
    with open(tmp_path / "ops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(d["per_op"]) > 25
    assert d["peak_memory"]["growth_bytes"] is None and "--no-memory" in d["peak_memory"]["what"]
    assert d["params"] == zoo.count_params(zoo.create("mobilenet_v2"))


def test_model_file_params_are_its_weights(tmp_path):
    """An .onnx file: params are the weights it stores (lenet5 has no batch norm to fold: every parameter), no MACs."""
    import torch

    from hwnas.latency.export import export_onnx
    from hwnas.latency.profile import profile
    torch.manual_seed(0)
    net = zoo.create("lenet5")
    path = export_onnx(net.eval(), (1, 3, 32, 32), tmp_path / "lenet.onnx").path
    d = profile("cpu", str(path), warmup=1, runs=3, rounds=2)
    assert d["model_path"] == str(path.resolve()) and d["model_bytes"] == path.stat().st_size
    assert d["params"] == zoo.count_params(net) and "stored in the .onnx file" in d["params_note"]
    assert d["macs"] is None and d["macs_note"].startswith("n/a")
    assert d["peak_memory"]["growth_bytes"] > 0


def test_peak_memory_grows_with_the_model():
    """The figure is the model's own: mobilenet_v2's weights (13.9 MB on disk) are resident while it runs."""
    from hwnas.latency.devices import get_device
    from hwnas.latency.memory import peak_memory
    dev = get_device("cpu")
    art = dev.prepare("mobilenet_v2", (1, 3, 32, 32))
    mem = peak_memory(dev, art, runs=2)
    assert mem["growth_bytes"] > art.path.stat().st_size / 2, mem


def test_torch_backend_has_no_file_and_says_so():
    from hwnas.latency.profile import profile
    net = zoo.create("lenet5")
    d = profile("torch-cpu", net, (1, 3, 32, 32), warmup=1, runs=3, rounds=2)
    assert d["model_bytes"] is None and d["model_path"] is None
    assert d["params"] == zoo.count_params(net) and d["macs"] == zoo.count_macs(net, (1, 3, 32, 32))
    assert d["peak_memory"]["growth_bytes"] is None and "torch backend" in d["peak_memory"]["what"]


@pytest.mark.tflite
def test_tflite_file_params_are_its_constant_tensors(tmp_path):
    pytest.importorskip("litert_torch")
    import torch

    from hwnas.latency.artifacts import artifact_from_file
    from hwnas.latency.report import file_weights
    from hwnas.latency.tflite import export_tflite
    torch.manual_seed(0)
    net = zoo.create("lenet5")
    path, _ = export_tflite(net, (1, 3, 32, 32), tmp_path / "lenet.tflite", check_parity=False)
    n, how = file_weights(artifact_from_file(path, "tflite"))
    assert n == zoo.count_params(net) and "constant tensors" in how


def test_op_type_totals_of_given_timings():
    ops = [OpTiming("a", "Conv", 2.0), OpTiming("b", "Relu", 0.5), OpTiming("c", "Conv", 1.5)]
    assert op_type_totals(ops) == [{"op_type": "Conv", "total_ms": 3.5, "ops": 2, "share": 0.875},
                                   {"op_type": "Relu", "total_ms": 0.5, "ops": 1, "share": 0.125}]
    assert op_type_totals([]) == []
