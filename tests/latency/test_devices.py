import textwrap

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device, list_devices


def tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()


def dynamic_onnx(path):
    """A 'third-party' ONNX file whose input has symbolic batch/height/width."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(0).standard_normal(108))
    node = helper.make_node("Conv", ["images", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_shipped_devices_are_valid():
    names = set(list_devices())
    assert {"cpu", "cpu-all", "torch-cpu", "litert-cpu", "cuda"} <= names


def test_cpu_measures_a_module_and_fingerprints():
    dev = get_device("cpu")
    m = dev.measure(tiny(), (1, 3, 32, 32), warmup=2, runs=10)
    assert m.count == 10 and m.median > 0 and len(m.samples_ms) == 10
    fp = dev.fingerprint()
    assert fp["runtime"] == "onnxruntime" and fp["threads"] == 1
    assert fp["provider"] == "CPUExecutionProvider" and fp["cpu_model"] and len(fp["key"]) == 12


def test_fingerprint_key_separates_thread_counts():
    assert get_device("cpu").fingerprint_key() != get_device("cpu-all").fingerprint_key() or \
        get_device("cpu-all").fingerprint()["threads"] == 1


def test_torch_backend():
    m = get_device("torch-cpu").measure(tiny(), (1, 3, 32, 32), warmup=1, runs=5)
    assert m.count == 5 and m.median > 0


@pytest.mark.tflite
def test_litert_backend_runs_exported_tflite():
    dev = get_device("litert-cpu")
    m = dev.measure(tiny(), (1, 3, 32, 32), warmup=1, runs=5)
    assert m.count == 5 and m.median > 0
    assert dev.fingerprint()["runtime"] == "ai-edge-litert"


def test_per_op_profile_adds_up(tmp_path):
    dev = get_device("cpu")
    art = dev.prepare(tiny(), (1, 3, 64, 64))
    ops = dev.profile_ops(art, warmup=3, runs=20)
    assert {o.op_type for o in ops} >= {"Conv", "Gemm"}
    assert all(o.count == 20 for o in ops)


def test_unknown_device_lists_known():
    with pytest.raises(HwnasError, match=r"unknown device 'phone9'.*known devices: .*cpu"):
        get_device("phone9")


@pytest.mark.parametrize("body,match", [
    ("cpu: [unclosed", r"not valid YAML"),
    ("mine:\n  backend: onnxruntime\n  threads: many\n", r"device 'mine': field 'threads'"),
    ("mine:\n  backend: warp-drive\n", r"device 'mine': field 'backend': unknown backend 'warp-drive'"),
    ("mine:\n  threads: 2\n", r"device 'mine': field 'backend' is missing"),
    ("mine:\n  backend: onnxruntime\n  thread: 2\n", r"device 'mine': field 'thread'"),
    ("- a\n- b\n", r"expected a mapping"),
    # phone threads and ports bounded
    ("p:\n  backend: adb\n  threads: -1\n", r"device 'p': field 'threads': .*greater than or equal to 1"),
    ("p:\n  backend: adb\n  threads: 100000\n", r"device 'p': field 'threads': .*less than or equal to 256"),
    ("r:\n  backend: remote\n  host: box\n  port: 99999\n", r"device 'r': field 'port': .*less than or equal to 65535"),
    ("r:\n  backend: remote\n  host: box\n  port: 0\n", r"device 'r': field 'port': .*greater than or equal to 1"),
])
def test_malformed_devices_file_names_file_device_field(tmp_path, body, match):
    f = tmp_path / "my-devices.yaml"
    f.write_text(body)
    with pytest.raises(HwnasError, match=match) as e:
        get_device("cpu", devices_file=f)
    assert "my-devices.yaml" in str(e.value)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "litert"])
def test_host_threads_are_bounded_by_this_machines_cores(tmp_path, backend):
    import os

    from hwnas.latency.devices.base import MAX_THREADS, THREADS_PER_CORE
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bound = min(MAX_THREADS, THREADS_PER_CORE * cores)
    f = tmp_path / "my-devices.yaml"
    for threads in (bound + 1, 100000, -1):
        f.write_text(f"mine:\n  backend: {backend}\n  threads: {threads}\n")
        with pytest.raises(HwnasError, match=rf"my-devices.yaml: device 'mine': field 'threads': .*{threads} is not "
                                             rf"between 0 \(every core\) and {bound} \({THREADS_PER_CORE} per core"):
            get_device("mine", devices_file=f)
    f.write_text(f"mine:\n  backend: {backend}\n  threads: {bound}\n")
    assert get_device("mine", devices_file=f).backend.threads == bound


def test_a_threads_override_is_checked_like_the_devices_file():
    from hwnas.latency.profile import with_threads
    assert with_threads(get_device("cpu"), 2).backend.threads == 2
    with pytest.raises(HwnasError, match=r"device 'cpu': field 'threads': .*100000 is not between 0"):
        with_threads(get_device("cpu"), 100000)
    with pytest.raises(HwnasError, match=r"device 'pixel': field 'threads': .*less than or equal to 256"):
        with_threads(get_device("pixel"), 100000)


def test_a_binary_devices_file_is_one_clear_line(tmp_path):
    f = tmp_path / "devices.yaml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(HwnasError, match=rf"devices file {f} is not text \(YAML\): byte 0x89 at offset 0 is not UTF-8"):
        get_device("cpu", devices_file=f)


def test_user_devices_from_env_override(tmp_path, monkeypatch):
    f = tmp_path / "d.yaml"
    f.write_text(textwrap.dedent("""
        cpu:
          backend: onnxruntime
          threads: 2
        box:
          backend: torch
    """))
    monkeypatch.setenv("HWNAS_DEVICES", str(f))
    assert get_device("cpu").backend.threads == 2
    assert get_device("box").entry.backend == "torch"


def test_cuda_without_cuda_is_a_clear_error():
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HwnasError, match="CUDAExecutionProvider"):
        get_device("cuda").measure(tiny(), (1, 3, 32, 32))


def test_dynamic_onnx_needs_input_shape(tmp_path):
    path = dynamic_onnx(tmp_path / "third_party.onnx")
    dev = get_device("cpu")
    with pytest.raises(HwnasError, match=r"input 'images' has dynamic dimensions \(\?x3x\?x\?\)"):
        dev.measure(path)
    m = dev.measure(path, "1x3x48x320", warmup=1, runs=3)
    assert m.count == 3
    with pytest.raises(HwnasError, match="does not fit input 'images'"):
        dev.measure(path, "1x4x48x320")
    with pytest.raises(HwnasError, match="no input named 'mask'"):
        dev.measure(path, "mask=1x3x4x4")


@pytest.mark.parametrize("name,content,match", [
    ("missing.onnx", None, "does not exist"),
    ("corrupt.onnx", b"\x00garbage\xff" * 10, "not a readable ONNX model"),
    ("empty.onnx", b"", "is empty"),
    ("model.pb", b"x", "unsupported model file"),
    ("corrupt.tflite", b"not a flatbuffer", "device 'cpu' runs .onnx models"),
])
def test_bad_model_files(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(HwnasError, match=match):
        get_device("cpu").measure(path)


def test_corrupt_tflite_on_litert(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(b"0123456789abcdef")
    with pytest.raises(HwnasError, match="not a readable TFLite model"):
        get_device("litert-cpu").measure(path)
