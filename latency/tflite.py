"""torch -> .tflite export through litert-torch (the optional extra `hwnas[tflite]`), checked by a
LiteRT-vs-torch parity test, cached by model hash so the same network is not converted twice."""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hwnas import cache
from hwnas.errors import HwnasError
from hwnas.latency.export import cache_dir, model_hash
from hwnas.rundir import atomic_path


def _litert_torch():
    try:
        import litert_torch
    except ImportError:
        raise HwnasError("TFLite export needs litert-torch: pip install 'hwnas[tflite]'") from None
    return litert_torch


def tflite_parity(model: torch.nn.Module, path: Path, input_shape, seed: int = 0) -> tuple[float, float]:
    """(max |LiteRT(x) - torch(x)|, max |torch(x)|) for one random input."""
    from hwnas.latency.devices.litert import open_interpreter
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    it = open_interpreter(path, threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x.numpy())
    it.invoke()
    outs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    # output order of a converted model follows the signature; match by shape then order
    diff = 0.0
    for r in refs:
        cands = [o for o in outs if tuple(o.shape) == tuple(r.shape)]
        if not cands:
            raise HwnasError(f"TFLite model outputs {[o.shape for o in outs]} do not match torch {tuple(r.shape)}")
        diff = max(diff, min(float(np.max(np.abs(o - r.numpy()))) for o in cands))
    return diff, max(float(r.abs().max()) for r in refs)


def export_tflite(model: torch.nn.Module, input_shape, path: str | os.PathLike, *, check_parity: bool = True,
                  atol: float = 1e-3, rtol: float = 1e-3) -> tuple[Path, float | None]:
    litert_torch = _litert_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            litert_torch.convert(model, (torch.zeros(*input_shape),)).export(str(tmp))
        diff = None
        if check_parity:
            diff, scale = tflite_parity(model, path, input_shape)
            if not diff <= atol + rtol * scale:
                path.unlink(missing_ok=True)
                raise HwnasError(f"TFLite export of {type(model).__name__} disagrees with torch: max abs diff "
                                 f"{diff:.3g} > tolerance {atol + rtol * scale:.3g}")
        return path, diff
    except HwnasError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HwnasError(f"TFLite export of {type(model).__name__} failed: {msg}") from e
    finally:
        model.train(was_training)


def tflite_cache_path(model: torch.nn.Module, input_shape) -> Path:
    return cache_dir() / f"{type(model).__name__.lower()}-{model_hash(model, input_shape, 'tflite')}.tflite"


def export_tflite_cached(model: torch.nn.Module, input_shape, *, check_parity: bool = True) -> Path:
    """The .tflite of `model` from the artifact cache (marked used), exported on a miss (then the least recently
    used others may be evicted, hwnas.cache)."""
    path = tflite_cache_path(model, input_shape)
    if not cache.touch(path):
        export_tflite(model, input_shape, path, check_parity=check_parity)
        cache.evict(keep=path)
    return path
