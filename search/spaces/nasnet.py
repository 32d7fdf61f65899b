"""The NASNet cell search space (Zoph et al., CVPR 2018) and its PNAS form (Liu et al., ECCV 2018).

A network is a stem (3x3 conv), `stacks` stacks of `normal_cells` normal cells, a reduction cell between
two stacks (stride 2, channels doubled) and a head (global pool, classifier). A cell takes the outputs of
the two previous cells (h-2, h-1), maps each to C channels with a 1x1 conv ("pre"; with stride 2 for h-2
when the previous cell reduced) and computes B blocks; block b picks two inputs among h-2, h-1 and the
outputs of blocks 0..b-1, applies one op to each and adds the two results. The cell's output is the
concatenation of the blocks no other block of the cell reads (NASNet's rule). In a reduction cell the ops
that read h-2 or h-1 have stride 2.

Decisions: `blocks` (how many blocks the cells have, 1..B) and, per cell type and block, in1, in2, op1,
op2. `nasnet` searches a normal and a reduction cell; `pnas` ties them (one cell structure used both
ways, as PNAS does), which keeps the children of a cell few enough to enumerate. Architectures are
canonical: blocks beyond `blocks` are zero and each block's two (input, op) pairs are ordered, so one
network has one architecture (136 distinct one-block cells, as in the PNAS paper).

Ops (PNAS's list): identity, 3x3/5x5/7x7 depthwise-separable conv, 3x3 average and max pooling, 3x3
dilated separable conv, 1x7-then-7x1 conv. A stride-1 identity costs nothing and is no op; a stride-2
identity is a 1x1 conv with stride 2 (factorized reduction).

Latency: every conv, pool and pre-processing conv is an op with a canonical key (e.g.
`sep5-in:16x16x32-out:8x8x32-s:2`), and so are a block's addition (`add-in:16x16x32`, timed as x + x)
and a cell's concatenation (`concat-in:8x8x64-n:3`, timed as k copies of one input): the network's
glue is in the table, and the prediction is the op sum plus the fitted correction, like any space.
Progressive search (PNAS) grows cells one block at a time through `expand`.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from torch import nn

from hwnas.models.layers import conv_bn
from hwnas.search.spaces import register_space
from hwnas.search.spaces.base import Decision, OpSpec, Space

OPS = ("identity", "sep3", "sep5", "sep7", "avg3", "max3", "dil3", "conv7x1")
FIELDS = ("in1", "in2", "op1", "op2")


def relu_conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def make_op(op: str, c: int, stride: int) -> nn.Module:
    """One op of a block, C -> C channels."""
    if op == "identity":
        return nn.Identity() if stride == 1 else relu_conv_bn(c, c, stride)
    if op in ("sep3", "sep5", "sep7", "dil3"):
        k, d = (3, 2) if op == "dil3" else (int(op[3:]), 1)
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, stride, d * (k // 2), dilation=d, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
    if op == "avg3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if op == "max3":
        return nn.MaxPool2d(3, stride, 1)
    if op == "conv7x1":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
                             nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False), nn.BatchNorm2d(c))
    raise ValueError(f"unknown op {op!r}")


def down(h: int, stride: int) -> int:
    return (h - 1) // stride + 1


def unused_blocks(cell: tuple) -> list[int]:
    """Indices (into the cell's states: 0 = h-2, 1 = h-1, 2 + b = block b) of the blocks no block reads."""
    read = {i for (i1, i2, _, _) in cell for i in (i1, i2)}
    return [2 + b for b in range(len(cell)) if 2 + b not in read]


class Cell(nn.Module):
    def __init__(self, cell: tuple, ops: tuple, c_pp: int, c_p: int, c: int, reduce: bool, reduce_prev: bool):
        """`cell`: per block (in1, in2, op1, op2) as indices; `ops`: the op names."""
        super().__init__()
        self.pre0 = relu_conv_bn(c_pp, c, 2 if reduce_prev else 1)
        self.pre1 = relu_conv_bn(c_p, c, 1)
        self.inputs = [(i1, i2) for i1, i2, _, _ in cell]
        self.blocks = nn.ModuleList(
            nn.ModuleList([make_op(ops[o1], c, 2 if reduce and i1 < 2 else 1),
                           make_op(ops[o2], c, 2 if reduce and i2 < 2 else 1)])
            for i1, i2, o1, o2 in cell)
        self.concat = unused_blocks(cell)

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for (i1, i2), (m1, m2) in zip(self.inputs, self.blocks):
            states.append(m1(states[i1]) + m2(states[i2]))
        out = [states[i] for i in self.concat]
        return out[0] if len(out) == 1 else torch.cat(out, 1)


class SelfAdd(nn.Module):
    """x + x: times a block's addition of two same-shaped tensors as a one-input op."""

    def forward(self, x):
        return x + x


class SelfConcat(nn.Module):
    """k copies of x along channels: times a cell's output concatenation of k blocks as a one-input op."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        return torch.cat([x] * self.k, 1)


class CellHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.act(x)), 1))


class CellNetwork(nn.Module):
    def __init__(self, stem: nn.Module, cells: list[Cell], head: nn.Module):
        super().__init__()
        self.stem, self.cells, self.head = stem, nn.ModuleList(cells), head

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)


@dataclass(frozen=True)
class CellSpaceConfig:
    input_size: int = 32
    num_classes: int = 10
    stem: int = 32           # stem channels
    channels: int = 16       # C of the first stack (doubled by each reduction cell)
    normal_cells: int = 2    # N: normal cells per stack
    stacks: int = 3
    max_blocks: int = 5      # B
    ops: tuple = OPS
    tied: bool = False       # one cell structure for normal and reduction cells (PNAS)


class CellSpace(Space):
    def __init__(self, config: CellSpaceConfig = CellSpaceConfig(), name: str = "nasnet", **overrides):
        if overrides:
            config = CellSpaceConfig(**{**config.__dict__, **overrides})
        c = self.config = config
        if c.max_blocks < 1 or c.stacks < 1 or c.normal_cells < 0 or c.channels < 1:
            raise ValueError("a cell space needs max_blocks >= 1, stacks >= 1, normal_cells >= 0, channels >= 1")
        self.name = name
        self.input_size, self.num_classes = c.input_size, c.num_classes
        self.max_blocks = c.max_blocks
        self.cell_types = ("cell",) if c.tied else ("normal", "reduce")
        decisions = [Decision("blocks", tuple(range(1, c.max_blocks + 1)))]
        block_of = [-1]
        for t in self.cell_types:
            for b in range(c.max_blocks):
                for f in FIELDS:
                    choices = tuple(range(b + 2)) if f.startswith("in") else tuple(c.ops)
                    decisions.append(Decision(f"{t}.b{b}.{f}", choices))
                    block_of.append(b)
        self._decisions = decisions
        self.block_of = np.asarray(block_of, dtype=np.int64)  # -1: not a block's decision
        # the cells in order: (type index into cell_types, reduce?, C, size of h-1, size of h-2)
        self.layout = []
        h, ch = c.input_size, c.channels
        sizes = [h, h]  # of h-2, h-1 seen by the next cell
        for s in range(c.stacks):
            kinds = [(0, False)] * c.normal_cells + ([(len(self.cell_types) - 1, True)] if s < c.stacks - 1 else [])
            for t, reduce in kinds:
                if reduce:
                    ch *= 2
                self.layout.append((t, reduce, ch, sizes[1], sizes[0]))
                sizes = [sizes[1], down(sizes[1], 2) if reduce else sizes[1]]
        h = sizes[1]
        if not self.layout:
            raise ValueError("a cell space needs at least one cell")
        self.final_size = h
        self._all, self._index = self._enumerate_ops()
        self._cell_cache: dict = {}

    def decisions(self):
        return list(self._decisions)

    # -- architectures ------------------------------------------------------------------------------------
    def blocks(self, arch) -> int:
        return int(arch[0]) + 1

    def cells_of(self, arch) -> list[tuple]:
        """Per cell type, the blocks in use as (in1, in2, op1, op2) tuples."""
        nb, B = self.blocks(arch), self.config.max_blocks
        out = []
        for t in range(len(self.cell_types)):
            base = 1 + t * B * 4
            out.append(tuple(tuple(int(v) for v in arch[base + 4 * b: base + 4 * b + 4]) for b in range(nb)))
        return out

    def canonical(self, arch) -> tuple:
        """Unused blocks zeroed; each block's two (input, op) pairs in order."""
        a = list(arch)
        B = self.config.max_blocks
        nb = int(a[0]) + 1
        for t in range(len(self.cell_types)):
            for b in range(B):
                i = 1 + t * B * 4 + 4 * b
                if b >= nb:
                    a[i:i + 4] = [0, 0, 0, 0]
                elif (a[i], a[i + 2]) > (a[i + 1], a[i + 3]):
                    a[i], a[i + 1], a[i + 2], a[i + 3] = a[i + 1], a[i], a[i + 3], a[i + 2]
        return tuple(int(v) for v in a)

    def validate(self, arch):
        return self.canonical(super().validate(arch))

    def sample(self, rng: np.random.Generator):
        return self.canonical(super().sample(rng))

    def active_mask(self, archs) -> np.ndarray:
        """[N, D] True where a decision matters (the `blocks` decision and the blocks in use)."""
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self._decisions))
        return (self.block_of[None, :] < 0) | (self.block_of[None, :] <= a[:, :1])

    def features(self, archs) -> np.ndarray:
        """[N, F] a fixed-length description for learned accuracy predictors, shared by every block position
        (as PNAS's MLP averages block embeddings) so that a predictor fit on b-block cells says something about
        (b+1)-block ones: per cell type, the mean over the blocks in use of one-hot input kinds (h-2, h-1, a
        block) and ops, for both inputs of a block; then the block count over B."""
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self._decisions))
        B, n_ops = self.config.max_blocks, len(self.config.ops)
        nb = a[:, 0] + 1
        feats = []
        for t in range(len(self.cell_types)):
            f = np.zeros((len(a), 2 * (3 + n_ops)), dtype=np.float32)
            for b in range(B):
                used = (b < nb).astype(np.float32)
                i = 1 + t * B * 4 + 4 * b
                for j in range(2):
                    kind = np.minimum(a[:, i + j], 2)
                    off = j * (3 + n_ops)
                    f[np.arange(len(a)), off + kind] += used
                    f[np.arange(len(a)), off + 3 + a[:, i + 2 + j]] += used
            feats.append(f / nb[:, None])
        feats.append((nb / B).astype(np.float32)[:, None])
        return np.concatenate(feats, axis=1)

    def mutate(self, arch, rng: np.random.Generator):
        """Change one decision that matters; a larger `blocks` gets random new blocks."""
        arch = list(self.validate(arch))
        active = np.flatnonzero(self.active_mask([arch])[0])
        movable = [int(i) for i in active if len(self._decisions[i].choices) > 1]
        i = movable[int(rng.integers(len(movable)))]
        n = len(self._decisions[i].choices)
        old = arch[i]
        arch[i] = (arch[i] + 1 + int(rng.integers(n - 1))) % n
        if i == 0 and arch[0] > old:
            for j in np.flatnonzero((self.block_of > old) & (self.block_of <= arch[0])):
                arch[j] = int(rng.integers(len(self._decisions[j].choices)))
        return self.canonical(arch)

    def _block_options(self, b: int) -> list[tuple]:
        """The canonical (in1, in2, op1, op2) choices of block b."""
        pairs = [(i, o) for i in range(b + 2) for o in range(len(self.config.ops))]
        return [(p[0], q[0], p[1], q[1]) for k, p in enumerate(pairs) for q in pairs[k:]]

    def expand(self, arch=None, limit: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """[M, D] every architecture with one more block than `arch` that keeps its blocks (with
        arch=None: every one-block architecture); with `limit`, at most that many of them, drawn without
        replacement by `rng`. Progressive search grows cells through this."""
        B, D = self.config.max_blocks, len(self._decisions)
        nb = 0 if arch is None else self.blocks(arch)
        if nb >= B:
            return np.zeros((0, D), dtype=np.int64)
        base = np.zeros(D, dtype=np.int64) if arch is None else np.asarray(self.validate(arch), dtype=np.int64)
        base[0] = nb
        opts = np.asarray(self._block_options(nb), dtype=np.int64)  # [K, 4]
        T = len(self.cell_types)
        total = len(opts) ** T
        if limit is not None and total > limit:
            picks = np.sort((rng or np.random.default_rng(0)).choice(total, size=limit, replace=False))
        else:
            picks = np.arange(total)
        combos = np.stack(np.unravel_index(picks, (len(opts),) * T), axis=1)  # [M, T]
        out = np.repeat(base[None, :], len(combos), axis=0)
        for t in range(T):
            i = 1 + t * B * 4 + 4 * nb
            out[:, i:i + 4] = opts[combos[:, t]]
        return out

    def describe(self, arch) -> dict:
        arch = self.validate(arch)
        ops = self.config.ops
        names = ["h-2", "h-1"] + [f"block{b}" for b in range(self.config.max_blocks)]
        out = {"input_size": self.input_size, "blocks": self.blocks(arch)}
        for t, cell in zip(self.cell_types, self.cells_of(arch)):
            out[t] = [{"inputs": [names[i1], names[i2]], "ops": [ops[o1], ops[o2]]} for i1, i2, o1, o2 in cell]
            out[t + "_concat"] = [names[i] for i in unused_blocks(cell)]
        return out

    # -- ops and networks -----------------------------------------------------------------------------------
    def _stem_op(self) -> OpSpec:
        c, h = self.config, self.config.input_size
        key = f"stem-in:{h}x{h}x3-out:{h}x{h}x{c.stem}-k:3-s:1"
        return OpSpec(key, (1, 3, h, h), lambda: conv_bn(3, c.stem, 3, 1))

    @staticmethod
    def _pre_op(cin: int, cout: int, h: int, stride: int) -> OpSpec:
        ho = down(h, stride)
        key = f"pre-in:{h}x{h}x{cin}-out:{ho}x{ho}x{cout}-s:{stride}"
        return OpSpec(key, (1, cin, h, h), lambda: relu_conv_bn(cin, cout, stride))

    def _block_op(self, op: str, c: int, h: int, stride: int) -> OpSpec | None:
        if op == "identity" and stride == 1:
            return None  # free: no computation
        ho = down(h, stride)
        key = f"{op}-in:{h}x{h}x{c}-out:{ho}x{ho}x{c}-s:{stride}"
        return OpSpec(key, (1, c, h, h), lambda: make_op(op, c, stride))

    @staticmethod
    def _add_op(c: int, h: int) -> OpSpec:
        return OpSpec(f"add-in:{h}x{h}x{c}", (1, c, h, h), SelfAdd)

    @staticmethod
    def _concat_op(c: int, h: int, k: int) -> OpSpec:
        return OpSpec(f"concat-in:{h}x{h}x{c}-n:{k}", (1, c, h, h), lambda: SelfConcat(k))

    def _head_op(self, cin: int, num_classes: int | None = None) -> OpSpec:
        h, nc = self.final_size, num_classes or self.config.num_classes
        key = f"cellhead-in:{h}x{h}x{cin}-classes:{nc}"
        return OpSpec(key, (1, cin, h, h), lambda: CellHead(cin, nc))

    def _cell_ops(self, pos: int, cell: tuple, c_pp: int, c_p: int) -> list[OpSpec]:
        t, reduce, c, h, h_pp = self.layout[pos]
        reduce_prev = h_pp != h
        specs = [self._pre_op(c_pp, c, h_pp, 2 if reduce_prev else 1), self._pre_op(c_p, c, h, 1)]
        ho = down(h, 2) if reduce else h
        for i1, i2, o1, o2 in cell:
            for i, o in ((i1, o1), (i2, o2)):
                stride = 2 if reduce and i < 2 else 1
                spec = self._block_op(self.config.ops[o], c, h if i < 2 else ho, stride)
                if spec is not None:
                    specs.append(spec)
            specs.append(self._add_op(c, ho))
        k = len(unused_blocks(cell))
        if k > 1:
            specs.append(self._concat_op(c, ho, k))
        return specs

    def ops(self, arch, num_classes: int | None = None) -> list[OpSpec]:
        arch = self.validate(arch)
        cells = self.cells_of(arch)
        specs = [self._stem_op()]
        c_pp = c_p = self.config.stem
        for pos, (t, _, c, _, _) in enumerate(self.layout):
            specs += self._cell_ops(pos, cells[t], c_pp, c_p)
            c_pp, c_p = c_p, c * len(unused_blocks(cells[t]))
        specs.append(self._head_op(c_p, num_classes))
        return specs

    def build(self, arch, num_classes: int | None = None) -> nn.Module:
        arch = self.validate(arch)
        cells = self.cells_of(arch)
        c_pp = c_p = self.config.stem
        modules = []
        for pos, (t, reduce, c, h, h_pp) in enumerate(self.layout):
            reduce_prev = h_pp != h
            modules.append(Cell(cells[t], self.config.ops, c_pp, c_p, c, reduce, reduce_prev))
            c_pp, c_p = c_p, c * len(modules[-1].concat)
        return CellNetwork(conv_bn(3, self.config.stem, 3, 1), modules,
                           CellHead(c_p, num_classes or self.config.num_classes))

    # -- the distinct ops and their lookup -----------------------------------------------------------------
    def _enumerate_ops(self):
        """Every op any architecture can contain: per cell position, the pre-processing convs for every
        possible input width (1..B concatenated blocks of the cells before) and every op at both strides."""
        c, B = self.config, self.config.max_blocks
        all_ops: list[OpSpec] = []
        index: dict[str, int] = {}

        def add(spec):
            if spec is not None and spec.key not in index:
                index[spec.key] = len(all_ops)
                all_ops.append(spec)

        add(self._stem_op())
        widths = [[c.stem]]  # possible output widths of the stem and of each cell
        for pos, (t, reduce, ch, h, h_pp) in enumerate(self.layout):
            reduce_prev = h_pp != h
            for cin in widths[-2] if len(widths) > 1 else widths[-1]:
                add(self._pre_op(cin, ch, h_pp, 2 if reduce_prev else 1))
            for cin in widths[-1]:
                add(self._pre_op(cin, ch, h, 1))
            ho = down(h, 2) if reduce else h
            for op in c.ops:
                add(self._block_op(op, ch, ho, 1))
                if reduce:
                    add(self._block_op(op, ch, h, 2))
            add(self._add_op(ch, ho))
            for k in range(2, B + 1):
                add(self._concat_op(ch, ho, k))
            widths.append([ch * n for n in range(1, B + 1)])
        for cin in widths[-1]:
            add(self._head_op(cin))
        return all_ops, index

    def all_ops(self) -> list[OpSpec]:
        return list(self._all)

    def _cell_indices(self, pos: int, cell: tuple, c_pp: int, c_p: int) -> tuple:
        key = (pos, cell, c_pp, c_p)
        if key not in self._cell_cache:
            if len(self._cell_cache) > 200_000:
                self._cell_cache.clear()
            self._cell_cache[key] = tuple(self._index[s.key] for s in self._cell_ops(pos, cell, c_pp, c_p))
        return self._cell_cache[key]

    def op_indices(self, archs) -> np.ndarray:
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self._decisions))
        stem = self._index[self._stem_op().key]
        rows = []
        for arch in a:
            cells = self.cells_of(self.canonical(arch))
            idx = [stem]
            c_pp = c_p = self.config.stem
            for pos, (t, _, ch, _, _) in enumerate(self.layout):
                idx += self._cell_indices(pos, cells[t], c_pp, c_p)
                c_pp, c_p = c_p, ch * len(unused_blocks(cells[t]))
            idx.append(self._index[self._head_op(c_p).key])
            rows.append(idx)
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out


@register_space("nasnet")
def nasnet(**overrides) -> CellSpace:
    """NASNet's space at 32x32 (CIFAR-sized; digits upsampled), 10 classes: a normal and a reduction cell of
    up to 5 blocks, 2 normal cells per stack, 3 stacks, C = 16."""
    return CellSpace(CellSpaceConfig(), name="nasnet", **overrides)


@register_space("pnas")
def pnas(**overrides) -> CellSpace:
    """The PNAS form of the cell space: one cell structure for normal and reduction cells."""
    return CellSpace(CellSpaceConfig(tied=True), name="pnas", **overrides)
