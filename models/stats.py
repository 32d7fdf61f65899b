"""Parameter and multiply-accumulate counts, measured by running the model once with hooks."""
from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape=(1, 3, 224, 224)) -> int:
    """MACs of convolutions and linear layers (the figure the papers' tables report), batch 1."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *tuple(input_shape)[1:]))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def stats(model: nn.Module, input_shape=(1, 3, 224, 224)) -> dict:
    """{'params': int, 'macs': int} at `input_shape` (MACs per image)."""
    return {"params": count_params(model), "macs": count_macs(model, input_shape)}
