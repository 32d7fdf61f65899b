"""litert backend: .tflite models on the local CPU through ai-edge-litert (XNNPACK by default).

Falls back to the older `tflite_runtime` package where only that is installed (older boards). Note:
tflite-runtime 2.14.0 installs beside numpy 2 but fails at Interpreter(...); ai-edge-litert works.
"""
from __future__ import annotations

import importlib

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.artifacts import check_input_size
from hwnas.latency.devices.base import Artifact, HostBackend, HostOptions, MissingExtra, importable
from hwnas.latency.devices.registry import register_backend


class LiteRTOptions(HostOptions):  # threads: num_threads of the interpreter
    xnnpack: bool = True    # the default CPU delegate; False runs the reference kernels


RUNTIME_MODULES = ("ai_edge_litert", "tflite_runtime")  # a TFLite interpreter: either package
NO_RUNTIME = MissingExtra("ai-edge-litert", "running .tflite models", "pip install ai-edge-litert")
NO_EXPORTER = MissingExtra("litert-torch", "exporting torch models to .tflite", "pip install 'hwnas[tflite]'")


def interpreter_class():
    """(Interpreter class, OpResolverType or None, runtime name, runtime version)."""
    from importlib.metadata import PackageNotFoundError, version
    for package, module in (("ai-edge-litert", "ai_edge_litert.interpreter"),
                            ("tflite-runtime", "tflite_runtime.interpreter")):
        try:
            lite = importlib.import_module(module)
            return lite.Interpreter, getattr(lite, "OpResolverType", None), package, version(package)
        except (ImportError, PackageNotFoundError):
            continue
    raise HwnasError("no TFLite runtime installed: pip install ai-edge-litert")


def open_interpreter(path, threads: int, xnnpack: bool = True):
    Interpreter, resolver, _, _ = interpreter_class()
    kwargs = {"model_path": str(path), "num_threads": threads}
    if not xnnpack and resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        return Interpreter(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise HwnasError(f"LiteRT cannot load {path}: {str(e).splitlines()[0]}") from None


@register_backend
class LiteRTBackend(HostBackend):
    name = "litert"
    artifact_format = "tflite"
    Options = LiteRTOptions

    def check(self) -> None:
        if not any(importable(m) for m in RUNTIME_MODULES):
            raise HwnasError(f"no TFLite runtime installed: {NO_RUNTIME.install}")
        interpreter_class()

    def missing_extras(self) -> list[MissingExtra]:
        missing = [] if any(importable(m) for m in RUNTIME_MODULES) else [NO_RUNTIME]
        return missing + ([] if importable("litert_torch") else [NO_EXPORTER])

    def fingerprint(self) -> dict:
        _, _, runtime, version = interpreter_class()
        fp = self.host_fingerprint()
        fp.update(backend=self.name, runtime=runtime, runtime_version=version,
                  delegate="xnnpack" if self.options.xnnpack else "builtin")
        return fp

    def open(self, artifact: Artifact):
        it = open_interpreter(artifact.path, self.threads, self.options.xnnpack)
        details = it.get_input_details()
        check_input_size({d["name"]: (artifact.input_shapes.get(d["name"], d["shape"]), d["dtype"])
                          for d in details})
        for d in details:
            shape = artifact.input_shapes.get(d["name"])
            if shape is not None and tuple(d["shape"]) != tuple(shape):
                it.resize_tensor_input(d["index"], list(shape))
        it.allocate_tensors()
        rng = np.random.default_rng(0)
        for d in it.get_input_details():
            if np.issubdtype(d["dtype"], np.floating):
                it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
            else:
                it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        return it.invoke

    def runtime_nodes(self, artifact: Artifact, runs: int = 3):
        """The operators of the .tflite file in execution order, NHWC shapes, options and constant operands
        (hwnas.latency.tflite_graph): what XNNPACK runs, one operator each. LiteRT here has no per-node profiler,
        so the nodes carry no times (`runs` is not used)."""
        from hwnas.latency.tflite_graph import read_nodes
        self.last_profiled_run_ms = None
        return read_nodes(artifact.path)
