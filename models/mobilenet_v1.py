"""MobileNetV1 (Howard et al., 2017): a 3x3 conv then 13 depthwise-separable blocks (dw 3x3 + BN +
ReLU, pw 1x1 + BN + ReLU), global pool, fully connected. `width_mult` is the paper's alpha; channels
are rounded to multiples of 8."""
from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import conv_bn, make_divisible

# (output channels, stride of the depthwise conv), paper Table 1. The paper's table lists the last
# depthwise conv as s2 on a 7x7 map with a 7x7 output: it is stride 1 in the released model.
_CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.001, in_chans: int = 3):
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers = [conv_bn(in_chans, c, 3, 2)]
        for cout, stride in _CFG:
            cout = make_divisible(cout * width_mult)
            layers += [conv_bn(c, c, 3, stride, groups=c), conv_bn(c, cout, 1)]
            c = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


# Paper Table 8: 1.0 MobileNet-224, 569M mult-adds, 4.2M params.
@register_model("mobilenet_v1", input_size=224, paper_params=4.2e6, paper_macs=569e6, width_mult=True,
                family="mobilenet_v1")
def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0, **kw):
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, **kw)
