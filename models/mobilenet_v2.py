"""MobileNetV2 (Sandler et al., CVPR 2018): inverted residuals with linear bottlenecks.

Block: 1x1 expand (t x) + BN + ReLU6 -> 3x3 depthwise + BN + ReLU6 -> 1x1 project + BN (linear);
identity shortcut (plain `+`) when stride 1 and in == out. `width_mult` scales every layer (rounded to
multiples of 8) except the last 1280-channel conv, which only grows for multipliers > 1, as in the paper.
"""
from functools import partial

from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import InvertedResidual, make_divisible
from hwnas.models.layers import conv_bn as _conv_bn

conv_bn = partial(_conv_bn, act=nn.ReLU6)

# expansion t, output channels c, repeats n, first stride s (paper Table 2)
_CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, in_chans: int = 3):
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers = [conv_bn(in_chans, c, 3, 2)]
        for t, cout, n, s in _CFG:
            cout = make_divisible(cout * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, c * t, cout, 3, s if i == 0 else 1, act=nn.ReLU6))
                c = cout
        last = make_divisible(1280 * max(1.0, width_mult))
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


# Paper Table 4: 300M MACs and "3.4M" params. The layers of the paper's Table 2 hold 3.50M parameters
# (3.47M without the BN scales/shifts), so "3.4M" is 3% off for no architectural reason (the same table's
# 1.4x entry, 6.9M, is likewise far from the 6.1M its layers give). The registered params figure is the
# reference implementation's 3.5M (tag params-from-ref); the MACs figure is the paper's.
@register_model("mobilenet_v2", input_size=224, paper_params=3.5e6, paper_macs=300e6, width_mult=True,
                family="mobilenet_v2", tags=("params-from-ref",))
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, **kw)
