"""MobileNetV3 (Howard et al., ICCV 2019): Large and Small.

bneck block: [1x1 expand + BN + act] -> kxk depthwise + BN + act -> [SE] -> 1x1 project + BN, identity
shortcut (plain `+`) when stride 1 and in == out. act is ReLU or hard-swish per the paper's Tables 1-2;
SE = pool -> 1x1 conv (expanded/4, rounded to 8) -> ReLU -> 1x1 conv -> hard-sigmoid -> multiply.
Head: 1x1 conv + BN + h-swish, pool, 1x1 conv (no BN) + h-swish (written as Linear on the pooled
vector, the same weights), dropout, classifier. `width_mult` scales every layer (multiples of 8)
except the last hidden layer, which only grows for multipliers > 1.
"""
from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import InvertedResidual, make_divisible
from hwnas.models.layers import conv_bn as _conv_bn

# kernel, expanded, out, SE, activation ("RE"/"HS"), stride  (paper Tables 1 and 2)
_LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]


_ACTS = {"RE": nn.ReLU, "HS": nn.Hardswish}


def conv_bn(cin, cout, k, stride=1, groups=1, act="RE"):
    return _conv_bn(cin, cout, k, stride, groups, act=_ACTS[act])


class MobileNetV3(nn.Module):
    def __init__(self, cfg, last: int, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 in_chans: int = 3):
        super().__init__()
        c = make_divisible(16 * width_mult)
        layers = [conv_bn(in_chans, c, 3, 2, act="HS")]
        for k, exp, out, se, act, s in cfg:
            hidden, out = make_divisible(exp * width_mult), make_divisible(out * width_mult)
            layers.append(InvertedResidual(c, hidden, out, k, s, act=_ACTS[act],
                                           se=make_divisible(hidden / 4) if se else 0, se_gate=nn.Hardsigmoid))
            c = out
        final = make_divisible(cfg[-1][1] * width_mult)  # 960 (Large) / 576 (Small)
        layers.append(conv_bn(c, final, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        last = make_divisible(last * width_mult) if width_mult > 1.0 else last
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(final, last), nn.Hardswish(),
                                  nn.Dropout(dropout))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


# Paper Table 3: Large 1.0: 219M MAdds, 5.4M params; Small 1.0: 56M MAdds, 2.5M params.
# The Small table (Table 2) also lists SE on the final 1x1 conv (576); the authors' released model
# and the reference implementations have none there and the paper's 2.5M/56M match that, so none here.
@register_model("mobilenet_v3_large", input_size=224, paper_params=5.4e6, paper_macs=219e6, width_mult=True,
                family="mobilenet_v3")
def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MobileNetV3(_LARGE, 1280, num_classes=num_classes, width_mult=width_mult, **kw)


@register_model("mobilenet_v3_small", input_size=224, paper_params=2.5e6, paper_macs=56e6, width_mult=True,
                family="mobilenet_v3")
def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MobileNetV3(_SMALL, 1024, num_classes=num_classes, width_mult=width_mult, **kw)
