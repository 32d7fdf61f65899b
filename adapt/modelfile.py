"""Pruned networks on disk without pickle: the weights (safetensors) plus the record that rebuilds them.

A NetAdapt network is its unpruned base (a zoo model and its arguments, or a module the caller hands in)
with some layers narrower. The file holds the state dict, the base, and per layer the channel counts
Torch-Pruning changed (in/out channels, groups, features); loading builds the base, resizes those layers
and their tensors to the recorded shapes, and loads the weights strictly. Nothing in the file is code.
"""
from __future__ import annotations

import copy
import os

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.tensorfile import load_tree, save_tree

KIND = "pruned-network"
# the integer attributes of a layer that pruning changes (Torch-Pruning's pruners update exactly these)
_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
          "num_parameters", "num_channels", "normalized_shape")


def zoo_base(name: str, **kwargs) -> dict:
    """The base record of a zoo network: `create(name, **kwargs)` rebuilds it unpruned."""
    return {"zoo": name, "kwargs": kwargs}


def layer_record(model: nn.Module) -> dict[str, dict]:
    """{layer name: {attribute: value}} for every layer that has parameters or buffers of its own."""
    rec = {}
    for name, m in model.named_modules():
        if not any(True for _ in m.parameters(recurse=False)) and not any(True for _ in m.buffers(recurse=False)):
            continue
        attrs = {}
        for a in _ATTRS:
            v = getattr(m, a, None)
            if isinstance(v, (int, tuple)):
                attrs[a] = list(v) if isinstance(v, tuple) else v
        if attrs:
            rec[name] = attrs
    return rec


def save_network(model: nn.Module, path: str | os.PathLike, base: dict | None) -> None:
    """Write `model` (a possibly pruned copy of `base`; None: a module the loader will be given)."""
    save_tree(path, {"base": base, "layers": layer_record(model), "state": model.state_dict()}, KIND)


def _resize(model: nn.Module, layers: dict, state: dict) -> None:
    modules = dict(model.named_modules())
    for name, attrs in layers.items():
        m = modules.get(name)
        if m is None:
            raise HwnasError(f"the network file names a layer {name!r} that its base network does not have")
        for a, v in attrs.items():
            setattr(m, a, tuple(v) if isinstance(v, list) else v)
        for pname, p in list(m.named_parameters(recurse=False)):
            t = state.get(f"{name}.{pname}" if name else pname)
            if t is not None and t.shape != p.shape:
                setattr(m, pname, nn.Parameter(torch.empty(t.shape, dtype=p.dtype), requires_grad=p.requires_grad))
        for bname, b in list(m.named_buffers(recurse=False)):
            t = state.get(f"{name}.{bname}" if name else bname)
            if t is not None and b is not None and t.shape != b.shape:
                m.register_buffer(bname, torch.empty(t.shape, dtype=b.dtype))


def load_network(path: str | os.PathLike, template: nn.Module | None = None) -> nn.Module:
    """Rebuild the network saved by `save_network`. `template`: the unpruned module, for files whose base is
    not a zoo model (a network handed to NetAdapt from Python)."""
    tree = load_tree(path, KIND, what="network file")
    base = tree.get("base")
    if template is not None:
        model = copy.deepcopy(template)
    elif isinstance(base, dict) and "zoo" in base:
        from hwnas.models import create
        model = create(base["zoo"], **base.get("kwargs", {}))
    else:
        raise HwnasError(f"network file {path} was made from a module given in Python; pass that module as "
                         f"`template` to rebuild it")
    state = tree["state"]
    _resize(model, tree["layers"], state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise HwnasError(f"network file {path} does not fit its base network: "
                         f"{str(e).strip().splitlines()[0]}") from None
    return model
