"""`hwnas predict` and `hwnas lut kernels` as a user runs them: a zoo model with --validate and --per-kernel, an
ONNX file with dynamic dimensions given --input-shape, your own module, JSON to its schema, and one-line errors."""
import json

import onnx
import torch

from hwnas.models import create
from tests.cli_helpers import assert_one_line_error, hwnas
from tests.schema_check import check


def test_predict_a_zoo_model_and_validate_it(built):
    db, _ = built
    r = hwnas("predict", "--device", "cpu", "--model", "resnet18", "--input-size", "64", "--db", db, "--validate",
              "--per-kernel")
    assert r.returncode == 0, r.stderr
    assert "resnet18 on cpu (1x3x64x64): predicted " in r.stdout and "25 kernels" in r.stdout
    assert "measured " in r.stdout and "the prediction is " in r.stdout
    assert "kernels, in the order the runtime runs them" in r.stdout and "forest on" in r.stdout  # per kernel
    assert "could not be predicted" not in r.stdout


def test_predict_json_follows_its_schema(built):
    db, _ = built
    r = hwnas("predict", "--model", "mobilenet_v2", "--input-size", "64", "--db", db, "--json", "-")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    check(data, "predict")
    assert data["schema"] == "hwnas.predict/1" and data["complete"] and data["predicted_ms"] > 0
    assert len(data["kernels"]) == data["nodes"] and "measured" not in data
    assert data["kernels"][0]["key"].startswith("conv-hw:64x64-cin:3-cout:32-k:3x3-s:2x2")


def test_an_onnx_file_with_dynamic_dimensions_needs_and_takes_an_input_shape(built, tmp_path):
    db, _ = built
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(create("resnet18", num_classes=10).eval(), (torch.randn(1, 3, 64, 64),), str(path),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    onnx.checker.check_model(str(path))
    r = hwnas("predict", "--model", str(path), "--db", db)
    assert_one_line_error(r, "--input-shape")
    r = hwnas("predict", "--model", str(path), "--input-shape", "1x3x48x80", "--db", db, "--validate")
    assert r.returncode == 0, r.stderr
    assert "(1x3x48x80): predicted " in r.stdout and "the prediction is " in r.stdout


def test_your_own_module_by_factory(built):
    db, _ = built
    r = hwnas("predict", "--model", "tests.latency.test_kernels:CumulativeNet", "--input-shape",
              "1x3x16x16", "--db", db)
    assert r.returncode == 0, r.stderr
    assert "predicted at least " in r.stdout and "1 ops could not be predicted" in r.stdout
    assert "(ai.onnx:CumSum): no kernel kind covers this op" in r.stdout


def test_predict_errors_are_one_line(tmp_path):
    assert_one_line_error(hwnas("predict", "--model", "resnet18", "--db", tmp_path / "none.db"),
                          "no kernel table for device 'cpu'")
    assert_one_line_error(hwnas("predict", "--model", "nosuchnet", "--db", tmp_path / "none.db"), "nosuchnet")
    assert_one_line_error(hwnas("predict", "--model", "resnet18", "--input-shape", "1x3x8x8"), "--input-size")
    assert_one_line_error(hwnas("predict", "--device", "torch-cpu", "--model", "resnet18", "--db",
                                tmp_path / "none.db"), "does not show the kernels it runs: prediction from kernels")
    assert_one_line_error(hwnas("predict", "--device", "litert-cpu", "--model", "resnet18", "--db",
                                tmp_path / "none.db"), "no kernel table for device 'litert-cpu'")


def test_lut_kernels_refuses_a_device_whose_runtime_does_not_show_its_kernels(tmp_path):
    r = hwnas("lut", "kernels", "--device", "torch-cpu", "--db", tmp_path / "k.db")
    assert_one_line_error(r, "does not show the kernels it runs: a kernel table reads")


def test_predict_on_litert_from_its_kernel_table_with_the_measurement_beside_it(built_litert):
    db, _ = built_litert
    r = hwnas("predict", "--device", "litert-cpu", "--model", "mobilenet_v2", "--input-size", "64", "--db", db,
              "--validate", "--json", "-")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    check(data, "predict")
    assert data["device"] == "litert-cpu" and data["complete"] and data["predicted_ms"] > 0
    assert data["measured"]["ms"] > 0 and data["correction"]["n_networks"] == 3
    kinds = {k["kind"] for k in data["kernels"]}
    assert {"conv", "dwconv", "add", "gap", "fc", "transpose"} <= kinds and "pad" not in kinds
    assert all(k["op"].startswith("tflite:") and k["ms"] > 0 for k in data["kernels"])


def test_lut_kernels_builds_resumes_and_reports(tmp_path):
    db = tmp_path / "k.db"
    args = ("lut", "kernels", "--samples", "20", "--adaptive-rounds", "0", "--rounds", "2", "--runs", "2", "--db", db)
    r = hwnas(*args, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    check(rep, "lut-kernels")
    assert rep["measured"] == rep["models"] > 8 and rep["skipped"] == 0 and rep["samples"] > 4 * rep["models"]
    r = hwnas(*args)
    assert r.returncode == 0, r.stderr
    assert f"{rep['models']} kernel models" in r.stdout and "0 measured now" in r.stdout


def test_lut_list_counts_the_kernel_models(built):
    db, rep = built
    r = hwnas("lut", "list", "--db", db, "--json", "-")
    assert r.returncode == 0, r.stderr
    items = {i["fingerprint"]: i for i in json.loads(r.stdout)["items"]}
    assert items[rep.fingerprint]["kernel_models"] == rep.models
    r = hwnas("lut", "list", "--db", db)
    assert f"{rep.models} kernel models" in r.stdout
