"""Turn what a user names (a torch module, a zoo model name, a .onnx/.tflite file) into an Artifact
in the format a device runs, with concrete input shapes."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import Artifact
from hwnas.units import parse_shape

SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}
MAX_INPUT_BYTES = 2 * 2**30  # what a device allocates for one model's inputs, all together


def check_input_size(inputs: dict[str, tuple[tuple[int, ...], Any]]) -> None:
    """Refuse, before anything is allocated, inputs {name: (shape, numpy dtype)} above MAX_INPUT_BYTES."""
    need = sum(math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize for shape, dtype in inputs.values())
    if need <= MAX_INPUT_BYTES:
        return
    what = ", ".join((f"{name}=" if len(inputs) > 1 else "") + f"{'x'.join(map(str, shape))} ({np.dtype(dtype).name})"
                     for name, (shape, dtype) in inputs.items())
    raise HwnasError(f"input{'s' if len(inputs) > 1 else ''} {what} would need {_gib(need)} GiB"
                     f"{' together' if len(inputs) > 1 else ''}; hwnas allocates at most "
                     f"{_gib(MAX_INPUT_BYTES)} GiB of inputs")


def _gib(n: int) -> str:
    g = n / 2**30
    return f"{g:.0f}" if g >= 10 or g == int(g) else f"{g:.1f}"


def parse_input_shapes(spec) -> dict[str | None, tuple[int, ...]]:
    """None -> {}; (1,3,224,224) -> {None: shape}; "1x3x48x320" -> {None: shape};
    "images=1x3x48x320,mask=1x48" -> {"images": ..., "mask": ...}."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {k: tuple(int(d) for d in v) for k, v in spec.items()}
    if isinstance(spec, (tuple, list)):
        return {None: tuple(int(d) for d in spec)}
    shapes = {}
    for part in str(spec).split(","):
        name, sep, dims = part.rpartition("=")
        shapes[name.strip() if sep else None] = parse_shape(dims)
    return shapes


def _resolve(path: Path, declared: list[tuple[str, list]], given: dict) -> dict[str, tuple[int, ...]]:
    """Match declared inputs [(name, dims with None for dynamic)] with the shapes the user gave."""
    unnamed = given.get(None)
    if unnamed is not None and len(declared) > 1 and len(given) == 1:
        raise HwnasError(f"{path.name} has {len(declared)} inputs ({', '.join(n for n, _ in declared)}); "
                         f"give each as --input-shape name=1x3x224x224,other=...")
    unknown = [n for n in given if n is not None and n not in {d[0] for d in declared}]
    if unknown:
        raise HwnasError(f"{path.name} has no input named {unknown[0]!r} (inputs: {', '.join(n for n, _ in declared)})")
    shapes = {}
    for name, dims in declared:
        shape = given.get(name, unnamed)
        if shape is None:
            if any(d is None for d in dims):
                pretty = "x".join("?" if d is None else str(d) for d in dims)
                raise HwnasError(f"{path.name}: input {name!r} has dynamic dimensions ({pretty}); give concrete ones "
                                 f"with --input-shape, e.g. --input-shape "
                                 f"{'x'.join('1' if d is None else str(d) for d in dims)}")
            shape = tuple(dims)
        elif len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
            pretty = "x".join("?" if d is None else str(d) for d in dims)
            raise HwnasError(f"{path.name}: --input-shape {'x'.join(map(str, shape))} does not fit input {name!r} "
                             f"of shape {pretty}")
        shapes[name] = tuple(shape)
    return shapes


def inspect_onnx(path: Path) -> list[tuple[str, list]]:
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise HwnasError(f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'corrupt file'})") from None
    inits = {i.name for i in model.graph.initializer}
    declared = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inp.type.tensor_type.shape.dim]
        declared.append((inp.name, dims))
    if not declared:
        raise HwnasError(f"{path} has no graph inputs")
    return declared


def inspect_tflite(path: Path) -> list[tuple[str, list]]:
    from hwnas.latency.devices.litert import open_interpreter
    head = path.read_bytes()[:8]
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise HwnasError(f"{path} is not a readable TFLite model (no TFL3 flatbuffer identifier)")
    it = open_interpreter(path, threads=1)
    return [(d["name"], [None if s < 0 else int(s) for s in d["shape_signature"]]) for d in it.get_input_details()]


def artifact_from_file(path: str | os.PathLike, fmt: str, input_shape=None, device_name: str = "") -> Artifact:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise HwnasError(f"unsupported model file {path.name!r}: hwnas runs .onnx and .tflite files, or model "
                         f"names from `hwnas models`")
    if not path.is_file():
        raise HwnasError(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise HwnasError(f"model file {path} is empty")
    if SUFFIXES[suffix] != fmt:
        raise HwnasError(f"device {device_name!r} runs {'torch modules' if fmt == 'torch' else '.' + fmt} models, "
                         f"not {suffix} files; pick a device whose backend runs {suffix} (see `hwnas devices`)"
                         + (" or give a model name from `hwnas models`" if fmt != "torch" else ""))
    declared = inspect_onnx(path) if fmt == "onnx" else inspect_tflite(path)
    shapes = _resolve(path, declared, parse_input_shapes(input_shape))
    return Artifact(format=fmt, name=path.stem, input_shapes=shapes, path=path.resolve())


def artifact_from_module(model, fmt: str, input_shape, name: str | None = None) -> Artifact:
    shape = tuple(int(d) for d in input_shape)
    check_input_size({"input": (shape, np.float32)})  # the export and the torch backend allocate it
    name = name or type(model).__name__.lower()
    if fmt == "torch":
        return Artifact(format="torch", name=name, input_shapes={"input": shape}, module=model)
    if fmt == "onnx":
        from hwnas.latency.export import export_onnx_cached
        res = export_onnx_cached(model, shape)
        return Artifact(format="onnx", name=name, input_shapes={"input": shape}, path=res.path,
                        meta={"parity_max_abs_diff": res.max_abs_diff})
    if fmt == "tflite":
        from hwnas.latency.tflite import export_tflite_cached
        path = export_tflite_cached(model, shape)
        (declared,) = [d[0] for d in inspect_tflite(path)][:1] or ["input"]
        return Artifact(format="tflite", name=name, input_shapes={declared: shape}, path=path)
    raise HwnasError(f"unknown artifact format {fmt!r}")


def model_input_shape(name: str, input_size: int | None = None, batch: int = 1) -> tuple[int, ...]:
    from hwnas.models import get_info
    size = input_size or get_info(name).input_size
    return (batch, 3, size, size)


def is_model_file(text: str) -> bool:
    """A path rather than a zoo name or package.module:factory: zoo names have no extension and no directory part."""
    from hwnas.modelspec import is_factory
    if is_factory(text):
        return False
    return Path(text).suffix != "" or os.sep in text or "/" in text or Path(text).exists()


def _seeded(make, name: str):
    """`make(name)` under a seed of the name: the same weights every run, so the export cache is hit."""
    import zlib

    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))
        return make(name)


def prepare_artifact(model: Any, fmt: str, input_shape=None, device_name: str = "") -> Artifact:
    """A torch module (+ input_shape), a zoo model name (input_shape optional: paper size), or a file path."""
    if isinstance(model, Artifact):
        return model
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        if is_model_file(text):
            return artifact_from_file(text, fmt, input_shape, device_name)
        from hwnas.modelspec import is_factory, load_factory
        if is_factory(text):
            if input_shape is None or isinstance(input_shape, int):
                raise HwnasError(f"model {text!r} is your own network: give its input shape (--input-shape, e.g. "
                                 f"1x3x224x224)")
            return artifact_from_module(_seeded(load_factory, text), fmt, tuple(input_shape), name=text)
        from hwnas.models import create
        if isinstance(input_shape, int):
            input_shape = model_input_shape(text, input_shape)
        shape = tuple(input_shape) if input_shape is not None else model_input_shape(text)
        return artifact_from_module(_seeded(create, text), fmt, shape, name=text)
    import torch
    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise HwnasError("an input shape is needed to run a torch module, e.g. (1, 3, 224, 224)")
        return artifact_from_module(model, fmt, input_shape)
    raise HwnasError(f"cannot run a {type(model).__name__}: give a torch module, a model name or a .onnx/.tflite path")
