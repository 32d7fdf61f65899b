"""torch -> ONNX export, checked: `onnx.checker`, then an onnxruntime-vs-torch parity test.

The exporter is always chosen explicitly (`dynamo=`). hwnas defaults to the TorchScript exporter
(`dynamo=False`): on this project's 2-core machines it exports a small conv net in ~0.2 s against
~3.7 s for the dynamo exporter, which matters when a LUT build exports hundreds of ops. Pass
`dynamo=True` for models the TorchScript exporter cannot trace.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwnas import cache
from hwnas.errors import HwnasError
from hwnas.rundir import atomic_path

DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float | None  # onnxruntime vs torch on the same random input; None if not checked
    dynamo: bool
    opset: int


def cache_dir() -> Path:
    """The artifact cache (hwnas.cache: $HWNAS_CACHE/artifacts, bounded by $HWNAS_CACHE_MAX)."""
    return cache.cache_dir("artifacts")


def model_hash(model: torch.nn.Module, input_shape, extra: str = "") -> str:
    """Identity of (architecture, weights, input shape): the same network is never converted twice. The same
    in every process for the same weights; a network built without a fixed seed has other weights in every
    run (torch seeds itself at random), so build it under torch.manual_seed for its export to be reused."""
    h = hashlib.sha256()
    h.update(repr(model).encode())
    h.update(repr(tuple(input_shape)).encode())
    h.update(extra.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:20]


def _ort_session(path: Path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_parity(model: torch.nn.Module, path: Path, input_shape, seed: int = 0) -> tuple[float, float]:
    """(max |onnxruntime(x) - torch(x)|, max |torch(x)|) over all outputs for one random input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=g)
    with torch.no_grad():
        ref = model(x)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    sess = _ort_session(path)
    outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    diff = max(float(np.max(np.abs(o - r.numpy()))) if o.size else 0.0 for o, r in zip(outs, refs))
    scale = max(float(r.abs().max()) if r.numel() else 0.0 for r in refs)
    return diff, scale


def export_onnx(model: torch.nn.Module, input_shape, path: str | os.PathLike, *, dynamo: bool = False,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, check_parity: bool = True,
                atol: float = 1e-3, rtol: float = 1e-3) -> ExportResult:
    """Export `model` (in eval mode) for `input_shape` to `path`, check it, compare with torch.

    Parity fails loudly (HwnasError) when max abs diff > atol + rtol * max|torch output|.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    x = torch.zeros(*input_shape)
    kwargs = dict(input_names=["input"], output_names=None, opset_version=opset, dynamo=dynamo)
    if dynamic_batch:
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}}
    try:
        with atomic_path(path) as tmp:  # never a half-written or unchecked file under the final name
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(tmp), **kwargs)
            onnx.checker.check_model(str(tmp), full_check=True)
    except HwnasError:
        raise
    except Exception as e:
        raise HwnasError(f"ONNX export of {type(model).__name__} failed ({'dynamo' if dynamo else 'torchscript'} "
                         f"exporter): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    finally:
        model.train(was_training)
    diff = None
    if check_parity:
        model.eval()
        try:
            diff, scale = onnx_parity(model, path, input_shape)
        finally:
            model.train(was_training)
        if not diff <= atol + rtol * scale:
            raise HwnasError(f"ONNX export of {type(model).__name__} disagrees with torch: max abs diff "
                             f"{diff:.3g} > tolerance {atol + rtol * scale:.3g}")
    return ExportResult(path, diff, dynamo, opset)


def onnx_cache_path(model: torch.nn.Module, input_shape, *, dynamo: bool = False,
                    opset: int = DEFAULT_OPSET) -> Path:
    key = model_hash(model, input_shape, f"onnx-{dynamo}-{opset}")
    return cache_dir() / f"{type(model).__name__.lower()}-{key}.onnx"


def export_onnx_cached(model: torch.nn.Module, input_shape, *, dynamo: bool = False,
                       opset: int = DEFAULT_OPSET, check_parity: bool = True) -> ExportResult:
    """Export into the artifact cache, keyed by model hash; a cached file is reused as it is (and marked used);
    a new one may evict the least recently used others (hwnas.cache)."""
    path = onnx_cache_path(model, input_shape, dynamo=dynamo, opset=opset)
    if cache.touch(path):
        return ExportResult(path, None, dynamo, opset)
    res = export_onnx(model, input_shape, path, dynamo=dynamo, opset=opset, check_parity=check_parity)
    cache.evict(keep=path)
    return res
