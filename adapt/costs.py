"""Per-layer latency for NetAdapt: ms of one Conv2d with (cin, cout) channels, at its place in the model.

`LayerCosts(device, model, input_shape)` answers `.latency(layer_name, cin, cout)`. Each distinct conv
(kernel, stride, groups kind, input size, cin, cout) is timed alone on the device the first time it is
asked for (with the measurement protocol, hwnas.latency.protocol.OP) and kept in the project's latency
table store (hwnas.latency.lut.LutStore, keyed by the device fingerprint), so later iterations and later
runs reuse it, and `hwnas lut export/import/list` see these rows like any other. Only the (cin, cout) points the
search actually asks for are timed (a bisection per group), never a full grid.

A network's predicted latency is anchored to a measurement: predicted(new) = measured(current) +
Σ_changed convs [cost(new cin, cout) − cost(old cin, cout)], so framework overhead cancels out.
"""
from __future__ import annotations

import os

import torch.nn as nn

from hwnas.adapt.groups import ConvChange
from hwnas.latency.lut.layers import batch_key, conv_input_sizes, conv_key
from hwnas.latency.lut.store import LutStore


class LayerCosts:
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
