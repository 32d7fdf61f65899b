"""The Inception family: GoogLeNet (Inception v1), Inception v3, Inception v4 and Inception-ResNet-v2.

GoogLeNet follows Szegedy et al. (CVPR 2015), Table 1: convolutions with bias and ReLU, no batch norm
(it predates it), local response normalisation after the stem, the 5x5 branches really 5x5, no
auxiliary classifiers (they are training-only and dropped at inference).

Inception v3 / v4 / Inception-ResNet-v2 are the networks the authors released (TF-slim), whose layers
the papers' figures describe: conv + BN + ReLU units, "valid" (unpadded) convolutions where the papers
mark a "V", factorised 1xn / nx1 kernels. The auxiliary classifier of v3 is left out (training-only).
"""
from __future__ import annotations

import torch
from torch import nn

from hwnas.models.registry import register_model


def unit(cin: int, cout: int, k, stride: int = 1, padding=0) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU with an explicit padding and possibly non-square kernels (1x7, 3x1);
    `models.layers.conv_bn` is square-kernel 'same' padding only, which these networks do not use."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                         nn.ReLU())


def _cat(branches, x):
    return torch.cat([b(x) for b in branches], 1)


# --------------------------------------------------------------------------- GoogLeNet (Inception v1)

def conv_relu(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.ReLU())


class InceptionV1(nn.Module):
    """Four parallel branches: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1 (pool proj)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        self.branches = nn.ModuleList([
            conv_relu(cin, c1, 1),
            nn.Sequential(conv_relu(cin, c3r, 1), conv_relu(c3r, c3, 3)),
            nn.Sequential(conv_relu(cin, c5r, 1), conv_relu(c5r, c5, 5)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_relu(cin, pool_proj, 1)),
        ])

    def forward(self, x):
        return _cat(self.branches, x)


# Table 1 rows: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
_GOOGLENET = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.4):
        super().__init__()
        self.stem = nn.Sequential(
            conv_relu(in_chans, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75),
            conv_relu(64, 64, 1), conv_relu(64, 192, 3), nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.MaxPool2d(3, 2, ceil_mode=True))
        layers, cin = [], 192
        for name, cfg in _GOOGLENET.items():
            if name in ("4a", "5a"):
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            layers.append(InceptionV1(cin, *cfg))
            cin = cfg[0] + cfg[2] + cfg[4] + cfg[5]
        self.inception = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.inception(self.stem(x)))


# Table 1 counts parameters in binary thousands (inception 3a: 163,328 weights = "159K") and its conv1
# row (7x7/2, 64 maps of 112x112: 2.7K params, 34M ops) contradicts its own shape (7*7*3*64 = 9,408
# weights, 118M MACs). Its rows sum to 6797.7K params and 1.502G ops; read in its own units and with
# conv1 recomputed from its shape that is 6.967M weights (6.8M in the text) and 1.586G MACs (the text
# says "1.5 billion multiply-adds"), the figures registered. Rows 4c and 5a are themselves off their
# shapes by +7% / -5% in opposite directions; biases add 8.3K.
@register_model("googlenet", input_size=224, paper_params=6.967e6, paper_macs=1.586e9, family="inception")
def googlenet(num_classes: int = 1000, **kw):
    return GoogLeNet(num_classes=num_classes, **kw)


# --------------------------------------------------------------------------- Inception v3

class Branches(nn.Module):
    """Parallel branches concatenated along channels; a branch that is a ModuleList of two heads is
    split at its end (the expanded 1x3 / 3x1 filter banks of v3's and v4's coarsest grid)."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        out = []
        for b in self.branches:
            if isinstance(b, Split):
                out.extend(b(x))
            else:
                out.append(b(x))
        return torch.cat(out, 1)


class Split(nn.Module):
    """trunk, then two heads applied to the trunk's output side by side."""

    def __init__(self, trunk, a, b):
        super().__init__()
        self.trunk, self.a, self.b = trunk, a, b

    def forward(self, x):
        y = self.trunk(x)
        return [self.a(y), self.b(y)]


def _avg_pool(include_pad: bool = True):
    return nn.AvgPool2d(3, 1, 1, count_include_pad=include_pad)


def v3_a(cin, pool_features):  # Figure 5 (35x35 grid)
    return Branches(unit(cin, 64, 1),
                    nn.Sequential(unit(cin, 48, 1), unit(48, 64, 5, padding=2)),
                    nn.Sequential(unit(cin, 64, 1), unit(64, 96, 3, padding=1), unit(96, 96, 3, padding=1)),
                    nn.Sequential(_avg_pool(), unit(cin, pool_features, 1)))


def v3_reduce_35(cin):  # Figure 10 (35 -> 17)
    return Branches(unit(cin, 384, 3, 2),
                    nn.Sequential(unit(cin, 64, 1), unit(64, 96, 3, padding=1), unit(96, 96, 3, 2)),
                    nn.MaxPool2d(3, 2))


def v3_b(cin, c7):  # Figure 6 (17x17 grid, n = 7)
    return Branches(unit(cin, 192, 1),
                    nn.Sequential(unit(cin, c7, 1), unit(c7, c7, (1, 7), padding=(0, 3)),
                                  unit(c7, 192, (7, 1), padding=(3, 0))),
                    nn.Sequential(unit(cin, c7, 1), unit(c7, c7, (7, 1), padding=(3, 0)),
                                  unit(c7, c7, (1, 7), padding=(0, 3)), unit(c7, c7, (7, 1), padding=(3, 0)),
                                  unit(c7, 192, (1, 7), padding=(0, 3))),
                    nn.Sequential(_avg_pool(), unit(cin, 192, 1)))


def v3_reduce_17(cin):  # 17 -> 8
    return Branches(nn.Sequential(unit(cin, 192, 1), unit(192, 320, 3, 2)),
                    nn.Sequential(unit(cin, 192, 1), unit(192, 192, (1, 7), padding=(0, 3)),
                                  unit(192, 192, (7, 1), padding=(3, 0)), unit(192, 192, 3, 2)),
                    nn.MaxPool2d(3, 2))


def _split13(trunk, c, cout):
    return Split(trunk, unit(c, cout, (1, 3), padding=(0, 1)), unit(c, cout, (3, 1), padding=(1, 0)))


def v3_c(cin):  # Figure 7 (8x8 grid, expanded filter banks)
    return Branches(unit(cin, 320, 1),
                    _split13(unit(cin, 384, 1), 384, 384),
                    _split13(nn.Sequential(unit(cin, 448, 1), unit(448, 384, 3, padding=1)), 384, 384),
                    nn.Sequential(_avg_pool(), unit(cin, 192, 1)))


class InceptionV3(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        self.stem = nn.Sequential(
            unit(in_chans, 32, 3, 2), unit(32, 32, 3), unit(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            unit(64, 80, 1), unit(80, 192, 3), nn.MaxPool2d(3, 2))
        self.blocks = nn.Sequential(
            v3_a(192, 32), v3_a(256, 64), v3_a(288, 64), v3_reduce_35(288),
            v3_b(768, 128), v3_b(768, 160), v3_b(768, 160), v3_b(768, 192), v3_reduce_17(768),
            v3_c(1280), v3_c(2048))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


# The paper (Szegedy et al., CVPR 2016) states only "5 billion multiply-adds" and "less than 25 million
# parameters" for the whole family. The registered figures are those of the released network without
# its auxiliary classifier (Keras Applications: 23.9M; torchvision: 5.71 GFLOPS, i.e. MACs) - the same
# layers as here. The paper's "5 billion" is ~13% below what these layers cost.
@register_model("inception_v3", input_size=299, paper_params=23.9e6, paper_macs=5.71e9, family="inception",
                tags=("params-from-ref", "macs-from-ref"))
def inception_v3(num_classes: int = 1000, **kw):
    return InceptionV3(num_classes=num_classes, **kw)


# --------------------------------------------------------------------------- Inception v4

def _v4_stem(cin):  # Figure 3
    return nn.Sequential(
        unit(cin, 32, 3, 2), unit(32, 32, 3), unit(32, 64, 3, padding=1),
        Branches(nn.MaxPool2d(3, 2), unit(64, 96, 3, 2)),
        Branches(nn.Sequential(unit(160, 64, 1), unit(64, 96, 3)),
                 nn.Sequential(unit(160, 64, 1), unit(64, 64, (1, 7), padding=(0, 3)),
                               unit(64, 64, (7, 1), padding=(3, 0)), unit(64, 96, 3))),
        Branches(unit(192, 192, 3, 2), nn.MaxPool2d(3, 2)))


def v4_a(cin=384):  # Figure 4
    return Branches(unit(cin, 96, 1),
                    nn.Sequential(unit(cin, 64, 1), unit(64, 96, 3, padding=1)),
                    nn.Sequential(unit(cin, 64, 1), unit(64, 96, 3, padding=1), unit(96, 96, 3, padding=1)),
                    nn.Sequential(_avg_pool(False), unit(cin, 96, 1)))


def v4_reduce_a(cin, k, l, m, n):  # Figure 7 (k, l, m, n from Table 1)
    return Branches(unit(cin, n, 3, 2),
                    nn.Sequential(unit(cin, k, 1), unit(k, l, 3, padding=1), unit(l, m, 3, 2)),
                    nn.MaxPool2d(3, 2))


def v4_b(cin=1024):  # Figure 5
    return Branches(unit(cin, 384, 1),
                    nn.Sequential(unit(cin, 192, 1), unit(192, 224, (1, 7), padding=(0, 3)),
                                  unit(224, 256, (7, 1), padding=(3, 0))),
                    nn.Sequential(unit(cin, 192, 1), unit(192, 192, (7, 1), padding=(3, 0)),
                                  unit(192, 224, (1, 7), padding=(0, 3)), unit(224, 224, (7, 1), padding=(3, 0)),
                                  unit(224, 256, (1, 7), padding=(0, 3))),
                    nn.Sequential(_avg_pool(False), unit(cin, 128, 1)))


def v4_reduce_b(cin=1024):  # Figure 8
    return Branches(nn.Sequential(unit(cin, 192, 1), unit(192, 192, 3, 2)),
                    nn.Sequential(unit(cin, 256, 1), unit(256, 256, (1, 7), padding=(0, 3)),
                                  unit(256, 320, (7, 1), padding=(3, 0)), unit(320, 320, 3, 2)),
                    nn.MaxPool2d(3, 2))


def v4_c(cin=1536):  # Figure 6
    return Branches(unit(cin, 256, 1),
                    _split13(unit(cin, 384, 1), 384, 256),
                    _split13(nn.Sequential(unit(cin, 384, 1), unit(384, 448, (3, 1), padding=(1, 0)),
                                           unit(448, 512, (1, 3), padding=(0, 1))), 512, 256),
                    nn.Sequential(_avg_pool(False), unit(cin, 256, 1)))


class InceptionV4(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2):
        super().__init__()
        self.blocks = nn.Sequential(
            _v4_stem(in_chans), *[v4_a() for _ in range(4)], v4_reduce_a(384, 192, 224, 256, 384),
            *[v4_b() for _ in range(7)], v4_reduce_b(), *[v4_c() for _ in range(3)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(1536, num_classes))

    def forward(self, x):
        return self.head(self.blocks(x))


# The paper (Szegedy et al., AAAI 2017) tabulates no parameter count or cost; the figures are those of
# the reference implementation of the same layers (timm's inception_v4: 42.68M params, 12.28 GMACs).
@register_model("inception_v4", input_size=299, paper_params=42.68e6, paper_macs=12.28e9, family="inception",
                tags=("params-from-ref", "macs-from-ref"))
def inception_v4(num_classes: int = 1000, **kw):
    return InceptionV4(num_classes=num_classes, **kw)


# --------------------------------------------------------------------------- Inception-ResNet-v2

class ResidualInception(nn.Module):
    """x + scale * (1x1 linear conv of the concatenated branches), then ReLU (Figures 16-19 of the
    paper; the residual scaling of section 3.3)."""

    def __init__(self, branches: Branches, mid: int, cout: int, scale: float, relu: bool = True):
        super().__init__()
        self.branches = branches
        self.up = nn.Conv2d(mid, cout, 1)
        self.scale = scale
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        return self.act(x + self.scale * self.up(self.branches(x)))


def ir_a(c=320, scale=0.17):
    return ResidualInception(Branches(
        unit(c, 32, 1), nn.Sequential(unit(c, 32, 1), unit(32, 32, 3, padding=1)),
        nn.Sequential(unit(c, 32, 1), unit(32, 48, 3, padding=1), unit(48, 64, 3, padding=1))), 128, c, scale)


def ir_b(c=1088, scale=0.10):
    return ResidualInception(Branches(
        unit(c, 192, 1), nn.Sequential(unit(c, 128, 1), unit(128, 160, (1, 7), padding=(0, 3)),
                                       unit(160, 192, (7, 1), padding=(3, 0)))), 384, c, scale)


def ir_c(c=2080, scale=0.20, relu=True):
    return ResidualInception(Branches(
        unit(c, 192, 1), nn.Sequential(unit(c, 192, 1), unit(192, 224, (1, 3), padding=(0, 1)),
                                       unit(224, 256, (3, 1), padding=(1, 0)))), 448, c, scale, relu)


class InceptionResNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(
            unit(in_chans, 32, 3, 2), unit(32, 32, 3), unit(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            unit(64, 80, 1), unit(80, 192, 3), nn.MaxPool2d(3, 2),
            Branches(unit(192, 96, 1), nn.Sequential(unit(192, 48, 1), unit(48, 64, 5, padding=2)),
                     nn.Sequential(unit(192, 64, 1), unit(64, 96, 3, padding=1), unit(96, 96, 3, padding=1)),
                     nn.Sequential(_avg_pool(False), unit(192, 64, 1))))
        self.blocks = nn.Sequential(
            *[ir_a() for _ in range(10)],
            v4_reduce_a(320, 256, 256, 384, 384),
            *[ir_b() for _ in range(20)],
            Branches(nn.Sequential(unit(1088, 256, 1), unit(256, 384, 3, 2)),
                     nn.Sequential(unit(1088, 256, 1), unit(256, 288, 3, 2)),
                     nn.Sequential(unit(1088, 256, 1), unit(256, 288, 3, padding=1), unit(288, 320, 3, 2)),
                     nn.MaxPool2d(3, 2)),
            *[ir_c() for _ in range(9)], ir_c(scale=1.0, relu=False),
            unit(2080, 1536, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(1536, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


# The layers are those of the authors' released network (TF-slim), whose stem (Inception-v3's plus a
# 320-map Inception block) differs from the paper's Figure 3; the paper gives no parameter count or
# cost. Figures of the reference implementation of these layers (timm: 55.84M params, 13.18 GMACs).
@register_model("inception_resnet_v2", input_size=299, paper_params=55.84e6, paper_macs=13.18e9,
                family="inception", tags=("params-from-ref", "macs-from-ref"))
def inception_resnet_v2(num_classes: int = 1000, **kw):
    return InceptionResNetV2(num_classes=num_classes, **kw)
