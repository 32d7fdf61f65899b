"""NF-ResNet-50 (Brock, De & Smith, ICLR 2021, "Characterizing signal propagation to close the performance
gap in unnormalized ResNets"): ResNet-50 without batch normalisation.

- Scaled weight standardisation: every conv uses W' = gain * (W - mean(W)) / (std(W) * sqrt(fan_in)),
  per output channel, recomputed from the raw weights on every forward (so it is in the ONNX graph).
- Residual blocks h + alpha * f(h / beta): beta is the analytically expected std of h (Var grows by
  alpha^2 per block and is reset to 1 + alpha^2 by each transition block, whose shortcut sees h / beta).
- Activations are scaled so a unit Gaussian keeps unit variance (ReLU * sqrt(2 / (1 - 1/pi))).
- A learnable scalar (SkipInit) ends each residual branch, initialised to 0 (`skipinit=False` starts it
  at 1). The paper's zero-initialised classifier is a training choice and is not copied here.
Pre-activation bottlenecks with the stride on the 3x3 conv (the paper's ResNet-V2 base). Adaptive
gradient clipping, which the NFNet follow-up paper trains these networks with, is
`hwnas.train.train(..., agc_clip=0.01)`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.models.registry import register_model

RELU_GAMMA = math.sqrt(2 / (1 - 1 / math.pi))  # 1.7139: Var(relu(z)) = (1 - 1/pi) / 2 for z ~ N(0, 1)


class ScaledStdConv2d(nn.Conv2d):
    """Conv2d with scaled weight standardisation and a learnable per-output-channel gain."""

    def __init__(self, *args, eps: float = 1e-4, **kw):
        super().__init__(*args, **kw)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = ((w - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        return (w - mean) * torch.rsqrt(torch.clamp(var * fan_in, min=self.eps)) * self.gain

    def forward(self, x):
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def ws_conv(cin, cout, k, stride=1):
    return ScaledStdConv2d(cin, cout, k, stride, k // 2)


class GammaReLU(nn.Module):
    def forward(self, x):
        return F.relu(x) * RELU_GAMMA


class NFBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, alpha: float, beta: float, skipinit: bool = True):
        super().__init__()
        cout = width * self.expansion
        self.alpha, self.inv_beta = alpha, 1.0 / beta
        self.transition = stride != 1 or cin != cout
        self.act0 = GammaReLU()
        self.shortcut = ws_conv(cin, cout, 1, stride) if self.transition else nn.Identity()
        self.conv1 = ws_conv(cin, width, 1)
        self.act1 = GammaReLU()
        self.conv2 = ws_conv(width, width, 3, stride)
        self.act2 = GammaReLU()
        self.conv3 = ws_conv(width, cout, 1)
        self.skip_gain = nn.Parameter(torch.zeros(()) if skipinit else torch.ones(()))

    def forward(self, x):
        out = self.act0(x) * self.inv_beta
        shortcut = self.shortcut(out) if self.transition else x
        out = self.conv3(self.act2(self.conv2(self.act1(self.conv1(out)))))
        return shortcut + out * (self.skip_gain * self.alpha)


class NFResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, alpha: float = 0.2, in_chans: int = 3,
                 dropout: float = 0.25, skipinit: bool = True):
        super().__init__()
        self.stem = nn.Sequential(ws_conv(in_chans, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, cin, var = [], 64, 1.0
        self.expected_std = []  # beta of every block, in order (the signal-propagation prediction)
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            for j in range(n):
                beta = math.sqrt(var)
                blocks.append(NFBottleneck(cin, width, 2 if i > 0 and j == 0 else 1, alpha, beta, skipinit))
                self.expected_std.append(beta)
                var = 1.0 + alpha ** 2 if j == 0 else var + alpha ** 2  # a transition resets the variance
                cin = width * NFBottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(GammaReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


# The paper tabulates accuracy only; NF-ResNet-50 keeps ResNet-50's layers (stride on the 3x3 conv), so
# the figures are those of that ResNet-50 (torchvision v1.5: 25.6M params, 4.09 GFLOPS = MACs). Each
# conv's gain and bias replace BN's two affine vectors one for one; the 16 skip gains add 16 scalars.
# tp-unsupported: Torch-Pruning prunes a conv's weight but not its standardisation gain.
@register_model("nf_resnet50", input_size=224, paper_params=25.6e6, paper_macs=4.09e9, family="nfnet",
                tags=("params-from-ref", "macs-from-ref", "tp-unsupported"))
def nf_resnet50(num_classes: int = 1000, **kw):
    return NFResNet((3, 4, 6, 3), num_classes=num_classes, **kw)
