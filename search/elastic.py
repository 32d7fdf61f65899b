"""An elastic supernet of a MnasNet space (the Once-for-All idea, Cai et al. 2020): one set of weights of the
largest size at every layer position, of which every architecture of the space is a slice.

    net = ElasticMnasNet(space, num_classes=10)
    logits = net(x, arch)              # the network of `arch`, run through the shared weights (trainable)
    model = net.extract(arch)          # the same network as space.build(arch), weights copied out

What is shared, per layer position (block b, layer j):
  width     output channels are the first `cout` of the largest; input channels the first `cin`
  kernel    a 3x3 kernel is the centre of the 5x5 one (OFA adds a learned transform; a plain centre crop keeps
            the extracted network's weights exactly the supernet's)
  op        mbconv3 and mbconv6 share one branch (expansion 3 uses the first 3*cin of 6*cin hidden
            channels); dwconv and mbconv1 build the same network (expansion 1), so they share a branch of their
            own; the regular conv has its own weights
  se        the SE of a branch, its hidden width sliced to what the layer's input width gives
  skip      a pooling shortcut's 1x1 projection, sliced as any 1x1 conv
  layers    a block with fewer layers uses its first ones
BatchNorm statistics are kept at the largest size and sliced too; they belong to no single path, so the
estimator recalibrates them on the extracted network before it is evaluated (as OFA and SPOS do).

`extract(arch)` copies the slices into the module tree `space.build(arch)` makes, so the extracted network is
the very one a latency table times, exports and trains; tests check it computes what `forward(x, arch)` does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.models.layers import se_width
from hwnas.search.spaces.mnasnet import effective_skip

EXPAND = {"dwconv": 1, "mbconv1": 1, "mbconv3": 3, "mbconv6": 6}
# per-pixel cost of an op at cin = cout: e1 ~ c^2, e3 ~ 6c^2, a 3x3 conv ~ 9c^2, e6 ~ 12c^2
OP_COST = {"dwconv": 1, "mbconv1": 1, "mbconv3": 6, "conv": 9, "mbconv6": 12}


def _crop(w: torch.Tensor, k: int) -> torch.Tensor:
    """The centre k x k of a kernel."""
    kmax = w.shape[-1]
    if k == kmax:
        return w
    s = (kmax - k) // 2
    return w[..., s:s + k, s:s + k]


class ElasticBN(nn.Module):
    """BatchNorm of the largest width; a narrower layer uses (and, training, updates) the first channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum, self.eps = 0.1, 1e-5

    def forward(self, x):
        c = x.shape[1]
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, self.momentum, self.eps)

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        c = bn.num_features
        bn.weight.copy_(self.weight[:c])
        bn.bias.copy_(self.bias[:c])
        bn.running_mean.copy_(self.running_mean[:c])
        bn.running_var.copy_(self.running_var[:c])


class ElasticConv(nn.Module):
    """A conv (+ BN) of the largest shape; `groups="depthwise"` makes it depthwise."""

    def __init__(self, cin: int, cout: int, k: int, depthwise: bool = False):
        super().__init__()
        self.depthwise = depthwise
        shape = (cout, 1, k, k) if depthwise else (cout, cin, k, k)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = ElasticBN(cout)

    def slice(self, cin: int, cout: int, k: int) -> torch.Tensor:
        w = self.weight[:cout] if self.depthwise else self.weight[:cout, :cin]
        return _crop(w, k)

    def forward(self, x, cout: int, k: int = 1, stride: int = 1, act: bool = True):
        cin = x.shape[1]
        w = self.slice(cin, cout, k)
        y = F.conv2d(x, w, None, stride, k // 2, 1, cin if self.depthwise else 1)
        y = self.bn(y)
        return F.relu(y) if act else y

    def copy_to(self, seq: nn.Sequential, k: int) -> None:
        """Into conv_bn's Sequential(conv, bn[, act])."""
        conv, bn = seq[0], seq[1]
        conv.weight.copy_(self.slice(conv.in_channels, conv.out_channels, k))
        self.bn.copy_to(bn)


class ElasticSE(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x, hidden: int):
        c = x.shape[1]
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(F.conv2d(s, self.reduce.weight[:hidden, :c], self.reduce.bias[:hidden]))
        s = F.conv2d(s, self.expand.weight[:c, :hidden], self.expand.bias[:c])
        return x * torch.sigmoid(s)

    def copy_to(self, se) -> None:
        h, c = se.reduce.out_channels, se.reduce.in_channels
        se.reduce.weight.copy_(self.reduce.weight[:h, :c])
        se.reduce.bias.copy_(self.reduce.bias[:h])
        se.expand.weight.copy_(self.expand.weight[:c, :h])
        se.expand.bias.copy_(self.expand.bias[:c])


class ElasticLayer(nn.Module):
    """Every choice of one layer position: a regular conv branch, an expansion-1 branch and an expansion-3/6
    branch, each with its SE, plus the pooling shortcut's projection."""

    def __init__(self, cin: int, cout: int, kmax: int, se_max: float, ops):
        super().__init__()
        se_hidden = se_width(cin, se_max)
        self.branches = nn.ModuleDict()
        if "conv" in ops:
            self.branches["conv"] = nn.ModuleDict({"conv": ElasticConv(cin, cout, kmax)})
            if se_hidden:
                self.branches["conv"]["se"] = ElasticSE(cout, se_hidden)
        for name, e in (("e1", 1), ("e36", max([EXPAND[o] for o in ops if EXPAND.get(o, 0) > 1], default=0))):
            if not e or (name == "e1" and not any(EXPAND.get(o) == 1 for o in ops)):
                continue
            hidden = cin * e
            b = nn.ModuleDict({"dw": ElasticConv(hidden, hidden, kmax, depthwise=True),
                               "project": ElasticConv(hidden, cout, 1)})
            if e > 1:
                b["expand"] = ElasticConv(cin, hidden, 1)
            if se_hidden:
                b["se"] = ElasticSE(hidden, se_hidden)
            self.branches[name] = b
        self.proj = ElasticConv(cin, cout, 1)

    @staticmethod
    def branch_of(op: str) -> str:
        return "conv" if op == "conv" else ("e1" if EXPAND[op] == 1 else "e36")

    def body(self, x, op, cout, k, stride, se):
        cin = x.shape[1]
        b = self.branches[self.branch_of(op)]
        hid_se = se_width(cin, se)
        if op == "conv":
            y = b["conv"](x, cout, k, stride)
            return b["se"](y, hid_se) if hid_se else y
        e = EXPAND[op]
        h = b["expand"](x, cin * e) if e > 1 else x
        h = b["dw"](h, cin * e, k, stride)
        if hid_se:
            h = b["se"](h, hid_se)
        return b["project"](h, cout, act=False)

    def forward(self, x, op, cout, k, stride, se, skip):
        cin = x.shape[1]
        y = self.body(x, op, cout, k, stride, se)
        skip = effective_skip(skip, cin, cout, stride)
        if skip == "identity":
            return x + y
        if skip == "pool":
            s = F.avg_pool2d(x, stride, stride, ceil_mode=True) if stride > 1 else x
            if cin != cout:
                s = self.proj(s, cout, act=False)
            return s + y
        return y

    def copy_to(self, layer, op, k) -> None:
        """Into a SearchLayer of the space built with these choices."""
        b = self.branches[self.branch_of(op)]
        mods = list(layer.body)
        if op == "conv":
            b["conv"].copy_to(mods[0], k)
            if len(mods) > 1:
                b["se"].copy_to(mods[1])
        else:
            i = 0
            if EXPAND[op] > 1:
                b["expand"].copy_to(mods[0], 1)
                i = 1
            b["dw"].copy_to(mods[i], k)
            if len(mods) == i + 3:
                b["se"].copy_to(mods[i + 1])
            b["project"].copy_to(mods[-1], 1)
        if layer.skip == "pool":
            proj = [m for m in layer.shortcut if isinstance(m, nn.Sequential)]
            if proj:
                self.proj.copy_to(proj[0], 1)


class ElasticMnasNet(nn.Module):
    def __init__(self, space, num_classes: int):
        super().__init__()
        c = space.config
        self.space, self.num_classes = space, int(num_classes)
        self.stem = ElasticConv(3, c.stem, 3)
        kmax, se_max = max(c.kernels), max(c.se_ratios)
        self.blocks = nn.ModuleList()
        cin = c.stem
        for b in range(len(c.blocks)):
            cout = space.channels[b][-1]
            layers = [ElasticLayer(cin if j == 0 else cout, cout, kmax, se_max, c.ops)
                      for j in range(max(space.layers[b]))]
            self.blocks.append(nn.ModuleList(layers))
            cin = cout
        self.head = ElasticConv(cin, c.head, 1)
        self.classifier = nn.Linear(c.head, self.num_classes)

    def settings(self, arch):
        """Per block: (op, kernel, se, skip, cout, layers, stride)."""
        arch = self.space.validate(arch)
        out = []
        for b in range(len(self.space.config.blocks)):
            op, k, se, skip, w, n = self.space._block_choices(arch, b)
            out.append((op, k, se, skip, self.space.channels[b][w], n, self.space.config.blocks[b][2]))
        return out

    def run_block(self, b: int, x, setting):
        """Block `b` alone, with `setting` (one of settings()'s), on its input `x`."""
        op, k, se, skip, cout, n, stride = setting
        for j in range(n):
            x = self.blocks[b][j](x, op, cout, k, stride if j == 0 else 1, se, skip)
        return x

    def features(self, x, arch) -> list:
        """[the stem's output, then each block's] of the network of `arch`."""
        out = [self.stem(x, self.space.config.stem, 3, 2)]
        for b, setting in enumerate(self.settings(arch)):
            out.append(self.run_block(b, out[-1], setting))
        return out

    def forward(self, x, arch):
        x = self.features(x, arch)[-1]
        x = self.head(x, self.space.config.head)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    @torch.no_grad()
    def extract(self, arch) -> nn.Module:
        """space.build(arch) holding this supernet's weights for `arch` (BN statistics included)."""
        model = self.space.build(arch, num_classes=self.num_classes)
        mods = list(model)
        self.stem.copy_to(mods[0], 3)
        i = 1
        for layers, (op, k, _se, _skip, _cout, n, _s) in zip(self.blocks, self.settings(arch)):
            for j in range(n):
                layers[j].copy_to(mods[i], op, k)
                i += 1
        head = mods[-1]
        self.head.copy_to(head.features, 1)
        head.classifier.weight.copy_(self.classifier.weight)
        head.classifier.bias.copy_(self.classifier.bias)
        return model.eval()

    def largest(self) -> tuple:
        """The architecture of most capacity: the widest expansion, largest kernel, SE, widest width, most
        layers (identity skips)."""
        return self._extreme(max)

    def smallest(self) -> tuple:
        return self._extreme(min)

    def _extreme(self, pick) -> tuple:
        c = self.space.config
        arch = []
        for _b in range(len(c.blocks)):
            op = c.ops.index(pick(c.ops, key=OP_COST.__getitem__))
            k = c.kernels.index(pick(c.kernels))
            se = c.se_ratios.index(pick(c.se_ratios))
            skip = c.skips.index("identity") if "identity" in c.skips else 0
            w = c.width_mults.index(pick(c.width_mults))
            n = c.layer_deltas.index(pick(c.layer_deltas))
            arch += [op, k, se, skip, w, n]
        return self.space.validate(arch)
