"""MnasNet (Tan et al., CVPR 2019): the searched mobile networks MnasNet-A1 (with SE) and -B1 (without).

MBConv block: [1x1 expand (e x) + BN + ReLU] -> kxk depthwise + BN + ReLU -> [SE] -> 1x1 project + BN;
identity shortcut (plain `+`) when stride 1 and in == out, except blocks marked no-skip. SE (A1):
pool -> 1x1 conv (block input channels x 0.25) -> ReLU -> 1x1 conv -> sigmoid -> multiply.
`width_mult` (the paper's depth multiplier) scales every layer (multiples of 8) except the 1280-channel
head, which only grows for multipliers > 1.
"""
from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import InvertedResidual, conv_bn, make_divisible, se_width

# repeats, kernel, first stride, expansion, out channels, SE ratio, skip  (paper Fig. 7 / released code)
_A1 = [(1, 3, 1, 1, 16, 0.0, False), (2, 3, 2, 6, 24, 0.0, True), (3, 5, 2, 3, 40, 0.25, True),
       (4, 3, 2, 6, 80, 0.0, True), (2, 3, 1, 6, 112, 0.25, True), (3, 5, 2, 6, 160, 0.25, True),
       (1, 3, 1, 6, 320, 0.0, True)]
_B1 = [(1, 3, 1, 1, 16, 0.0, False), (3, 3, 2, 3, 24, 0.0, True), (3, 5, 2, 3, 40, 0.0, True),
       (3, 5, 2, 6, 80, 0.0, True), (2, 3, 1, 6, 96, 0.0, True), (4, 5, 2, 6, 192, 0.0, True),
       (1, 3, 1, 6, 320, 0.0, False)]


class MnasNet(nn.Module):
    def __init__(self, cfg, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, in_chans: int = 3):
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers = [conv_bn(in_chans, c, 3, 2)]
        for n, k, s, e, cout, se, skip in cfg:
            cout = make_divisible(cout * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, c * e, cout, k, s if i == 0 else 1, se=se_width(c, se), skip=skip))
                c = cout
        last = make_divisible(1280 * max(1.0, width_mult))
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


# Paper Table 1: MnasNet-A1 3.9M params / 312M MACs; MnasNet-B1 4.4M / 315M.
@register_model("mnasnet_a1", input_size=224, paper_params=3.9e6, paper_macs=312e6, width_mult=True,
                family="mnasnet")
def mnasnet_a1(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MnasNet(_A1, num_classes=num_classes, width_mult=width_mult, **kw)


@register_model("mnasnet_b1", input_size=224, paper_params=4.4e6, paper_macs=315e6, width_mult=True,
                family="mnasnet")
def mnasnet_b1(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MnasNet(_B1, num_classes=num_classes, width_mult=width_mult, **kw)
