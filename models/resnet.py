"""ResNet (He et al., CVPR 2016): ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks).

Downsampling follows the paper and its released Caffe models: in a bottleneck, the first 1x1
convolution carries the stride (`stride_in_3x3=True` gives the later "v1.5" variant, which moves it
to the 3x3 conv: same parameters, ~6% more MACs). Shortcuts that change shape are 1x1 conv + BN
(option B). The residual add is a plain `+`.
"""
from functools import partial

from torch import nn

from hwnas.models.registry import register_model
from hwnas.models.layers import conv_bn as _conv_bn


conv_bn = partial(_conv_bn, act=None)  # activations are applied after the residual sum


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride=1, **_):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv_bn(cin, width, 3, stride)
        self.act1 = nn.ReLU()
        self.conv2 = conv_bn(width, cout, 3)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.act2 = nn.ReLU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride=1, stride_in_3x3=False):
        super().__init__()
        cout = width * self.expansion
        s1, s3 = (1, stride) if stride_in_3x3 else (stride, 1)
        self.conv1 = conv_bn(cin, width, 1, s1)
        self.act1 = nn.ReLU()
        self.conv2 = conv_bn(width, width, 3, s3)
        self.act2 = nn.ReLU()
        self.conv3 = conv_bn(width, cout, 1)
        self.se = self.make_se(cout)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.act3 = nn.ReLU()

    def make_se(self, channels):  # overridden by SE-ResNet (models/senet.py)
        return nn.Identity()

    def forward(self, x):
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(self.se(y) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes: int = 1000, stride_in_3x3: bool = False, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_chans, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(cin, width, stride, stride_in_3x3=stride_in_3x3))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


# MACs: the paper's Table 1 ("FLOPs", which there means multiply-adds): 1.8G, 3.6G, 3.8G, 7.6G.
# Params: the paper's table gives none; the figures are those of the widely used reference
# implementation (torchvision: 11.7M, 21.8M, 25.6M, 44.5M), which has the same layers.
@register_model("resnet18", input_size=224, paper_params=11.7e6, paper_macs=1.8e9, family="resnet",
                tags=("params-from-ref",))
def resnet18(num_classes: int = 1000, **kw):
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **kw)


@register_model("resnet34", input_size=224, paper_params=21.8e6, paper_macs=3.6e9, family="resnet",
                tags=("params-from-ref",))
def resnet34(num_classes: int = 1000, **kw):
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, **kw)


@register_model("resnet50", input_size=224, paper_params=25.6e6, paper_macs=3.8e9, family="resnet",
                tags=("params-from-ref",))
def resnet50(num_classes: int = 1000, **kw):
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, **kw)


@register_model("resnet101", input_size=224, paper_params=44.5e6, paper_macs=7.6e9, family="resnet",
                tags=("params-from-ref",))
def resnet101(num_classes: int = 1000, **kw):
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, **kw)
