"""Squeeze-and-Excitation networks (Hu et al., CVPR 2018): SE-ResNet-50.

A ResNet-50 bottleneck whose residual branch is rescaled per channel, before the add, by an SE
block: global average pool -> 1x1 conv (C/16) -> ReLU -> 1x1 conv (C) -> sigmoid -> multiply.
(1x1 convs on a 1x1 map are the paper's two fully connected layers, biases included.)
"""

from hwnas.models.registry import register_model
from hwnas.models.layers import SqueezeExcite
from hwnas.models.resnet import Bottleneck, ResNet


class SEBottleneck(Bottleneck):
    def make_se(self, channels):
        return SqueezeExcite(channels, channels // 16)


# Paper: 3.87 GFLOPs (multiply-adds, Table 2) and 28.1M params (reduction-ratio ablation, r=16).
@register_model("se_resnet50", input_size=224, paper_params=28.1e6, paper_macs=3.87e9, family="senet")
def se_resnet50(num_classes: int = 1000, **kw):
    return ResNet(SEBottleneck, (3, 4, 6, 3), num_classes=num_classes, **kw)
