"""ShuffleNet V1 (Zhang et al., CVPR 2018) and V2 (Ma et al., ECCV 2018).

Channel shuffle is reshape -> transpose -> reshape (exports as plain ONNX Reshape/Transpose).
Torch-Pruning 1.6 cannot prune these networks (tag "tp-unsupported"): its reshape index mapping does
not model a channel shuffle (V2: ZeroDivisionError while building the graph; V1: it also prunes the
3-group 1x1 convs to widths not divisible by 3). NetAdapt must refuse them or use its own grouping.

V1 unit: 1x1 group conv (bottleneck = out/4) + BN + ReLU -> shuffle -> 3x3 depthwise + BN -> 1x1 group
conv + BN, then `+` input and ReLU; a stride-2 unit instead concatenates a 3x3 stride-2 average pool of
its input (its branch produces out - in channels). The first 1x1 of stage 2 is not grouped (24 inputs).
Stage widths for g=3 are 240/480/960 times the scale factor s ("ShuffleNet s x"), `width_mult` here;
channels are rounded to multiples of lcm(8, 4g) so that every group conv divides evenly.

V2 unit: stride 1 splits the channels in half, passes one half through, runs the other through
1x1 conv + BN + ReLU -> 3x3 depthwise + BN -> 1x1 conv + BN + ReLU, concatenates, shuffles (g=2);
stride 2 runs two branches on the whole input (depthwise s2 + BN -> 1x1 + BN + ReLU, and the branch
above with a stride-2 depthwise) and concatenates them. The named variants x0.5..x2.0 are the paper's
channel tables; `width_mult` further scales a variant's stage widths (multiples of 8).
"""
import math

import torch
from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import conv_bn, make_divisible


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleV1Unit(nn.Module):
    def __init__(self, cin, cout, stride, groups, group_first=True):
        super().__init__()
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        self.branch = nn.Sequential(
            conv_bn(cin, mid, 1, groups=groups if group_first else 1),
            ChannelShuffle(groups),
            conv_bn(mid, mid, 3, stride, groups=mid, act=False),
            conv_bn(mid, branch_out, 1, groups=groups, act=False))
        self.stride = stride
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.act = nn.ReLU()

    def forward(self, x):
        if self.pool is not None:
            return self.act(torch.cat([self.pool(x), self.branch(x)], dim=1))
        return self.act(x + self.branch(x))


class ShuffleNetV1(nn.Module):
    _WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # stage-2 width for 1x, paper Table 1

    def __init__(self, groups: int = 3, num_classes: int = 1000, width_mult: float = 1.0, repeats=(4, 8, 4),
                 in_chans: int = 3):
        super().__init__()
        div = 8 * 4 * groups // math.gcd(8, 4 * groups)
        c = 24
        layers = [conv_bn(in_chans, c, 3, 2), nn.MaxPool2d(3, 2, 1)]
        for i, n in enumerate(repeats):
            cout = make_divisible(self._WIDTHS[groups] * 2 ** i * width_mult, div)
            for j in range(n):
                layers.append(ShuffleV1Unit(c, cout, 2 if j == 0 else 1, groups, group_first=i > 0 or j > 0))
                c = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


class ShuffleV2Unit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        bin_ = cin if stride == 2 else cin // 2
        self.branch = nn.Sequential(
            conv_bn(bin_, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=False),
            conv_bn(half, half, 1))
        self.proj = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=False),
                                  conv_bn(cin, half, 1)) if stride == 2 else None
        self.shuffle = ChannelShuffle(2)

    def forward(self, x):
        if self.proj is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch(b)], dim=1)
        else:
            out = torch.cat([self.proj(x), self.branch(x)], dim=1)
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths, last: int, num_classes: int = 1000, width_mult: float = 1.0, repeats=(4, 8, 4),
                 in_chans: int = 3):
        super().__init__()
        c = 24
        layers = [conv_bn(in_chans, c, 3, 2), nn.MaxPool2d(3, 2, 1)]
        for w, n in zip(widths, repeats):
            cout = w if width_mult == 1.0 else make_divisible(w * width_mult, 8)
            for j in range(n):
                layers.append(ShuffleV2Unit(c, cout, 2 if j == 0 else 1))
                c = cout
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


# ShuffleNet V1: the paper gives complexity only (Table 1: 137 MFLOPs for 1x, g=3, FLOPs meaning
# mult-adds; Table 2 rounds the 1x row to 140); no parameter count: the registered 1.9M is the
# authors' released model's figure (tag params-from-ref).
@register_model("shufflenet_v1", input_size=224, paper_params=1.9e6, paper_macs=137e6, width_mult=True,
                family="shufflenet", tags=("params-from-ref", "tp-unsupported"))
def shufflenet_v1(num_classes: int = 1000, width_mult: float = 1.0, groups: int = 3, **kw):
    return ShuffleNetV1(groups, num_classes=num_classes, width_mult=width_mult, **kw)


# ShuffleNet V2: paper Table 5, FLOPs (mult-adds) and "# of Weights" per variant. The weights are given
# to two significant figures only: x0.5's 1,366,792 rounds to the paper's 1.4M but is 2.4% below it, so
# its params are checked at the paper's precision (tag params-rounded) rather than within 2%.
_V2 = {"x0_5": ((48, 96, 192), 1024, 1.4e6, 41e6), "x1_0": ((116, 232, 464), 1024, 2.3e6, 146e6),
       "x1_5": ((176, 352, 704), 1024, 3.5e6, 299e6), "x2_0": ((244, 488, 976), 2048, 7.4e6, 591e6)}


def _register_v2(variant):
    widths, last, params, macs = _V2[variant]

    @register_model(f"shufflenet_v2_{variant}", input_size=224, paper_params=params, paper_macs=macs,
                    width_mult=True, family="shufflenet_v2", tags=(("params-rounded",) if variant == "x0_5" else ()) + ("tp-unsupported",))
    def build(num_classes: int = 1000, width_mult: float = 1.0, **kw):
        return ShuffleNetV2(widths, last, num_classes=num_classes, width_mult=width_mult, **kw)
    build.__name__ = f"shufflenet_v2_{variant}"
    return build


shufflenet_v2_x0_5 = _register_v2("x0_5")
shufflenet_v2_x1_0 = _register_v2("x1_0")
shufflenet_v2_x1_5 = _register_v2("x1_5")
shufflenet_v2_x2_0 = _register_v2("x2_0")
