"""EfficientNet (Tan & Le, ICML 2019): B0 and its compound-scaled B1-B3.

MBConv block with SE and swish: [1x1 expand (e x) + BN + SiLU] -> kxk depthwise + BN + SiLU ->
SE (pool -> 1x1 conv (block input channels x 0.25) -> SiLU -> 1x1 conv -> sigmoid -> multiply) ->
1x1 project + BN; identity shortcut (plain `+`) when stride 1 and in == out. Scaling: channels x width
coefficient rounded to multiples of 8 (never below 90%), repeats ceil(depth coefficient x n), input
resolution per variant. `width_mult` multiplies the variant's width coefficient, `depth_mult` its depth
coefficient (compound scaling, `hwnas scale`). Stochastic depth
(a training-time regulariser, identity at inference) is not included.
"""
import math

from functools import partial

from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import InvertedResidual, make_divisible, se_width
from hwnas.models.layers import conv_bn as _conv_bn

conv_bn = partial(_conv_bn, act=nn.SiLU)

# repeats, kernel, first stride, expansion, out channels  (paper Table 1, B0); SE ratio 0.25 everywhere
_B0 = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
       (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# variant: (width coefficient, depth coefficient, resolution, dropout)
_VARIANTS = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
             "b3": (1.2, 1.4, 300, 0.3)}


class EfficientNet(nn.Module):
    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                 in_chans: int = 3):
        super().__init__()
        c = make_divisible(32 * width)
        layers = [conv_bn(in_chans, c, 3, 2)]
        for n, k, s, e, cout in _B0:
            cout = make_divisible(cout * width)
            for i in range(int(math.ceil(depth * n))):
                layers.append(InvertedResidual(c, c * e, cout, k, s if i == 0 else 1, act=nn.SiLU,
                                               se=se_width(c, 0.25), se_act=nn.SiLU))
                c = cout
        last = make_divisible(1280 * width)
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


def _build(variant, num_classes, width_mult, depth_mult=1.0, **kw):
    w, d, _, dropout = _VARIANTS[variant]
    kw.setdefault("dropout", dropout)
    return EfficientNet(w * width_mult, d * depth_mult, num_classes=num_classes, **kw)


# Paper Table 2: params / FLOPs (which the paper counts as multiply-adds):
# B0 5.3M / 0.39B, B1 7.8M / 0.70B, B2 9.2M / 1.0B, B3 12M / 1.8B.
@register_model("efficientnet_b0", input_size=224, paper_params=5.3e6, paper_macs=0.39e9, width_mult=True,
                family="efficientnet")
def efficientnet_b0(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return _build("b0", num_classes, width_mult, **kw)


@register_model("efficientnet_b1", input_size=240, paper_params=7.8e6, paper_macs=0.70e9, width_mult=True,
                family="efficientnet")
def efficientnet_b1(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return _build("b1", num_classes, width_mult, **kw)


@register_model("efficientnet_b2", input_size=260, paper_params=9.2e6, paper_macs=1.0e9, width_mult=True,
                family="efficientnet")
def efficientnet_b2(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return _build("b2", num_classes, width_mult, **kw)


@register_model("efficientnet_b3", input_size=300, paper_params=12e6, paper_macs=1.8e9, width_mult=True,
                family="efficientnet")
def efficientnet_b3(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return _build("b3", num_classes, width_mult, **kw)
