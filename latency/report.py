"""What `hwnas profile` reports beside latency: the size on disk of the file the device runs, the model's
parameters and MACs, and per-op times summed by op type."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from hwnas.latency.devices.base import Artifact, OpTiming

MACS_NA = "n/a: counted on torch modules and zoo models, not read from model files"
MACS_WHAT = "convolutions and linear layers, per image"
_ONNX_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


def model_file(artifact: Artifact) -> dict:
    """{'model_path', 'model_bytes'}: the exported (or given) file the device runs; None for a torch module."""
    if artifact.path is None:
        return {"model_path": None, "model_bytes": None}
    path = Path(artifact.path)
    return {"model_path": str(path), "model_bytes": path.stat().st_size}


def model_counts(model, artifact: Artifact) -> dict:
    """{'params', 'macs', 'params_note', 'macs_note'}: counted on the torch module for a module or a zoo name
    (MACs per image, convolutions and linear layers); otherwise (a model file, or any other name the device
    exported) the floating-point weights stored in the file the device runs, and no MACs. A count that cannot be
    made is None, and its note says why."""
    import torch

    from hwnas.models import list_models
    shapes = list(artifact.input_shapes.values())
    if isinstance(model, str) and model in list_models():
        from hwnas import counts
        return {**counts.counts(model, shapes[0]), "params_note": f"every parameter of zoo model {model!r}",
                "macs_note": MACS_WHAT}
    module = model if isinstance(model, torch.nn.Module) else artifact.module
    from hwnas.modelspec import is_factory, load_factory
    if module is None and is_factory(model):
        module = load_factory(model)  # your own network: counted on the module, as a zoo one
    if module is not None:
        if len(shapes) != 1:
            why = "n/a: counted only for modules with one input"
            return {"params": None, "macs": None, "params_note": why, "macs_note": why}
        from hwnas.models.stats import stats
        return {**stats(module, shapes[0]), "params_note": "every parameter of the torch module",
                "macs_note": MACS_WHAT}
    weights, how = file_weights(artifact)
    return {"params": weights, "macs": None, "params_note": how, "macs_note": MACS_NA}


def file_weights(artifact: Artifact) -> tuple[int | None, str]:
    """(floating-point weights stored in the model file, what that figure is / why it is n/a)."""
    if artifact.path is None:
        return None, "n/a: no model file"
    if artifact.format == "onnx":
        import onnx
        m = onnx.load(str(artifact.path), load_external_data=False)
        n = sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type in _ONNX_FLOAT_TYPES)
        return n, ("floating-point weights stored in the .onnx file (a batch norm the export folded into its "
                   "convolution is not counted apart)")
    if artifact.format == "tflite":
        try:
            return _tflite_weights(artifact.path), "floating-point constant tensors of the .tflite file"
        except Exception as e:  # the interpreter's op listing is not a public API
            return None, f"n/a: the weights of this .tflite file could not be listed ({type(e).__name__})"
    return None, f"n/a: no weight count for {artifact.format} files"


def _tflite_weights(path) -> int:
    from hwnas.latency.devices.litert import open_interpreter
    it = open_interpreter(path, threads=1, xnnpack=False)  # no delegate: the graph as the file stores it
    ops = it._get_ops_details()
    produced = {i for op in ops for i in op["outputs"]}
    consumed = {i for op in ops for i in op["inputs"] if i >= 0}
    inputs = {d["index"] for d in it.get_input_details()}
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    return sum(int(np.prod(tensors[i]["shape"])) for i in consumed - produced - inputs
               if i in tensors and np.issubdtype(tensors[i]["dtype"], np.floating))


def op_type_totals(ops: list[OpTiming]) -> list[dict]:
    """Per op type: the sum of its ops' median times, how many ops, and the share of all ops' sum; slowest first."""
    total_ms: dict[str, float] = defaultdict(float)
    n: dict[str, int] = defaultdict(int)
    for o in ops:
        total_ms[o.op_type] += o.median_ms
        n[o.op_type] += 1
    whole = sum(total_ms.values())
    rows = [{"op_type": t, "total_ms": ms, "ops": n[t], "share": ms / whole if whole > 0 else 0.0}
            for t, ms in total_ms.items()]
    return sorted(rows, key=lambda r: -r["total_ms"])
