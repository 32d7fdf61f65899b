"""Res2Net (Gao et al., TPAMI 2019): ResNet-50 whose bottleneck 3x3 conv is replaced by a hierarchy of
`scale` smaller 3x3 convs over channel groups, each group also receiving the previous group's output
(multi-scale receptive fields inside one block). Res2Net-50 26w x 4s: 4 groups of 26 channels in the
first stage (base width 26, doubling per stage).

The first block of a stage cannot add the previous group (its groups change resolution), so there each
group is convolved on its own and the last group is average-pooled instead of passed through, as in
the authors' release. Everything else (stem, stage depths, 1x1-conv+BN shortcuts, the zoo's ResNet
body) is ResNet-50's, reused from models/resnet.py.
"""
import torch
from torch import nn

from hwnas.models.layers import conv_bn
from hwnas.models.registry import register_model
from hwnas.models.resnet import ResNet


class Bottle2neck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, base_width=26, scale=4, **_):
        super().__init__()
        width = planes * base_width // 64
        cout = planes * self.expansion
        self.scale, self.width = scale, width
        self.first = stride != 1 or cin != cout  # first block of a stage
        self.conv1 = conv_bn(cin, width * scale, 1)
        self.convs = nn.ModuleList(conv_bn(width, width, 3, stride) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, stride, 1) if self.first else nn.Identity()
        self.conv3 = conv_bn(width * scale, cout, 1, act=None)
        self.shortcut = conv_bn(cin, cout, 1, stride, act=None) if self.first else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        groups = torch.split(self.conv1(x), self.width, 1)
        out, y = [], None
        for i, conv in enumerate(self.convs):
            y = conv(groups[i] if self.first or y is None else y + groups[i])
            out.append(y)
        out.append(self.pool(groups[-1]))
        return self.act(self.conv3(torch.cat(out, 1)) + self.shortcut(x))


# Paper, Table 2 (ImageNet): Res2Net-50 (26w x 4s) 25.70M parameters, 4.2 GFLOPs (multiply-adds).
# tp-unsupported: Torch-Pruning cannot follow the fixed-width torch.split of the scale groups.
@register_model("res2net50", input_size=224, paper_params=25.7e6, paper_macs=4.2e9, family="res2net",
                tags=("tp-unsupported",))
def res2net50(num_classes: int = 1000, **kw):
    return ResNet(Bottle2neck, (3, 4, 6, 3), num_classes=num_classes, **kw)
