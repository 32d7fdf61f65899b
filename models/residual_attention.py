"""Residual Attention Network (Wang et al., CVPR 2017), Attention-56: three attention modules (one per
stage, p = 1, t = 2, r = 1) between pre-activation bottleneck residual units.

An attention module multiplies its trunk branch T (two residual units) by (1 + M), M a soft mask from a
bottom-up top-down branch: max-pool down to the stage's coarsest grid and bilinear-interpolate back up,
with a residual unit at each scale and skip connections between the matching scales; two 1x1 convs and
a sigmoid end the mask. The stage-1 module goes down three times (56 -> 7), stage 2 twice, stage 3
once, as in the authors' released Attention-56.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from hwnas.models.registry import register_model


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1 (cout/4) - BN-ReLU-3x3 (stride) - BN-ReLU-1x1 (cout);
    the projection shortcut (when the shape changes) sees the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        mid = cout // 4
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False))
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = self.pre(x)
        return self.body(pre) + (self.shortcut(pre) if self.shortcut is not None else x)


def _units(c, n):
    return nn.Sequential(*[ResidualUnit(c, c) for _ in range(n)])


def _up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class AttentionModule(nn.Module):
    """`levels` down-samplings in the mask branch (3, 2, 1 for stages 1, 2, 3)."""

    def __init__(self, c: int, levels: int):
        super().__init__()
        self.first = ResidualUnit(c, c)
        self.trunk = _units(c, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        # down path: one unit at each scale above the coarsest, two at the coarsest
        self.down = nn.ModuleList(_units(c, 1 if i < levels - 1 else 2) for i in range(levels))
        self.skips = nn.ModuleList(ResidualUnit(c, c) for _ in range(levels - 1))
        self.up = nn.ModuleList(ResidualUnit(c, c) for _ in range(levels - 1))
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1, bias=False), nn.Sigmoid())
        self.last = ResidualUnit(c, c)

    def forward(self, x):
        x = self.first(x)
        trunk = self.trunk(x)
        feats, skips, y = [], [], x
        for i, down in enumerate(self.down):
            y = down(self.pool(y))
            feats.append(y)
            if i < len(self.skips):
                skips.append(self.skips[i](y))
        for i in reversed(range(len(self.up))):  # back up: interpolate, add the same scale's maps and skip
            y = self.up[i](_up(y, feats[i]) + feats[i] + skips[i])
        mask = self.mask_head(_up(y, trunk) + trunk)
        return self.last((1 + mask) * trunk)


class ResidualAttentionNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.body = nn.Sequential(
            ResidualUnit(64, 256), AttentionModule(256, 3),
            ResidualUnit(256, 512, 2), AttentionModule(512, 2),
            ResidualUnit(512, 1024, 2), AttentionModule(1024, 1),
            ResidualUnit(1024, 2048, 2), ResidualUnit(2048, 2048), ResidualUnit(2048, 2048))
        self.head = nn.Sequential(nn.BatchNorm2d(2048), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


# Paper, Table 6 (ImageNet, 224x224): Attention-56 31.9M parameters, 6.2G FLOPs (multiply-adds).
@register_model("residual_attention_56", input_size=224, paper_params=31.9e6, paper_macs=6.2e9,
                family="residual_attention")
def residual_attention_56(num_classes: int = 1000, **kw):
    return ResidualAttentionNet(num_classes=num_classes, **kw)
