"""Per-layer latency for NetAdapt: ms of one Conv2d with (cin, cout) channels, at its place in the model.

`LayerCosts(device, model, input_shape)` answers `.latency(layer_name, cin, cout)`. Each distinct conv
(kernel, stride, groups kind, input size, cin, cout) is timed alone on the device the first time it is
asked for (with the measurement protocol, hwnas.latency.protocol.OP) and kept in the project's latency
table store (hwnas.latency.lut.LutStore, keyed by the device fingerprint), so later iterations and later
runs reuse it, and `hwnas lut export/import/list` see these rows like any other. Only the (cin, cout) points the
search actually asks for are timed (a bisection per group), never a full grid.

A network's predicted latency is anchored to a measurement: predicted(new) = measured(current) +
Σ_changed convs [cost(new cin, cout) − cost(old cin, cout)], so framework overhead cancels out.

`KernelLayerCosts` answers the same from the device's kernel table (hwnas lut kernels) without timing anything:
`hwnas adapt --layer-costs kernels`. Each instance's `source` says where its figures come from.
"""
from __future__ import annotations

import os

import torch.nn as nn

from hwnas.adapt.groups import ConvChange
from hwnas.latency.lut.layers import batch_key, conv_input_sizes, conv_key
from hwnas.latency.lut.store import LutStore


class LayerCosts:
    source = "measured per layer (each conv timed alone with the protocol, kept in the latency table)"

    def __init__(self, device, model: nn.Module, input_shape, db: str | os.PathLike | None = None, protocol=None):
        from hwnas.latency.protocol import OP
        self.device = device
        self.fp = device.fingerprint_key()
        self.protocol = protocol or OP
        self.sizes = conv_input_sizes(model, input_shape)
        self.batch = int(input_shape[0])  # each conv is timed at the network's batch
        self.specs = {n: (m.kernel_size, m.stride, m.padding, m.dilation, m.groups > 1 and m.groups == m.in_channels)
                      for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        self.store = LutStore(db)
        self.path = self.store.path
        self.timed = 0  # convs timed by this instance (the rest came from the table)
        self.on_timed = None  # called with the conv's key after each one timed (a progress bar)

    def key(self, name: str, cin: int, cout: int) -> str:
        k, s, p, d, dw = self.specs[name]
        h, w = self.sizes[name]
        return batch_key(conv_key(h, w, cin, cout, k, s, p, d, dw), self.batch)

    def latency(self, name: str, cin: int, cout: int) -> float:
        if cin <= 0 or cout <= 0:
            return 0.0
        key = self.key(name, cin, cout)
        row = self.store.get(self.fp, key)
        if row:
            return row["value_ms"]
        k, s, p, d, dw = self.specs[name]
        if dw:
            cout = cin
        conv = nn.Conv2d(cin, cout, k, s, p, d, groups=cin if dw else 1, bias=False).eval()
        h, w = self.sizes[name]
        lat = self.device.latency(conv, (self.batch, cin, h, w), self.protocol)
        fp = self.device.fingerprint()
        self.store.put_latency(fp, f"{fp.get('runtime')} {fp.get('runtime_version')}", key, lat)
        self.timed += 1
        if self.on_timed is not None:
            self.on_timed(key)
        return self.store.get(self.fp, key)["value_ms"]

    def delta(self, changes: list[ConvChange]) -> float:
        """Predicted change in ms (negative = faster) when these convs change shape."""
        return sum(self.latency(c.name, c.new_cin, c.new_cout) - self.latency(c.name, c.cin, c.cout)
                   for c in changes)

    def close(self) -> None:
        self.store.close()


def _ceil8(c: int) -> int:
    return -(-c // 8) * 8


class KernelLayerCosts(LayerCosts):
    """Per-layer costs from the device's kernel table (hwnas lut kernels) instead of timing each conv: a conv of
    (cin, cout) at its place is the kernel the runtime runs there (its fused activation and residual add, its
    layout, read once from the decomposition of the network) with the new channel counts, predicted by the
    table's regressor. Nothing is timed while cuts are planned; the measured network stays the judge."""

    def __init__(self, device, model: nn.Module, input_shape, db: str | os.PathLike | None = None, protocol=None):
        from hwnas.errors import HwnasError
        from hwnas.latency.kernel_predict import KernelPredictor
        super().__init__(device, model, input_shape, db=db, protocol=protocol)
        if self.batch != 1:
            raise HwnasError(f"per-layer costs from the kernel table are for batch 1 (its kernels are timed at "
                             f"batch 1), not {self.batch}; use measured per-layer costs")
        self.predictor = KernelPredictor.load(device, db)
        self.context = conv_contexts(device, model, input_shape)
        self.cache: dict[tuple, float] = {}
        n = sum(m.n for m in self.predictor.kinds.values())
        self.source = (f"kernel table of {device.name} ({self.predictor.models} models, {n} kernel samples; "
                       f"{len(self.context)} of {len(self.specs)} convs matched to the runtime's kernels)")

    def default_op(self, dw: bool) -> str:
        """The runtime op of a conv not matched to a kernel: what the runtime runs such a conv as."""
        if self.device.artifact_format == "tflite":
            return "tflite:DEPTHWISE_CONV_2D" if dw else "tflite:CONV_2D"
        return "com.microsoft.nchwc:Conv"

    def latency(self, name: str, cin: int, cout: int) -> float:
        if cin <= 0 or cout <= 0:
            return 0.0
        if (name, cin, cout) not in self.cache:
            from hwnas.latency.kernels import Kernel
            k, s, _, _, dw = self.specs[name]
            h, w = self.sizes[name]
            op, act, add = self.context.get(name, (self.default_op(dw), "none", 0))
            blocked = "nchwc" in op
            ci, co = (cin, cin) if dw else (cin, cout)
            if blocked:
                ci, co = _ceil8(ci), _ceil8(co)
            config = (("hw", (h, w)), ("cin", ci), ("cout", co), ("k", tuple(k)), ("s", tuple(s)), ("act", act),
                      ("add", add))
            ms, _ = self.predictor.kernel_ms([Kernel(name, op, "dwconv" if dw else "conv", config)])[0]
            self.cache[(name, cin, cout)] = float(ms or 0.0)
        return self.cache[(name, cin, cout)]


def conv_contexts(device, model: nn.Module, input_shape) -> dict[str, tuple[str, str, int]]:
    """{conv name: (runtime op, fused activation, fused residual add)} for the convs of `model` that can be told
    apart in the runtime's kernels: each conv, in the order it runs, is matched to the first runtime conv kernel
    not matched yet with its input size, kernel, stride and output channels (rounded up to 8 where the runtime
    blocks channels); on LiteRT a conv whose pad XNNPACK folds in runs on the padded size. Groups other than 1 or
    depthwise are left out (their cost is then a plain conv's of the runtime)."""
    from hwnas.latency.kernels import decompose
    from hwnas.latency.lut.layers import conv_calls
    kernels = [k for k in decompose(device, model, tuple(input_shape), runs=1).kernels if k.kind in ("conv", "dwconv")]
    used, out = set(), {}
    for name, m, hw in conv_calls(model, input_shape):
        cin, cout, ks, st, groups = m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups
        if groups not in (1, cin):
            continue
        for i, k in enumerate(kernels):
            f = k.features()
            padded = (hw[0] + 2 * m.padding[0], hw[1] + 2 * m.padding[1]) if isinstance(m.padding, tuple) else hw
            if i in used or f["hw"] not in (hw, padded) or f["k"] != tuple(ks) or f["s"] != tuple(st):
                continue
            if f["cout"] in (cout, _ceil8(cout)) and (k.kind == "dwconv") == (groups == cin and groups > 1):
                used.add(i)
                out[name] = (k.op, f["act"], f["add"])
                break
    return out
