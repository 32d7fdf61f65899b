"""`hwnas devices --check`: each usable device's fingerprint, and for the others (or a device usable only in
part) which package is missing and the command that installs it. Missing packages are simulated by patching the
importability check the LiteRT backend asks, in this process (nothing is uninstalled)."""
import json

import pytest
from click.testing import CliRunner

import hwnas.latency.devices.litert as litert
from hwnas.cli import cli
from hwnas.latency.devices import get_device

TFLITE_EXTRA = "pip install 'hwnas[tflite]'"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))


def check(*extra):
    r = CliRunner().invoke(cli, ["devices", "--check", *extra], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def rows():
    data = json.loads(check("--json", "-"))
    if isinstance(data, dict):  # stamped with a schema: the list is its items
        data = data["items"]
    return {d["name"]: d for d in data}


def detail_line(out: str, device: str) -> str:
    """The plain line below the table that starts with the device's name."""
    lines = [ln.strip() for ln in out.splitlines() if ln.startswith(f"  {device} ")]
    assert lines, out
    return lines[-1]


def test_usable_devices_show_their_fingerprint():
    fp = get_device("cpu").fingerprint()
    cpu = rows()["cpu"]
    assert cpu["usable"] is True and cpu["fingerprint"]["key"] == fp["key"] and cpu["missing_extras"] == []
    line = detail_line(check(), "cpu")
    assert line.split()[1] == fp["key"]
    for field in ("onnxruntime", fp["runtime_version"], "threads 1", fp["cpu_model"]):
        assert field in line, line


def test_litert_without_the_tflite_extra_is_usable_in_part(monkeypatch):
    monkeypatch.setattr(litert, "importable", lambda module: module != "litert_torch")
    row = rows()["litert-cpu"]
    assert row["usable"] is True and row["usable_for"] == ".tflite model files"
    assert row["missing_extras"] == [{"package": "litert-torch", "needed_for": "exporting torch models to .tflite",
                                      "install": TFLITE_EXTRA}]
    out = check()
    assert detail_line(out, "litert-cpu") == ("litert-cpu  usable for .tflite model files; exporting torch models to "
                                              f".tflite needs {TFLITE_EXTRA}")
    assert "partly" in out


def test_litert_with_the_extra_is_fully_usable():
    if not litert.importable("litert_torch"):
        pytest.skip("the tflite extra is not installed here")
    row = rows()["litert-cpu"]
    assert row["usable"] is True and row["missing_extras"] == [] and "usable_for" not in row


def test_litert_without_a_runtime_is_not_usable_and_names_both_installs(monkeypatch):
    monkeypatch.setattr(litert, "importable", lambda module: False)
    row = rows()["litert-cpu"]
    assert row["usable"] is False and row["reason"] == "no TFLite runtime installed: pip install ai-edge-litert"
    assert [m["package"] for m in row["missing_extras"]] == ["ai-edge-litert", "litert-torch"]
    line = detail_line(check(), "litert-cpu")
    assert line.startswith("litert-cpu  no: no TFLite runtime installed: pip install ai-edge-litert")
    assert line.endswith(f"exporting torch models to .tflite needs {TFLITE_EXTRA}")
    assert line.count("pip install ai-edge-litert") == 1
