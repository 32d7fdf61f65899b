"""NASNet-A (Zoph et al., CVPR 2018) and PNASNet-5 (Liu et al., ECCV 2018), mobile ImageNet settings,
built from the published cell definitions (the authors' TF-slim release).

A cell takes the two previous cell outputs h0 (the last) and h1 (the one before), makes five new
states, each the sum of two ops applied to earlier states, and concatenates the states no op used.
- h0 is ReLU-1x1 conv-BN'd to the cell's F filters; h1 is brought to h0's grid and F filters (ReLU then
  a factorized reduction: two stride-2 1x1 convs on offset grids, concatenated, BN) when it differs.
- Ops: separable KxK (twice: ReLU, depthwise KxK, pointwise 1x1, BN; stride on the first), 3x3 average
  / max pool (+1x1 conv-BN when the channels change), identity (1x1 conv-BN when it must stride).
- Ops on the cell's inputs carry the cell's stride (2 in reduction cells); ops on new states do not.
Each network starts with a 3x3 stride-2 "valid" conv (32 filters) and two stride-2 stem cells with F/4
and F/2 filters, and ends with ReLU, global pooling and the classifier. Auxiliary heads and drop-path
(training-only) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.models.registry import register_model


@dataclass(frozen=True)
class CellSpec:
    ops: tuple          # 10 op names: (left, right) for each of the 5 new states
    inputs: tuple       # 10 state indices the ops read (0 = h0, 1 = h1, 2.. = new states)
    used: tuple         # 7 flags: states consumed by an op and hence not concatenated


# NASNet-A, Figure 4 of the paper (normal and reduction cells)
NASNET_A_NORMAL = CellSpec(
    ops=("sep5", "sep3", "sep5", "sep3", "avg", "none", "avg", "avg", "sep3", "none"),
    inputs=(0, 1, 1, 1, 0, 1, 1, 1, 0, 0), used=(1, 0, 0, 0, 0, 0, 0))
NASNET_A_REDUCTION = CellSpec(
    ops=("sep5", "sep7", "max", "sep7", "avg", "sep5", "none", "avg", "sep3", "max"),
    inputs=(0, 1, 0, 1, 0, 1, 3, 2, 2, 0), used=(1, 1, 1, 0, 0, 0, 0))
# PNASNet-5, Figure 1 of the paper: one cell, used with stride 1 and 2
PNASNET_5 = CellSpec(
    ops=("sep5", "max", "sep7", "max", "sep5", "sep3", "sep3", "max", "sep3", "none"),
    inputs=(1, 1, 0, 0, 0, 0, 4, 0, 1, 0), used=(1, 1, 0, 0, 0, 0, 0))


def conv1x1_bn(cin, cout, stride=1, relu=True):
    layers = [nn.ReLU()] if relu else []
    return nn.Sequential(*layers, nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-3))


class FactorizedReduce(nn.Module):
    """Halve the grid without dropping pixels: 1x1 stride-2 convs on the grid and on the grid shifted by
    one pixel, each giving half the filters; concatenated, then BN."""

    def __init__(self, cin, cout, relu=True):
        super().__init__()
        self.act = nn.ReLU() if relu else nn.Identity()
        self.path1 = nn.Conv2d(cin, cout // 2, 1, 2, bias=False)
        self.path2 = nn.Conv2d(cin, cout - cout // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        x = self.act(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.path1(x), self.path2(shifted)], 1))


def separable(cin, cout, k, stride):
    def sep(ci, s):
        return [nn.ReLU(), nn.Conv2d(ci, ci, k, s, k // 2, groups=ci, bias=False),
                nn.Conv2d(ci, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
    return nn.Sequential(*sep(cin, stride), *sep(cout, 1))


def make_op(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    if name.startswith("sep"):
        return separable(cin, cout, int(name[3:]), stride)
    if name in ("avg", "max"):
        pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False) if name == "avg" else nn.MaxPool2d(3, stride, 1)
        return pool if cin == cout else nn.Sequential(pool, conv1x1_bn(cin, cout, relu=False))
    if name == "none":
        return nn.Identity() if stride == 1 and cin == cout else conv1x1_bn(cin, cout, stride)
    raise ValueError(f"unknown cell op {name!r}")


class Cell(nn.Module):
    def __init__(self, spec: CellSpec, cin: int, prev_cin: int | None, prev_is_finer: bool, filters: int,
                 stride: int):
        super().__init__()
        self.spec = spec
        self.pre0 = conv1x1_bn(cin, filters)
        if prev_cin is None:            # the first stem cell: h1 is the stem conv's raw output
            self.pre1, c1 = nn.Identity(), cin
        elif prev_is_finer:
            self.pre1, c1 = FactorizedReduce(prev_cin, filters), filters
        elif prev_cin != filters:
            self.pre1, c1 = conv1x1_bn(prev_cin, filters), filters
        else:
            self.pre1, c1 = nn.Identity(), filters
        chans = [filters, c1] + [filters] * 5
        self.ops = nn.ModuleList(make_op(op, chans[i], filters, stride if i < 2 else 1)
                                 for op, i in zip(spec.ops, spec.inputs))
        # unused cell inputs concatenated at the output must match the new states' grid and filters
        self.fit = nn.ModuleDict()
        for i in (0, 1):
            if not spec.used[i] and (stride != 1 or chans[i] != filters):
                self.fit[str(i)] = (FactorizedReduce(chans[i], filters, relu=False) if stride != 1
                                    else conv1x1_bn(chans[i], filters, relu=False))
        self.out_channels = filters * (len(spec.used) - sum(spec.used))

    def forward(self, h0, h1):
        states = [self.pre0(h0), self.pre1(h0 if h1 is None else h1)]
        for j in range(5):
            a, b = self.spec.inputs[2 * j], self.spec.inputs[2 * j + 1]
            states.append(self.ops[2 * j](states[a]) + self.ops[2 * j + 1](states[b]))
        out = []
        for i, s in enumerate(states):
            if not self.spec.used[i]:
                out.append(self.fit[str(i)](s) if str(i) in self.fit else s)
        return torch.cat(out, 1)


class CellNet(nn.Module):
    """Stem conv, two stem cells, then `num_cells` cells with reductions at 1/3 and 2/3 of them.

    nasnet: a reduction cell is inserted before the normal cell at those points (the normal cell after it
    reads the cell before the reduction as h1, through a factorized reduction).
    pnasnet: the same cell is used with stride 2 at those points.
    Every cell reads the previous output as h0 and the one before it as h1."""

    def __init__(self, normal: CellSpec, reduction: CellSpec, num_cells: int, filters: int, kind: str,
                 num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 32, 3, 2, 0, bias=False), nn.BatchNorm2d(32, eps=1e-3))
        outs = [None, (32, 2)]        # (channels, stride) of each output; None: no output before the stem
        cells, wiring = [], []

        def add(spec, f, stride, prev_idx):
            cur, prev = outs[-1], outs[prev_idx]
            cell = Cell(spec, cur[0], prev and prev[0], bool(prev and prev[1] < cur[1]), f, stride)
            wiring.append((len(outs) - 1, prev_idx % len(outs) if prev else -1))
            cells.append(cell)
            outs.append((cell.out_channels, cur[1] * stride))

        for i, scale in enumerate((0.25, 0.5)):
            add(reduction, int(filters * scale), 2, -2)
        reductions = {num_cells // 3, 2 * num_cells // 3}
        scaling = 1
        for i in range(num_cells):
            if i in reductions:
                scaling *= 2
                if kind == "nasnet":
                    add(reduction, filters * scaling, 2, -2)
                    add(normal, filters * scaling, 1, -2)  # h1: the cell before the reduction
                else:
                    add(normal, filters * scaling, 2, -2)
            else:
                add(normal, filters * scaling, 1, -2)
        self.cells = nn.ModuleList(cells)
        self.wiring = wiring
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(outs[-1][0], num_classes))

    def forward(self, x):
        outs = [None, self.stem(x)]
        for cell, (cur, prev) in zip(self.cells, self.wiring):
            outs.append(cell(outs[cur], outs[prev] if prev >= 0 else None))
        return self.head(outs[-1])


# Paper, Table 2 (mobile, 224x224): NASNet-A (4 @ 1056) 5.3M parameters, 564M multiply-adds.
@register_model("nasnet_a_mobile", input_size=224, paper_params=5.3e6, paper_macs=564e6, family="nasnet")
def nasnet_a_mobile(num_classes: int = 1000, **kw):
    return CellNet(NASNET_A_NORMAL, NASNET_A_REDUCTION, num_cells=12, filters=44, kind="nasnet",
                   num_classes=num_classes, **kw)


# Paper, Table 4 (mobile, 224x224): PNASNet-5 (N = 3, F = 54) 5.1M parameters, 588M multiply-adds.
@register_model("pnasnet5_mobile", input_size=224, paper_params=5.1e6, paper_macs=588e6, family="nasnet")
def pnasnet5_mobile(num_classes: int = 1000, **kw):
    return CellNet(PNASNET_5, PNASNET_5, num_cells=9, filters=54, kind="pnasnet", num_classes=num_classes, **kw)
