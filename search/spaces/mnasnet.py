"""The MnasNet factorized hierarchical search space (Tan et al., CVPR 2019).

The network is a stem (3x3 conv, stride 2), 7 blocks and a head (1x1 conv, global pool, classifier).
Each block decides, for all of its layers alike:
  op      conv (regular kxk), dwconv (depthwise kxk + pointwise), mbconv1 / mbconv3 / mbconv6
          (mobile inverted bottleneck with expansion 1, 3, 6)
  kernel  3 or 5;  se  squeeze-and-excitation ratio 0 or 0.25
  skip    pool (pooling shortcut, projected when channels change), identity (residual where shapes
          match), none
  width   filter-size multiplier of the block's base channels;  layers  base layer count + delta
The first layer of a block has the block's stride and changes the channel count; the others keep both.
Base channels, layer counts and strides follow MobileNetV2, the space's starting point in the paper.

Every layer is an op with a canonical key, e.g.
  mbconv6-in:56x56x24-out:28x28x40-k:5-s:2-se:0.25-skip:pool
and a network is exactly its ops in sequence (`build` stacks the modules `ops` builds), so a latency
table of ops predicts whole networks up to framework overhead and fusion across op boundaries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.models.layers import SqueezeExcite, conv_bn, inverted_residual, make_divisible, se_width
from hwnas.search.spaces import register_space
from hwnas.search.spaces.base import Decision, OpSpec, Space

OPS = ("conv", "dwconv", "mbconv1", "mbconv3", "mbconv6")
SKIPS = ("pool", "identity", "none")


def effective_skip(skip: str, cin: int, cout: int, stride: int) -> str:
    """The skip a layer really has: identity needs matching shapes; a pooling shortcut between matching
    shapes is an identity."""
    same = stride == 1 and cin == cout
    if skip == "identity":
        return "identity" if same else "none"
    if skip == "pool":
        return "identity" if same else "pool"
    return "none"


class SearchLayer(nn.Module):
    def __init__(self, cin: int, cout: int, op: str, k: int, stride: int, se: float, skip: str):
        super().__init__()
        se_hidden = se_width(cin, se)
        if op == "conv":
            self.body = nn.Sequential(conv_bn(cin, cout, k, stride),
                                      *([SqueezeExcite(cout, se_hidden)] if se_hidden else []))
        elif op == "dwconv" or op.startswith("mbconv"):  # dwconv: depthwise + pointwise, MBConv's expansion 1
            e = 1 if op == "dwconv" else int(op[len("mbconv"):])
            self.body = inverted_residual(cin, cin * e, cout, k, stride, se=se_hidden)
        else:
            raise ValueError(f"unknown op {op!r}")
        self.skip = effective_skip(skip, cin, cout, stride)
        if self.skip == "pool":
            short = [nn.AvgPool2d(stride, stride, ceil_mode=True)] if stride > 1 else []
            if cin != cout:
                short.append(conv_bn(cin, cout, 1, act=None))
            self.shortcut = nn.Sequential(*short)

    def forward(self, x):
        y = self.body(x)
        if self.skip == "identity":
            return x + y
        if self.skip == "pool":
            return self.shortcut(x) + y
        return y


def stem(cout: int) -> nn.Sequential:
    return conv_bn(3, cout, 3, 2)


class Head(nn.Module):
    def __init__(self, cin: int, channels: int, num_classes: int):
        super().__init__()
        self.features = conv_bn(cin, channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@dataclass(frozen=True)
class MnasNetConfig:
    input_size: int = 224
    num_classes: int = 1000
    stem: int = 32
    head: int = 1280
    # (base channels, base layers, stride) per block: MobileNetV2's seven bottleneck stages
    blocks: tuple = ((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))
    ops: tuple = OPS
    kernels: tuple = (3, 5)
    se_ratios: tuple = (0.0, 0.25)
    skips: tuple = SKIPS
    width_mults: tuple = (0.75, 1.0, 1.25)
    layer_deltas: tuple = (-1, 0, 1)


_FIELDS = ("op", "kernel", "se", "skip", "width", "layers")


class MnasNetSpace(Space):
    ops_are_network = True  # build() stacks the modules ops() builds

    def __init__(self, config: MnasNetConfig = MnasNetConfig(), name: str = "mnasnet", **overrides):
        if overrides:
            config = MnasNetConfig(**{**config.__dict__, **overrides})
        self.config = c = config
        self.name = name
        self.input_size, self.num_classes = c.input_size, c.num_classes
        choices = {"op": c.ops, "kernel": c.kernels, "se": c.se_ratios, "skip": c.skips,
                   "width": c.width_mults, "layers": c.layer_deltas}
        self._decisions = [Decision(f"b{b}.{f}", tuple(choices[f])) for b in range(len(c.blocks)) for f in _FIELDS]
        self.channels = [[make_divisible(base * m) for m in c.width_mults] for base, _, _ in c.blocks]
        self.layers = [[max(1, n + d) for d in c.layer_deltas] for _, n, _ in c.blocks]
        sizes = [math.ceil(c.input_size / 2)]  # after the stem
        for _, _, s in c.blocks:
            sizes.append(math.ceil(sizes[-1] / s))
        self.sizes = sizes  # sizes[b] = input size of block b; sizes[-1] = head input size
        self._index_tables()

    def decisions(self):
        return list(self._decisions)

    # -- ops ----------------------------------------------------------------------------------------
    def _layer_op(self, b: int, first: bool, cin: int, cout: int, op: str, k: int, se: float, skip: str) -> OpSpec:
        s = self.config.blocks[b][2] if first else 1
        h, ho = self.sizes[b] if first else self.sizes[b + 1], self.sizes[b + 1]
        skip = effective_skip(skip, cin, cout, s)
        key = f"{op}-in:{h}x{h}x{cin}-out:{ho}x{ho}x{cout}-k:{k}-s:{s}-se:{se:g}-skip:{skip}"
        return OpSpec(key, (1, cin, h, h), lambda: SearchLayer(cin, cout, op, k, s, se, skip))

    def _stem_op(self) -> OpSpec:
        c, h = self.config, self.config.input_size
        key = f"stem-in:{h}x{h}x3-out:{self.sizes[0]}x{self.sizes[0]}x{c.stem}-k:3-s:2"
        return OpSpec(key, (1, 3, h, h), lambda: stem(c.stem))

    def _head_op(self, cin: int, num_classes: int | None = None) -> OpSpec:
        c, h = self.config, self.sizes[-1]
        nc = num_classes or c.num_classes
        key = f"head-in:{h}x{h}x{cin}-out:{c.head}-classes:{nc}"
        return OpSpec(key, (1, cin, h, h), lambda: Head(cin, c.head, nc))

    def _block_choices(self, arch, b):
        i = b * len(_FIELDS)
        op, k, se, skip, w, n = arch[i:i + len(_FIELDS)]
        c = self.config
        return c.ops[op], c.kernels[k], c.se_ratios[se], c.skips[skip], w, self.layers[b][n]

    def ops(self, arch, num_classes: int | None = None) -> list[OpSpec]:
        arch = self.validate(arch)
        out = [self._stem_op()]
        cin = self.config.stem
        for b in range(len(self.config.blocks)):
            op, k, se, skip, w, n = self._block_choices(arch, b)
            cout = self.channels[b][w]
            out.append(self._layer_op(b, True, cin, cout, op, k, se, skip))
            out += [self._layer_op(b, False, cout, cout, op, k, se, skip)] * (n - 1)
            cin = cout
        out.append(self._head_op(cin, num_classes))
        return out

    def build(self, arch, num_classes: int | None = None) -> nn.Module:
        return nn.Sequential(*[op.builder() for op in self.ops(arch, num_classes)])

    def describe(self, arch) -> dict:
        arch = self.validate(arch)
        blocks = []
        for b in range(len(self.config.blocks)):
            op, k, se, skip, w, n = self._block_choices(arch, b)
            blocks.append({"op": op, "kernel": k, "se": se, "skip": skip, "channels": self.channels[b][w],
                           "layers": n, "stride": self.config.blocks[b][2]})
        return {"input_size": self.input_size, "blocks": blocks}

    # -- the distinct ops and their vectorised lookup ----------------------------------------------------
    def _index_tables(self):
        """all_ops() in a fixed order, plus index arrays: first[b][op,k,se,skip,w_prev,w], rest[b][op,k,se,skip,w]."""
        c = self.config
        self._all: list[OpSpec] = []
        index: dict[str, int] = {}

        def add(spec: OpSpec) -> int:
            if spec.key not in index:
                index[spec.key] = len(self._all)
                self._all.append(spec)
            return index[spec.key]

        self._stem_idx = add(self._stem_op())
        dims = (len(c.ops), len(c.kernels), len(c.se_ratios), len(c.skips))
        self._first, self._rest = [], []
        for b in range(len(c.blocks)):
            prev = [c.stem] if b == 0 else self.channels[b - 1]
            first = np.empty(dims + (len(prev), len(c.width_mults)), dtype=np.int64)
            rest = np.empty(dims + (len(c.width_mults),), dtype=np.int64)
            for o, op in enumerate(c.ops):
                for ki, k in enumerate(c.kernels):
                    for si, se in enumerate(c.se_ratios):
                        for sk, skip in enumerate(c.skips):
                            for w, cout in enumerate(self.channels[b]):
                                for p, cin in enumerate(prev):
                                    first[o, ki, si, sk, p, w] = add(self._layer_op(b, True, cin, cout, op, k, se, skip))
                                rest[o, ki, si, sk, w] = (add(self._layer_op(b, False, cout, cout, op, k, se, skip))
                                                          if max(self.layers[b]) > 1 else -1)
            self._first.append(first)
            self._rest.append(rest)
        self._head_idx = np.array([add(self._head_op(cin)) for cin in self.channels[-1]], dtype=np.int64)
        self._max_layers = [max(n) for n in self.layers]
        self._layers_arr = [np.asarray(n, dtype=np.int64) for n in self.layers]

    def all_ops(self) -> list[OpSpec]:
        return list(self._all)

    def min_cost(self, op_costs) -> float:
        """The smallest sum of per-op costs (indexed like all_ops()) over every architecture of the space,
        by dynamic programming over the blocks with the previous block's width as the state."""
        C = np.asarray(op_costs, dtype=np.float64)
        best = np.zeros(1)  # state: width index of the previous block (the stem has one)
        for b in range(len(self.config.blocks)):
            first = C[self._first[b]]                  # [op, k, se, skip, w_prev, w]
            rest_idx = self._rest[b]
            rest = np.where(rest_idx >= 0, C[rest_idx], 0.0)[..., None, :]  # [op, k, se, skip, 1, w]
            per_n = [first + (n - 1) * rest for n in self.layers[b]]
            block = np.min([x.reshape(-1, *x.shape[-2:]).min(axis=0) for x in per_n], axis=0)  # [w_prev, w]
            best = (best[:, None] + block).min(axis=0)
        return float(C[self._stem_idx] + (best + C[self._head_idx]).min())

    def op_indices(self, archs) -> np.ndarray:
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self._decisions))
        n = a.shape[0]
        F = len(_FIELDS)
        cols = [np.full(n, self._stem_idx)]
        w_prev = np.zeros(n, dtype=np.int64)
        for b in range(len(self.config.blocks)):
            op, k, se, sk, w, nl = (a[:, b * F + j] for j in range(F))
            cols.append(self._first[b][op, k, se, sk, w_prev, w])
            rest = self._rest[b][op, k, se, sk, w]
            layers = self._layers_arr[b][nl]
            for j in range(1, self._max_layers[b]):
                cols.append(np.where(layers > j, rest, -1))
            w_prev = w
        cols.append(self._head_idx[w_prev])
        return np.stack(cols, axis=1)


@register_space("mnasnet")
def mnasnet(**overrides) -> MnasNetSpace:
    """The paper's space at 224x224, 1000 classes."""
    return MnasNetSpace(name="mnasnet", **overrides)


@register_space("mnasnet-tiny")
def mnasnet_tiny(**overrides) -> MnasNetSpace:
    """A small variant for 32x32 inputs (digits upsampled), tests and demos: the same decisions with
    narrower channels, one width and fewer op types, so its table builds in a minute."""
    cfg = MnasNetConfig(input_size=32, num_classes=10, stem=16, head=128,
                        blocks=((16, 1, 1), (24, 1, 2), (32, 2, 2), (48, 2, 2), (64, 1, 1), (96, 2, 2), (128, 1, 1)),
                        ops=("dwconv", "mbconv3", "mbconv6"), kernels=(3, 5), se_ratios=(0.0, 0.25),
                        skips=("identity", "none"), width_mults=(1.0,), layer_deltas=(0, 1))
    return MnasNetSpace(cfg, name="mnasnet-tiny", **overrides)
