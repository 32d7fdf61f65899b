"""The GPU code paths, tested by what runs on a CPU machine: the synchronisation inside the one timing loop (a fake
stream that only finishes work when synchronised, a fake clock), onnxruntime's I/O binding and provider chain
(a fake session: no GPU runtime here), the fingerprint fields (a fake nvidia-smi on PATH), option validation, and
the one line a user gets asking for a GPU device on a machine without one. On a GPU machine scripts/gpu-check.sh
runs the real thing."""
import os
import stat
import sys

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.latency import measure as measure_mod
from hwnas.latency.devices import get_device
from hwnas.latency.devices.base import Runner
from hwnas.latency.devices.gpu import build_info_field, gpu_fingerprint
from hwnas.latency.devices.ort import OnnxRuntimeBackend, OrtOptions, bind_on_device, provider_chain
from hwnas.latency.measure import measure


class FakeStream:
    """A GPU queue: launch() queues work and returns at once; synchronize() advances the clock by the queued work."""

    def __init__(self, clock):
        self.clock, self.pending, self.events = clock, 0, []

    def launch(self, ns):
        self.events.append("launch")
        self.pending += ns

    def synchronize(self):
        self.events.append("sync")
        self.clock.now += self.pending
        self.pending = 0


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        self.events.append("clock")
        return self.now


@pytest.fixture
def stream(monkeypatch):
    clock = FakeClock()
    s = FakeStream(clock)
    clock.events = s.events
    monkeypatch.setattr(measure_mod.time, "perf_counter_ns", clock)
    return s


def test_sync_puts_the_device_work_inside_each_timed_window(stream):
    m = measure(lambda: stream.launch(2_000_000), warmup=2, runs=5, sync=stream.synchronize)
    assert m.samples_ms == [2.0] * 5  # 2 ms of GPU work each, not the ~0 it takes to queue it


def test_without_sync_a_sample_is_only_the_time_to_queue(stream):
    m = measure(lambda: stream.launch(2_000_000), warmup=0, runs=3)
    assert m.samples_ms == [0.0] * 3  # what a GPU timing without synchronisation would report


def test_sync_order_warmup_drained_then_clock_launch_sync_clock(stream):
    measure(lambda: stream.launch(1000), warmup=1, runs=2, sync=stream.synchronize)
    ev = stream.events
    # warm-up (launch, sync), the untimed drain, then per sample: clock, launch, sync, clock
    assert ev == ["launch", "sync", "sync", "clock", "launch", "sync", "clock", "clock", "launch", "sync", "clock"]


def test_sync_in_the_adaptive_mode_too(stream):
    m = measure(lambda: stream.launch(3_000_000), warmup=0, adaptive=True, min_runs=5, max_runs=10,
                sync=stream.synchronize)
    assert set(m.samples_ms) == {3.0}


def test_runner_called_is_one_complete_inference():
    events = []
    r = Runner(lambda: events.append("run") or 7, lambda: events.append("sync"))
    assert r() == 7 and events == ["run", "sync"]
    assert Runner(lambda: 3)() == 3


def test_host_backend_hands_the_runner_sync_to_the_timing_loop(stream, monkeypatch):
    """A backend whose open() returns a Runner (as the GPU ones do) is timed with its sync in the window."""
    from hwnas.latency.devices.torch_backend import TorchBackend, TorchOptions
    backend = TorchBackend("fake-gpu", TorchOptions(cores="none"))
    monkeypatch.setattr(backend, "open", lambda artifact: Runner(lambda: stream.launch(5_000_000), stream.synchronize))
    from hwnas.latency.devices.base import Artifact
    art = Artifact(format="torch", name="x", input_shapes={"input": (1, 3, 8, 8)}, module=torch.nn.Identity())
    m = backend.measure(art, warmup=1, runs=4)
    assert m.samples_ms == [5.0] * 4


# -- onnxruntime on a GPU, with a fake session ----------------------------------------------------------------
class FakeOrtValue:
    made = []

    @classmethod
    def ortvalue_from_numpy(cls, arr, device, device_id):
        cls.made.append((arr.shape, device, device_id))
        return ("on", device, device_id, arr.shape)


class FakeOrt:
    OrtValue = FakeOrtValue


class FakeBinding:
    def __init__(self, log):
        self.log = log

    def bind_ortvalue_input(self, name, value):
        self.log.append(("input", name, value[1]))

    def bind_output(self, name, device, device_id):
        self.log.append(("output", name, device, device_id))

    def synchronize_outputs(self):
        self.log.append(("sync",))


class FakeSession:
    def __init__(self):
        self.log = []
        self.binding = FakeBinding(self.log)

    def io_binding(self):
        return self.binding

    def get_outputs(self):
        return [type("O", (), {"name": "logits"})()]

    def run_with_iobinding(self, binding):
        assert binding is self.binding
        self.log.append(("run",))


def test_io_binding_copies_inputs_once_and_leaves_outputs_on_the_gpu():
    FakeOrtValue.made = []
    sess = FakeSession()
    feeds = {"input": np.zeros((1, 3, 8, 8), np.float32)}
    runner = bind_on_device(FakeOrt, sess, feeds, device_id=1)
    for _ in range(3):
        runner()
    assert FakeOrtValue.made == [((1, 3, 8, 8), "cuda", 1)]  # one copy to the GPU, at binding, none per run
    assert sess.log[:2] == [("input", "input", "cuda"), ("output", "logits", "cuda", 1)]
    assert sess.log[2:] == [("run",), ("sync",)] * 3
    assert runner.sync == sess.binding.synchronize_outputs


def test_provider_chains():
    assert provider_chain(OrtOptions()) == ["CPUExecutionProvider"]
    assert provider_chain(OrtOptions(provider="cuda", device_id=2)) == [
        ("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]
    trt = provider_chain(OrtOptions(provider="tensorrt", precision="fp16"), engine_cache="/c/trt")
    assert trt[0] == ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": True,
                                                    "trt_engine_cache_enable": True, "trt_engine_cache_path": "/c/trt"})
    assert trt[1:] == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]


def test_fp16_needs_tensorrt():
    with pytest.raises(ValueError, match="fp16 needs provider tensorrt"):
        OrtOptions(provider="cuda", precision="fp16")
    OrtOptions(provider="tensorrt", precision="fp16")


def test_a_quiet_fall_back_to_the_cpu_is_an_error(monkeypatch, tmp_path):
    """onnxruntime starts on the CPU when a GPU library fails to load; a GPU device must say so, not time the CPU."""
    import onnxruntime as ort

    from tests.latency.test_devices import tiny
    art = get_device("cpu").prepare(tiny(), (1, 3, 16, 16))

    class Fallen:
        def __init__(self, path, so, providers):
            self.providers = providers

        def get_providers(self):
            return ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "InferenceSession", Fallen)
    backend = OnnxRuntimeBackend("cuda", OrtOptions(provider="cuda"))
    with pytest.raises(HwnasError, match="could not start CUDAExecutionProvider and fell back to CPUExecutionProvider"):
        backend.session(art)


def _fake_smi(tmp_path, monkeypatch):
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n"
                   'case "$1" in\n'
                   '  --query-gpu=*) echo "NVIDIA H200, 560.35.03, 143771" ;;\n'
                   '  *) echo "| NVIDIA-SMI 560.35.03   Driver Version: 560.35.03   CUDA Version: 12.6 |" ;;\n'
                   "esac\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands for nvidia-smi")
def test_gpu_fingerprint_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch)
    assert gpu_fingerprint(0) == {"gpu": "NVIDIA H200", "gpu_driver": "560.35.03", "gpu_memory_mib": 143771,
                                  "cuda_driver": "12.6"}


def test_no_nvidia_smi_no_gpu_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    assert gpu_fingerprint(0) == {}


def test_build_info_field():
    info = "ORT Build Info: git-branch=rel-1.20.0, git-commit-id=abc, build type=Release, cuda_version=12.2, cudnn_version=9.1"
    assert build_info_field(info, "cuda_version") == "12.2"
    assert build_info_field("ORT Build Info: build type=Release", "cuda_version") is None


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands for nvidia-smi")
def test_gpu_fingerprint_fields_and_key(tmp_path, monkeypatch):
    """A GPU device's key carries the GPU, its precision and its I/O mode; a CPU device's fields (and key) are as
    they were: none of the GPU fields appear on it."""
    _fake_smi(tmp_path, monkeypatch)
    from hwnas.latency.devices.base import fingerprint_key
    gpu = OnnxRuntimeBackend("cuda", OrtOptions(provider="cuda")).fingerprint()
    assert gpu["gpu"] == "NVIDIA H200" and gpu["precision"] == "fp32" and gpu["io"] == "bound on the GPU"
    assert gpu["provider"] == "CUDAExecutionProvider" and gpu["cuda_driver"] == "12.6"
    copies = OnnxRuntimeBackend("cuda", OrtOptions(provider="cuda", io_binding=False)).fingerprint()
    assert fingerprint_key(copies) != fingerprint_key(gpu)
    cpu = OnnxRuntimeBackend("cpu", OrtOptions()).fingerprint()
    assert not {"gpu", "precision", "io", "device_id"} & set(cpu)
    assert OnnxRuntimeBackend("cuda", OrtOptions(provider="cuda")).timing_resource().startswith("gpu ")


# -- torch ----------------------------------------------------------------------------------------------------
def test_torch_half_precision_times_a_copy():
    from tests.latency.test_devices import tiny
    model = tiny()
    dev = get_device("torch-cpu")
    from hwnas.latency.devices.torch_backend import TorchOptions
    dev.backend.options = TorchOptions(threads=1, precision="bf16")
    m = dev.measure(model, (1, 3, 16, 16), warmup=1, runs=3)
    assert m.count == 3
    assert next(model.parameters()).dtype == torch.float32  # the caller's module untouched
    assert dev.backend.fingerprint()["precision"] == "bf16"
    assert "precision" not in get_device("torch-cpu").backend.fingerprint()  # fp32 CPU: key as before


# -- the user's view on a machine without a GPU -------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device,words", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"),
                                          ("torch-cuda", "needs CUDA")])
def test_profile_on_a_gpu_device_without_a_gpu_is_one_line(device, words):
    from tests.cli_helpers import assert_one_line_error, hwnas
    assert_one_line_error(hwnas("profile", "--device", device, "--model", "mobilenet_v2"), words, only_line=True)


def test_devices_list_has_the_gpu_entries():
    from hwnas.latency.devices import list_devices
    entries = list_devices()
    assert entries["cuda"].options.io_binding is True
    assert entries["tensorrt"].options.provider == "tensorrt" and entries["tensorrt"].options.precision == "fp16"
    assert entries["torch-cuda"].options.device == "cuda"
