"""Xception (Chollet, CVPR 2017), input 299x299.

Separable convolution = depthwise 3x3 then pointwise 1x1, with no BN or non-linearity in between
(the paper's finding), followed by BN. Entry flow: two plain convs and three residual blocks
(128, 256, 728) ending in a stride-2 max pool with a 1x1 stride-2 conv shortcut; middle flow: eight
residual blocks of three ReLU-SepConv(728); exit flow: one more downsampling block (728, 1024), then
SepConv 1536, SepConv 2048, global pool, fully connected.
"""
from torch import nn

from hwnas.models.registry import register_model


class SeparableConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(x)))


class Block(nn.Module):
    """[ReLU-SepConv] x len(chans), optional stride-2 max pool; shortcut identity or 1x1 conv + BN."""

    def __init__(self, cin, chans, downsample: bool, relu_first: bool = True):
        super().__init__()
        layers, c = [], cin
        for i, cout in enumerate(chans):
            if i > 0 or relu_first:
                layers.append(nn.ReLU())
            layers.append(SeparableConv(c, cout))
            c = cout
        if downsample:
            layers.append(nn.MaxPool2d(3, 2, 1))
            self.shortcut = nn.Sequential(nn.Conv2d(cin, c, 1, 2, bias=False), nn.BatchNorm2d(c))
        else:
            self.shortcut = nn.Identity()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Xception(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.entry = nn.Sequential(
            Block(64, (128, 128), True, relu_first=False),
            Block(128, (256, 256), True),
            Block(256, (728, 728), True))
        self.middle = nn.Sequential(*[Block(728, (728, 728, 728), False) for _ in range(8)])
        self.exit = nn.Sequential(
            Block(728, (728, 1024), True),
            SeparableConv(1024, 1536), nn.ReLU(),
            SeparableConv(1536, 2048), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        return self.fc(self.exit(self.middle(self.entry(self.stem(x)))))


# Params: the paper's Table 3 (22,855,952). MACs: the paper gives none; 8.4G is the widely cited
# figure for the reference (Keras) model at 299x299.
@register_model("xception", input_size=299, paper_params=22_855_952, paper_macs=8.4e9, family="xception",
                tags=("macs-from-ref",))
def xception(num_classes: int = 1000, **kw):
    return Xception(num_classes=num_classes, **kw)
