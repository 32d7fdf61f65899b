"""Weights for a zoo network from a state dict in its own names or in torchvision's layout.

    fitted = fit_weights(model, load_state_dict_file("resnet50-0676ba61.pth"), "resnet50")
    model.load_state_dict(fitted.state_dict)  # strict: every tensor of the network is set
    # fitted.layout "torchvision": build the network with torchvision_kwargs("resnet50") to compute what
    # torchvision's does; fitted.new_classifier: a checkpoint for other classes, its classifier left to train

The zoo writes its networks itself, with the layers of torchvision's definitions in the same order but under its
own names (torchvision `layer1.0.conv1.weight` is the zoo's `layers.0.0.conv1.weight`, say). The state-dict keys
and shapes of torchvision's definitions are recorded in torchvision_keys.json.gz (written by
scripts/record_torchvision_keys.py from torchvision's own code; torchvision does not import beside this torch);
a torchvision name maps to the zoo name at the same position of the two state dicts, every shape agreeing
(shufflenet_v2 lists a downsampling block's shortcut before its main branch, the zoo after: reordered first).
Checkpoints without `num_batches_tracked` (older torchvision files) load; a classifier for another number of
classes (ImageNet's 1000) is left as the network initialised it and said so; anything else that does not fit
is one error naming the first keys that do not.
"""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from hwnas.errors import HwnasError

KEYS_FILE = Path(__file__).with_name("torchvision_keys.json.gz")
# zoo name -> torchvision constructor with the same layers (torchvision's mnasnet1_0 is MnasNet-B1)
TORCHVISION = {name: name for name in (
    "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "densenet121", "squeezenet1_0",
    "squeezenet1_1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0")}
TORCHVISION["mnasnet_b1"] = "mnasnet1_0"
# zoo arguments that make the network torchvision's: its ResNet-50/101 stride in the 3x3 conv (v1.5), the zoo's
# default in the first 1x1 (the paper's v1); the same tensors either way, another function and latency
TORCHVISION_KWARGS = {"resnet50": {"stride_in_3x3": True}, "resnet101": {"stride_in_3x3": True}}
_SHOWN = 3  # keys named in an error


@functools.lru_cache(maxsize=1)
def _recorded() -> dict:
    with gzip.open(KEYS_FILE, "rt", encoding="utf-8") as f:
        return json.load(f)


def recorded_source() -> str:
    return _recorded()["source"]


def recorded_keys(tv_name: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of torchvision's `tv_name` (1000 classes) in torchvision's order."""
    return [(k, tuple(s)) for k, s in _recorded()["networks"][tv_name]["keys"]]


def recorded_output(tv_name: str) -> dict:
    """What torchvision's `tv_name` computed with `reference_weights` on `reference_input()` (when recorded)."""
    return _recorded()["networks"][tv_name]["output"]


def torchvision_keys(tv_name: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of torchvision's `tv_name` (1000 classes) in the zoo's order."""
    keys = recorded_keys(tv_name)
    return _shortcut_last(keys) if tv_name.startswith("shufflenet_v2") else keys


def reference_weights(keys, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights for (key, shape) pairs, drawn in their order: what the recording ran torchvision's
    networks with, so that a mapped zoo network can be checked to compute the same function (BatchNorm
    statistics near 0 mean and unit variance, weights scaled by fan-in so that deep networks stay finite)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in keys:
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            t = torch.tensor(0)
        elif leaf == "running_var":
            t = torch.rand(shape, generator=g) + 0.5
        elif leaf == "running_mean":
            t = torch.randn(shape, generator=g) * 0.1
        elif len(shape) > 1:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            t = torch.randn(shape, generator=g) / fan_in ** 0.5
        else:
            t = torch.randn(shape, generator=g) * 0.1 + (1.0 if leaf == "weight" else 0.0)
        out[key] = t
    return out


def reference_input(size: int = 64) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def output_summary(logits: torch.Tensor) -> dict:
    """What is recorded of a network's output: its first logits, sum and norm."""
    flat = logits.detach().double().flatten()
    return {"first": flat[:8].tolist(), "sum": float(flat.sum()), "norm": float(flat.norm())}


def _shortcut_last(keys: list) -> list:
    """shufflenet_v2: within each block, torchvision's branch2 (the main branch) before branch1 (the shortcut)."""
    blocks: dict[str, list] = {}
    for k, s in keys:
        parts = k.split(".")
        block = ".".join(parts[:2]) if parts[0].startswith("stage") else parts[0]
        blocks.setdefault(block, []).append((parts[2] == "branch1" if len(parts) > 2 else False, k, s))
    return [(k, s) for items in blocks.values() for _, k, s in sorted(items, key=lambda t: t[0])]


def classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of the network's last layer with parameters (its classifier)."""
    last = None
    for name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            last = (name, m)
    if last is None:
        return set()
    name, m = last
    return {f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)}


def key_map(zoo_name: str, model: nn.Module) -> dict[str, str]:
    """torchvision key -> zoo key for `model` (a `zoo_name` network): position by position, every shape agreeing
    but the classifier's class count."""
    tv = torchvision_keys(TORCHVISION[zoo_name])
    own = list(model.state_dict().items())
    head = classifier_keys(model)
    if len(tv) != len(own):
        raise HwnasError(f"torchvision's {TORCHVISION[zoo_name]} has {len(tv)} tensors, the zoo's {zoo_name} "
                         f"{len(own)}: the layouts differ")
    for (tk, ts), (zk, zt) in zip(tv, own):
        fits = ts == tuple(zt.shape) or (zk in head and ts[1:] == tuple(zt.shape)[1:])
        if not fits or tk.rsplit(".", 1)[-1] != zk.rsplit(".", 1)[-1]:
            raise HwnasError(f"torchvision's {tk} {list(ts)} does not match the zoo's {zk} {list(zt.shape)}")
    return {tk: zk for (tk, _), (zk, _) in zip(tv, own)}


def torchvision_kwargs(zoo_name: str) -> dict:
    """create() arguments of the zoo network whose function is torchvision's (weights in its layout mean it)."""
    return dict(TORCHVISION_KWARGS.get(zoo_name, {}))


def _strip_module_prefix(sd: dict) -> dict:
    """A network saved wrapped in DataParallel / DistributedDataParallel: every key starts with 'module.'."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _names(keys, n: int = _SHOWN) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _try(model: nn.Module, sd: dict, rename: dict | None, layout: str):
    """(state dict for model.load_state_dict, notes, classifier left new) or (None, why it does not fit, False)."""
    own = model.state_dict()
    renamed = sd if rename is None else {rename.get(k, k): v for k, v in sd.items()}
    unexpected = [k for k in renamed if k not in own]
    missing = [k for k in own if k not in renamed and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        why = "; ".join(p for p in (f"missing {_names(missing)}" if missing else "",
                                    f"unexpected {_names(unexpected)}" if unexpected else "") if p)
        return None, (len(missing) + len(unexpected), f"{layout}: {why}"), False
    head = classifier_keys(model)
    out, notes, wrong, head_classes = {}, [], [], None
    for k, t in own.items():
        v = renamed.get(k)
        if v is None:  # an older checkpoint without BatchNorm's num_batches_tracked
            out[k] = t.clone()
            continue
        if not isinstance(v, torch.Tensor):
            return None, (1, f"{layout}: {k} is not a tensor"), False
        if tuple(v.shape) != tuple(t.shape):
            if k in head and v.dim() == t.dim() and v.shape[1:] == t.shape[1:]:
                head_classes = int(v.shape[0])
                out[k] = t.clone()
                continue
            wrong.append(f"{k} {list(v.shape)} (the network's is {list(t.shape)})")
            continue
        out[k] = v.to(t.dtype)
    if wrong:
        return None, (len(wrong), f"{layout}: size mismatch for {_names(wrong)}"), False
    if any(k not in renamed for k in own if k.endswith("num_batches_tracked")):
        notes.append("the checkpoint has no BatchNorm num_batches_tracked (an older file): set to 0")
    if head_classes is not None:
        n = int(next(own[k] for k in sorted(head)).shape[0])
        notes.append(f"the checkpoint's classifier has {head_classes} classes and this network {n}: the "
                     f"classifier ({_names(sorted(head))}) is left as initialised, to be trained")
    if rename is not None:
        notes.insert(0, f"mapped from {layout}")
    return out, notes, head_classes is not None


class FittedWeights(NamedTuple):
    state_dict: dict        # what `model.load_state_dict` takes strictly
    notes: list[str]        # what was done to fit them, for the user
    layout: str             # "own" or "torchvision" (then build the network with `torchvision_kwargs(zoo_name)`)
    new_classifier: bool    # the checkpoint's classifier is for another class count: left as initialised


def fit_weights(model: nn.Module, sd: dict, zoo_name: str | None = None, source: str = "the weights") -> FittedWeights:
    """`sd` fitted to `model`: in the model's own names (layout "own"), or, for a zoo network torchvision also
    defines, in torchvision's ("torchvision"). HwnasError naming the first keys that do not fit."""
    sd = _strip_module_prefix(dict(sd))
    layouts = [(lambda: None, "the network's own names", "own")]
    if zoo_name in TORCHVISION:
        layouts.append((lambda: key_map(zoo_name, model), f"torchvision's {TORCHVISION[zoo_name]} layout",
                        "torchvision"))
    failures = []
    for rename, layout, kind in layouts:
        try:
            out, info, new_head = _try(model, sd, rename(), layout)
        except HwnasError as e:  # this network is not the layout torchvision's is (another width, say)
            failures.append((len(sd) + 1, f"{layout}: {e}"))
            continue
        if out is not None:
            return FittedWeights(out, info, kind, new_head)
        failures.append(info)
    _, closest = min(failures, key=lambda f: f[0])
    what = "neither the network's own names nor torchvision's layout" if len(layouts) > 1 else "this network"
    raise HwnasError(f"{source} fit {what}; closest, {closest}")
