"""DenseNet (Huang et al., CVPR 2017): DenseNet-121 (DenseNet-BC, growth rate 32, compression 0.5).

Each dense layer is BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) and its output is concatenated to
everything before it; transitions are BN-ReLU-Conv1x1(c/2)-AvgPool2x2.
"""
import torch
from torch import nn

from hwnas.models.registry import register_model


def bn_relu_conv(cin, cout, k):
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, k, 1, k // 2, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.bottleneck = bn_relu_conv(cin, bn_size * growth, 1)
        self.conv = bn_relu_conv(bn_size * growth, growth, 3)

    def forward(self, x):
        return self.conv(self.bottleneck(x))


class DenseBlock(nn.Module):
    def __init__(self, n, cin, growth, bn_size):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, bn_size) for i in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class DenseNet(nn.Module):
    def __init__(self, blocks=(6, 12, 24, 16), growth: int = 32, init: int = 64, bn_size: int = 4,
                 compression: float = 0.5, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_chans, init, 7, 2, 3, bias=False), nn.BatchNorm2d(init), nn.ReLU(),
                  nn.MaxPool2d(3, 2, 1)]
        c = init
        for i, n in enumerate(blocks):
            layers.append(DenseBlock(n, c, growth, bn_size))
            c += n * growth
            if i < len(blocks) - 1:
                cout = int(c * compression)
                layers += [bn_relu_conv(c, cout, 1), nn.AvgPool2d(2, 2)]
                c = cout
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


# The paper plots params/FLOPs (Fig. 3) but tabulates neither for ImageNet: 8.0M params and 2.83G MACs
# are the reference implementation's figures (torchvision's model table). The also-quoted 2.87G is
# not what counting convolutions and linear layers gives (2.83G here, as hwnas counts).
@register_model("densenet121", input_size=224, paper_params=8.0e6, paper_macs=2.83e9, family="densenet",
                tags=("params-from-ref", "macs-from-ref"))
def densenet121(num_classes: int = 1000, **kw):
    return DenseNet((6, 12, 24, 16), num_classes=num_classes, **kw)
