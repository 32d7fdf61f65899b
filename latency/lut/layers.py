"""Per-layer latency tables (NetAdapt): every Conv2d of a model timed alone over a grid of channel counts.

    rep = build_layer_table(device, model, (1, 3, 224, 224), channel_grid_step=8, store=LutStore(db))
    table = LayerLatencyTable.load(store, device.fingerprint_key(), rep.model_id)
    table.latency("features.3.conv.0", cin=40, cout=96)        # ms, interpolated between grid points

For each conv the grid is the multiples of `channel_grid_step` up to its channel counts (plus the counts
themselves): (cin, cout) pairs for a regular or grouped conv, cin alone for a depthwise conv (cout = cin).
Each point is stored as an ordinary op row of the LUT store under a canonical key (`conv_key`), so
building is resumable like any table (rows committed as measured, a rerun skips them) and `hwnas lut
export/import` share them. Between grid points the latency is interpolated linearly (bilinear in
(cin, cout)); outside the grid it is extrapolated from the nearest grid cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.lut.build import OP_PROTOCOL, time_ops
from hwnas.latency.lut.store import LutStore
from hwnas.latency.protocol import Protocol


def conv_key(h: int, w: int, cin: int, cout: int, kernel, stride, padding, dilation, depthwise: bool) -> str:
    """The canonical key of one conv alone (bias-free, no BN/activation) at input HxWxCin."""
    k, s, p, d = (tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in (kernel, stride, padding, dilation))
    return (f"conv-in:{h}x{w}x{cin}-out:{cout}-k:{k[0]}x{k[1]}-s:{s[0]}x{s[1]}-p:{p[0]}x{p[1]}"
            f"-d:{d[0]}-g:{'dw' if depthwise else '1'}")


def grid(c: int, step: int) -> list[int]:
    return sorted(set(range(step, c + 1, step)) | {c})


@dataclass(frozen=True)
class _ConvOp:  # an OpSpec-like record for time_ops
    key: str
    input_shape: tuple
    args: tuple

    def build(self) -> nn.Module:
        cin, cout, k, s, p, d, dw = self.args
        return nn.Conv2d(cin, cout, k, s, p, d, groups=cin if dw else 1, bias=False).eval()


def conv_input_sizes(model: nn.Module, input_shape) -> dict[str, tuple[int, int]]:
    """{conv name: (H, W) of its input} for every Conv2d of `model`, from one forward pass."""
    sizes, hooks = {}, []
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, tuple(i[0].shape[-2:]))))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(*input_shape))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return sizes


def conv_layers(model: nn.Module, input_shape) -> dict[str, dict]:
    """{conv name: its geometry} for every Conv2d of `model`, input sizes from one forward pass."""
    sizes = conv_input_sizes(model, input_shape)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out = {}
    for n, m in convs.items():
        dw = m.groups > 1 and m.groups == m.in_channels
        if m.groups > 1 and not dw:
            raise HwnasError(f"conv {n!r} is grouped ({m.groups} groups) but not depthwise: per-layer tables "
                             f"cover regular and depthwise convs")
        out[n] = {"h": sizes[n][0], "w": sizes[n][1], "cin": m.in_channels, "cout": m.out_channels,
                  "kernel": list(m.kernel_size), "stride": list(m.stride), "padding": list(m.padding),
                  "dilation": list(m.dilation), "depthwise": dw}
    return out


def _grid_ops(spec: dict, step: int) -> list[_ConvOp]:
    geo = (spec["kernel"], spec["stride"], spec["padding"], spec["dilation"])
    pairs = ([(c, c) for c in grid(spec["cin"], step)] if spec["depthwise"] else
             [(ci, co) for ci in grid(spec["cin"], step) for co in grid(spec["cout"], step)])
    return [_ConvOp(conv_key(spec["h"], spec["w"], ci, co, *geo, spec["depthwise"]), (1, ci, spec["h"], spec["w"]),
                    (ci, co, tuple(spec["kernel"]), tuple(spec["stride"]), tuple(spec["padding"]),
                     tuple(spec["dilation"]), spec["depthwise"]))
            for ci, co in pairs]


@dataclass
class LayerBuildReport:
    model_id: str
    layers: int
    points: int
    measured: int
    skipped: int


def build_layer_table(device, model: nn.Module, input_shape, channel_grid_step: int = 8, store: LutStore | None = None,
                      model_id: str | None = None, *, protocol: Protocol = OP_PROTOCOL,
                      show_progress: bool = True) -> LayerBuildReport:
    """Time every Conv2d of `model` alone over its (cin, cout) grid on `device` into `store` (resumable)."""
    if channel_grid_step < 1:
        raise HwnasError("channel_grid_step must be at least 1")
    store = store or LutStore()
    layers = conv_layers(model, input_shape)
    if not layers:
        raise HwnasError("the model has no Conv2d layer to tabulate")
    model_id = model_id or f"{type(model).__name__}-{'x'.join(map(str, input_shape))}"
    ops = {op.key: op for spec in layers.values() for op in _grid_ops(spec, channel_grid_step)}
    fp = device.fingerprint()
    store.add_fingerprint(fp)
    store.put_layer_table(fp["key"], model_id, {"step": channel_grid_step, "layers": layers})
    measured, skipped = time_ops(device, list(ops.values()), store, protocol=protocol,
                                 description=f"convs of {model_id}", show_progress=show_progress)
    return LayerBuildReport(model_id, len(layers), len(ops), measured, skipped)


class LayerLatencyTable:
    """ms of each conv of a tabulated model at any (cin, cout), interpolated between grid points."""

    def __init__(self, layers: dict[str, dict], step: int, values: dict[str, float]):
        self.layers, self.step = layers, step
        self._grids = {}
        for name, spec in layers.items():
            geo = (spec["kernel"], spec["stride"], spec["padding"], spec["dilation"])
            key = lambda ci, co: conv_key(spec["h"], spec["w"], ci, co, *geo, spec["depthwise"])  # noqa: E731
            gi = grid(spec["cin"], step)
            try:
                if spec["depthwise"]:
                    self._grids[name] = (np.array(gi, float), None, np.array([values[key(c, c)] for c in gi]))
                else:
                    go = grid(spec["cout"], step)
                    self._grids[name] = (np.array(gi, float), np.array(go, float),
                                         np.array([[values[key(ci, co)] for co in go] for ci in gi]))
            except KeyError as e:
                raise HwnasError(f"the per-layer table lacks {e.args[0]} (layer {name!r}): rerun build_layer_table "
                                 f"to complete it") from None

    @classmethod
    def load(cls, store: LutStore, fingerprint_key: str, model_id: str) -> "LayerLatencyTable":
        meta = store.get_layer_table(fingerprint_key, model_id)
        if meta is None:
            raise HwnasError(f"no per-layer table for model {model_id!r} on fingerprint {fingerprint_key} in "
                             f"{store.path}: build it with build_layer_table")
        return cls(meta["layers"], meta["step"], store.values(fingerprint_key))

    def latency(self, layer_name: str, cin: int, cout: int) -> float:
        if layer_name not in self._grids:
            raise HwnasError(f"no conv named {layer_name!r} in the per-layer table")
        if cin <= 0 or cout <= 0:
            return 0.0
        gi, go, v = self._grids[layer_name]
        if go is None:
            return max(0.0, _interp1(gi, v, cin))
        i, ti = _cell(gi, cin)
        j, tj = _cell(go, cout)
        lo = v[i, j] * (1 - tj) + v[i, j + 1] * tj if len(go) > 1 else v[i, 0]
        if len(gi) == 1:
            return max(0.0, float(lo))
        hi = v[i + 1, j] * (1 - tj) + v[i + 1, j + 1] * tj if len(go) > 1 else v[i + 1, 0]
        return max(0.0, float(lo * (1 - ti) + hi * ti))


def _cell(g: np.ndarray, x: float) -> tuple[int, float]:
    """Index i of the grid cell [g[i], g[i+1]] holding x (nearest cell outside) and x's position t in it."""
    if len(g) == 1:
        return 0, 0.0
    i = int(np.clip(np.searchsorted(g, x) - 1, 0, len(g) - 2))
    return i, (x - g[i]) / (g[i + 1] - g[i])


def _interp1(g: np.ndarray, v: np.ndarray, x: float) -> float:
    if len(g) == 1:
        return float(v[0])
    i, t = _cell(g, x)
    return float(v[i] * (1 - t) + v[i + 1] * t)
