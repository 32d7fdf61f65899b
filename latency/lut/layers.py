"""Per-conv helpers for NetAdapt's per-layer costs (hwnas.adapt.costs): the canonical key of one conv
timed alone, and the input size of every conv of a model."""
from __future__ import annotations

import torch
from torch import nn


def conv_key(h: int, w: int, cin: int, cout: int, kernel, stride, padding, dilation, depthwise: bool) -> str:
    """The canonical key of one conv alone (bias-free, no BN/activation) at input HxWxCin."""
    k, s, p, d = (tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in (kernel, stride, padding, dilation))
    return (f"conv-in:{h}x{w}x{cin}-out:{cout}-k:{k[0]}x{k[1]}-s:{s[0]}x{s[1]}-p:{p[0]}x{p[1]}"
            f"-d:{d[0]}-g:{'dw' if depthwise else '1'}")


def batch_key(key: str, batch: int) -> str:
    """The key of an op (or conv) timed at `batch`: batch 1 keeps the key it always had, any other gains `-n:BATCH`
    (its own table rows)."""
    return key if batch == 1 else f"{key}-n:{batch}"


def conv_calls(model: nn.Module, input_shape) -> list[tuple[str, nn.Conv2d, tuple[int, int]]]:
    """(name, module, (H, W) of its input) for every Conv2d call of `model`, in the order one forward pass makes
    them."""
    calls, hooks = [], []
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, n=n: calls.append((n, mod, tuple(i[0].shape[-2:])))))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(*input_shape))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return calls


def conv_input_sizes(model: nn.Module, input_shape) -> dict[str, tuple[int, int]]:
    """{conv name: (H, W) of its input} for every Conv2d of `model`, from one forward pass."""
    return {n: hw for n, _, hw in conv_calls(model, input_shape)}
