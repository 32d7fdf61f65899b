"""MODEL as every command takes it: a zoo name, a file, or `package.module:factory` (your own network).

    resolve_module("resnet50", num_classes=10)        # the zoo network
    resolve_module("mypkg.nets:build", num_classes=10) # mypkg.nets.build(num_classes=10), an nn.Module
    resolve_module("runs/adapt-x/adapted.safetensors") # a network hwnas wrote (weights + layer record, no pickle)

A factory is imported from the current directory too (as `python -c` would), and called with the keywords it
accepts among those given (num_classes, ...). Importing it runs its code: name only modules you trust, as with
any Python import.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

from hwnas.errors import HwnasError

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(spec) -> bool:
    return isinstance(spec, str) and bool(_FACTORY.match(spec)) and not os.path.exists(spec)


def load_factory(spec: str, **kwargs):
    """The nn.Module `package.module:factory` returns, called with the `kwargs` it accepts."""
    import torch
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise HwnasError(f"model {spec!r}: cannot import {module_name!r} ({e}); run from the folder that holds it "
                         f"or install it") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise HwnasError(f"model {spec!r}: {module_name} has no callable {attr!r}")
    try:
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        given = {k: v for k, v in kwargs.items() if v is not None and (takes_any or k in params)}
    except (TypeError, ValueError):  # a builtin or C callable: call it without arguments
        given = {}
    try:
        model = fn(**given)
    except HwnasError:
        raise
    except Exception as e:
        raise HwnasError(f"model {spec!r}: {attr}({', '.join(f'{k}={v!r}' for k, v in given.items())}) failed: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise HwnasError(f"model {spec!r}: {attr}() returned a {type(model).__name__!r} object, not a torch.nn.Module")
    return model


def resolve_module(spec: str, num_classes: int | None = None):
    """A torch module for MODEL (zoo name, hwnas network file, or factory); one line for anything else."""
    if is_factory(spec):
        return load_factory(spec, num_classes=num_classes)
    if str(spec).endswith(".safetensors") and os.path.isfile(spec):
        from hwnas.adapt.modelfile import load_network
        return load_network(spec)
    if str(spec).endswith((".onnx", ".tflite")):
        raise HwnasError(f"model {spec!r} is an exported file: this command needs the torch network (a zoo name, "
                         f"package.module:factory, or a .safetensors network file hwnas wrote)")
    from hwnas.models import create
    return create(spec, **({"num_classes": num_classes} if num_classes is not None else {}))
