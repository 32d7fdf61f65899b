"""onnxruntime backend: ONNX models on the local CPU (CPUExecutionProvider), an NVIDIA GPU (CUDAExecutionProvider)
or TensorRT (TensorrtExecutionProvider, with the CUDA provider for what TensorRT does not take).

On a GPU the inputs are placed on the device once and the outputs bound there (I/O binding), so a measurement
is the network's time on the GPU, synchronised, without the host-to-device copies a plain session.run makes on
every call (`io_binding: false` times those too)."""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from hwnas.errors import HwnasError
from hwnas.latency.artifacts import check_input_size
from hwnas.latency.devices.base import (Artifact, HostBackend, HostOptions, OpTiming, Runner, RuntimeNode,
                                         pinned)
from hwnas.latency.devices.registry import register_backend

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class OrtOptions(HostOptions):
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    device_id: int = Field(0, ge=0)                 # which GPU (cuda, tensorrt)
    precision: Literal["fp32", "fp16"] = "fp32"     # fp16: TensorRT builds half-precision engines
    io_binding: bool = True                         # GPU: inputs on the device once, outputs bound there

    @field_validator("precision")
    @classmethod
    def _fp16_on_tensorrt(cls, v, info):
        if v == "fp16" and info.data.get("provider") != "tensorrt":
            raise ValueError("precision fp16 needs provider tensorrt (the cuda provider runs the model's own "
                             "float32; time fp16 on torch with precision fp16, or export an fp16 model)")
        return v

    @property
    def on_gpu(self) -> bool:
        return self.provider != "cpu"


def provider_chain(options: OrtOptions, engine_cache: str | None = None) -> list:
    """The providers of a session, first choice first, with their options: the GPU ones fall back to CUDA and
    then the CPU for the nodes they do not take."""
    cuda = ("CUDAExecutionProvider", {"device_id": options.device_id})
    if options.provider == "cpu":
        return ["CPUExecutionProvider"]
    if options.provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    trt = {"device_id": options.device_id, "trt_fp16_enable": options.precision == "fp16"}
    if engine_cache:
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=engine_cache)
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


def bind_on_device(ort, sess, feeds: dict, device_id: int) -> Runner:
    """I/O binding: each input copied to the GPU once, here; the outputs left on the GPU. The runner queues one
    inference on the bound values; its sync waits for the outputs."""
    binding = sess.io_binding()
    on_device = {name: ort.OrtValue.ortvalue_from_numpy(arr, "cuda", device_id) for name, arr in feeds.items()}
    for name, value in on_device.items():
        binding.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", device_id)
    run_with = sess.run_with_iobinding

    def run():
        run_with(binding)
        return on_device  # the bound inputs stay alive as long as the runner
    return Runner(run, binding.synchronize_outputs)


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
        available = ort.get_available_providers()
        if wanted not in available:
            from hwnas.latency.devices.gpu import no_provider
            raise no_provider(self.device_name, wanted, available)

    def fingerprint(self) -> dict:
        import onnxruntime as ort
        fp = self.host_fingerprint()
        fp.update(backend=self.name, runtime="onnxruntime", runtime_version=ort.__version__,
                  provider=_PROVIDERS[self.options.provider], graph_optimization=self.options.graph_optimization)
        if self.options.on_gpu:
            from hwnas.latency.devices.gpu import build_info_field, gpu_fingerprint
            fp.update(gpu_fingerprint(self.options.device_id), device_id=self.options.device_id,
                      precision=self.options.precision, io="bound on the GPU" if self.options.io_binding
                      else "host copies every call")
            info = getattr(ort, "get_build_info", lambda: "")()
            cuda = build_info_field(info, "cuda_version")
            if cuda:
                fp["cuda_runtime"] = cuda
        return fp

    @property
    def gpu_index(self) -> int | None:
        return self.options.device_id if self.options.on_gpu else None

    def engine_cache(self) -> str | None:
        if self.options.provider != "tensorrt":
            return None
        from hwnas.cache import cache_dir
        return str(cache_dir("tensorrt"))

    def session(self, artifact: Artifact, profile_dir: str | None = None, optimized_path: str | None = None):
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
        if optimized_path:  # the graph as optimised for this machine (fusions, layout), saved as it is run
            so.optimized_model_filepath = optimized_path
        try:
            sess = ort.InferenceSession(str(artifact.path), so,
                                        providers=provider_chain(self.options, self.engine_cache()))
        except Exception as e:
            raise HwnasError(f"onnxruntime cannot load {artifact.path}: {str(e).splitlines()[0]}") from None
        wanted, got = _PROVIDERS[self.options.provider], sess.get_providers()
        if not got or got[0] != wanted:  # onnxruntime falls back quietly when a GPU library fails to load
            raise HwnasError(f"device {self.device_name!r}: onnxruntime could not start {wanted} and fell back to "
                             f"{got[0] if got else 'nothing'}; look at the CUDA, cuDNN and TensorRT libraries it "
                             f"needs (onnxruntime's log: ORT_LOG_LEVEL / log_severity_level 0)")
        return sess

    def open(self, artifact: Artifact):
        sess = self.session(artifact)
        feeds = make_feeds(sess.get_inputs(), artifact.input_shapes)
        if self.options.on_gpu and self.options.io_binding:
            import onnxruntime as ort
            return bind_on_device(ort, sess, feeds, self.options.device_id)
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
        self.last_profiled_run_ms = profiled_run_ms(events, runs)
        return parse_ort_trace(events, runs)

    def runtime_nodes(self, artifact: Artifact, runs: int = 3) -> list[RuntimeNode]:
        """onnxruntime's own optimised graph for this device (its graph_optimization level: at "all" on a CPU,
        convs in the blocked NCHWc layout with activations and residual adds fused into them), and the shapes each
        node ran with, from its profiler's trace."""
        import onnx
        with tempfile.TemporaryDirectory() as tmp, pinned(self.cores):
            optimized = os.path.join(tmp, "optimized.onnx")
            sess = self.session(artifact, profile_dir=tmp, optimized_path=optimized)
            feeds = make_feeds(sess.get_inputs(), artifact.input_shapes)
            for _ in range(1 + runs):
                sess.run(None, feeds)
            with open(sess.end_profiling()) as f:
                events = json.load(f)
            graph = onnx.load(optimized, load_external_data=False).graph
        self.last_profiled_run_ms = profiled_run_ms(events, runs)
        return runtime_nodes_from(events, graph, runs)


def profiled_run_ms(events: list, runs: int) -> float | None:
    """The median of the last `runs` whole runs in an onnxruntime profiling trace, in ms."""
    runs_ms = [ev["dur"] / 1000.0 for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
    return float(np.median(runs_ms[-runs:])) if runs_ms else None


def _node_events(events: list):
    """(node name, event) of each node's kernel time in an onnxruntime profiling trace, in execution order."""
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            yield ev["name"][: -len("_kernel_time")], ev


def _shapes(typed: list | None) -> list[list[int]]:
    """[{"float": [1, 3, 224, 224]}, ...] (a trace's input_type_shape) -> [[1, 3, 224, 224], ...]."""
    return [[int(d) for d in next(iter(t.values()), [])] for t in (typed or [])]


def runtime_nodes_from(events: list, graph, runs: int) -> list[RuntimeNode]:
    """The nodes of an optimised graph (onnx GraphProto) that a profiling trace shows running, in execution order:
    shapes from the trace, attributes from the graph, the median of each node's last `runs` times."""
    from onnx import helper
    by_name = {n.name: n for n in graph.node}
    times: dict[str, list[float]] = defaultdict(list)
    first: dict[str, dict] = {}
    for name, ev in _node_events(events):
        times[name].append(ev["dur"] / 1000.0)
        first.setdefault(name, ev)
    nodes = []
    for name, ev in first.items():
        args = ev.get("args", {})
        node = by_name.get(name)
        attrs, op = {}, args.get("op_name", "?")
        if node is not None:
            op = f"{node.domain or 'ai.onnx'}:{node.op_type}"
            for a in node.attribute:
                v = helper.get_attribute_value(a)
                attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        nodes.append(RuntimeNode(name=name, op=op, inputs=_shapes(args.get("input_type_shape")),
                                 outputs=_shapes(args.get("output_type_shape")), attrs=attrs,
                                 ms=float(np.median(times[name][-runs:]))))
    return nodes


def parse_ort_trace(events: list, runs: int) -> list[OpTiming]:
    """Aggregate an onnxruntime profiling trace into one row per graph node, in execution order."""
    durations: dict[str, list[float]] = defaultdict(list)
    op_types: dict[str, str] = {}
    for node, ev in _node_events(events):
        durations[node].append(ev["dur"] / 1000.0)  # µs -> ms
        op_types[node] = ev.get("args", {}).get("op_name", "?")
    rows = []
    for node, d in durations.items():
        d = np.asarray(d[-runs:])
        rows.append(OpTiming(name=node, op_type=op_types[node], median_ms=float(np.median(d)),
                             mean_ms=float(d.mean()), count=int(d.size)))
    return rows
