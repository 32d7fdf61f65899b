"""onnxruntime backend: ONNX models on the local CPU (CPUExecutionProvider) or CUDA EP."""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from typing import Literal

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.artifacts import check_input_size
from hwnas.latency.devices.base import Artifact, HostBackend, HostOptions, OpTiming, pinned
from hwnas.latency.devices.registry import register_backend

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class OrtOptions(HostOptions):
    provider: Literal["cpu", "cuda"] = "cpu"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"


def make_feeds(inputs, input_shapes: dict, seed: int = 0) -> dict:
    """Random inputs of the right shape and type, made once, outside the timing loop."""
    wanted = {}
    for i in inputs:
        shape = input_shapes.get(i.name)
        if shape is None:
            raise HwnasError(f"no shape for model input {i.name!r}")
        wanted[i.name] = (shape, _NP_TYPES.get(i.type, np.float32))
    check_input_size(wanted)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in wanted.items():
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds


@register_backend
class OnnxRuntimeBackend(HostBackend):
    name = "onnxruntime"
    artifact_format = "onnx"
    Options = OrtOptions

    def check(self) -> None:
        import onnxruntime as ort
        wanted = _PROVIDERS[self.options.provider]
        if wanted not in ort.get_available_providers():
            raise HwnasError(f"device {self.device_name!r} needs onnxruntime's {wanted}, which this machine does not "
                             f"have (available: {', '.join(ort.get_available_providers())}); it needs an NVIDIA GPU "
                             f"and the onnxruntime-gpu package")

    def fingerprint(self) -> dict:
        import onnxruntime as ort
        fp = self.host_fingerprint()
        fp.update(backend=self.name, runtime="onnxruntime", runtime_version=ort.__version__,
                  provider=_PROVIDERS[self.options.provider], graph_optimization=self.options.graph_optimization)
        return fp

    def session(self, artifact: Artifact, profile_dir: str | None = None):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.options.graph_optimization])
        so.log_severity_level = 3
        if profile_dir:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "ort")
        providers = [_PROVIDERS[self.options.provider]]
        if self.options.provider == "cuda":
            providers.append("CPUExecutionProvider")
        try:
            return ort.InferenceSession(str(artifact.path), so, providers=providers)
        except Exception as e:
            raise HwnasError(f"onnxruntime cannot load {artifact.path}: {str(e).splitlines()[0]}") from None

    def open(self, artifact: Artifact):
        sess = self.session(artifact)
        feeds = make_feeds(sess.get_inputs(), artifact.input_shapes)
        run = sess.run
        return lambda: run(None, feeds)

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        """Per-node times from onnxruntime's own profiler trace (the last `runs` runs of each node)."""
        with tempfile.TemporaryDirectory() as tmp, pinned(self.cores):
            sess = self.session(artifact, profile_dir=tmp)
            feeds = make_feeds(sess.get_inputs(), artifact.input_shapes)
            for _ in range(warmup + runs):
                sess.run(None, feeds)
            trace_path = sess.end_profiling()
            with open(trace_path) as f:
                events = json.load(f)
        runs_ms = [ev["dur"] / 1000.0 for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
        self.last_profiled_run_ms = float(np.median(runs_ms[-runs:])) if runs_ms else None
        return parse_ort_trace(events, runs)


def parse_ort_trace(events: list, runs: int) -> list[OpTiming]:
    """Aggregate an onnxruntime profiling trace into one row per graph node, in execution order."""
    durations: dict[str, list[float]] = defaultdict(list)
    op_types: dict[str, str] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        durations[node].append(ev["dur"] / 1000.0)  # µs -> ms
        op_types[node] = ev.get("args", {}).get("op_name", "?")
    rows = []
    for node, d in durations.items():
        d = np.asarray(d[-runs:])
        rows.append(OpTiming(name=node, op_type=op_types[node], median_ms=float(np.median(d)),
                             mean_ms=float(d.mean()), count=int(d.size)))
    return rows
