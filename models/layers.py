"""Building blocks shared by the zoo's mobile networks (MobileNets, MnasNet, EfficientNet, ShuffleNets,
ResNets, SENet). Plain Conv2d/BatchNorm2d/activation modules, so ONNX export and Torch-Pruning see
ordinary layers."""
from __future__ import annotations

from torch import nn


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never going below 90% of `v`."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=nn.ReLU) -> nn.Sequential:
    """k×k conv (no bias, 'same' padding) + BatchNorm [+ act()]; `act` is an activation class, or a
    false value for none."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: pool -> 1x1 conv (hidden) -> act -> 1x1 conv -> gate -> multiply."""

    def __init__(self, channels: int, hidden: int, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = act()
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
