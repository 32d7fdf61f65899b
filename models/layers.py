"""Building blocks shared by the zoo's mobile networks (MobileNets, MnasNet, EfficientNet, ShuffleNets,
ResNets, SENet) and the MnasNet search space's layers. Plain Conv2d/BatchNorm2d/activation modules, so
ONNX export and Torch-Pruning see ordinary layers."""
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


def se_width(cin: int, ratio: float) -> int:
    """The SE hidden width of MnasNet and EfficientNet: `ratio` x the block's input channels (at least 1);
    0, no SE, for ratio 0."""
    return max(1, int(cin * ratio)) if ratio else 0


def inverted_residual(cin: int, hidden: int, cout: int, k: int, stride: int, act=nn.ReLU, se: int = 0,
                      se_act=nn.ReLU, se_gate=nn.Sigmoid) -> nn.Sequential:
    """The mobile inverted bottleneck (MBConv) without its shortcut: [1x1 expand to `hidden` + BN + act,
    when hidden != cin] -> kxk depthwise + BN + act -> [SqueezeExcite(hidden, se, se_act, se_gate), when
    se > 0] -> 1x1 project + BN (linear)."""
    layers = [conv_bn(cin, hidden, 1, act=act)] if hidden != cin else []
    layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
    if se:
        layers.append(SqueezeExcite(hidden, se, act=se_act, gate=se_gate))
    layers.append(conv_bn(hidden, cout, 1, act=None))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """`inverted_residual(...)` as `block`, plus an identity shortcut (plain `+`) when `skip` and the shapes
    match (stride 1, cin == cout): the block of MobileNetV2/V3, MnasNet and EfficientNet."""

    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, act=nn.ReLU, se: int = 0,
                 se_act=nn.ReLU, se_gate=nn.Sigmoid, skip: bool = True):
        super().__init__()
        self.block = inverted_residual(cin, hidden, cout, k, stride, act, se, se_act, se_gate)
        self.use_residual = skip and stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.use_residual else self.block(x)
