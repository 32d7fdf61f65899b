"""FaceBoxes (Zhang et al., IJCB 2017): the CPU real-time face detector.

- RDCL (rapidly digested convolutional layers) shrinks the input 32x before any wide layer: a 7x7
  stride-4 conv and a 5x5 stride-2 conv, each with C.ReLU (the conv's output and its negation through
  one ReLU, doubling the channels for free), each followed by a 3x3 stride-2 max pool.
- MSCL (multiple scale convolutional layers): three Inception modules (128 maps, 32x32 at 1024) then
  conv3 (1x1 128, 3x3/2 256) and conv4 (1x1 128, 3x3/2 256), so detection runs at strides 32, 64, 128.
- Anchors: at stride 32 five sizes, densified so that each tiles the grid evenly: 32 px x16 (4x4
  offsets), 64 px x4 (2x2), 128 px x1 = 21 per cell; 256 px at stride 64 and 512 px at stride 128, one
  each. At 1024x1024: 32*32*21 + 16*16 + 8*8 = 21,824 anchors.

forward returns (loc, conf): loc (N, anchors, 4) box offsets and conf (N, anchors, num_classes) scores
(num_classes = 2, face and background, in the paper), concatenated over the three detection layers in
the order above. `num_anchors(size)` gives the count for any input size divisible by 128.
"""
from __future__ import annotations

import torch
from torch import nn

from hwnas.models.registry import register_model

ANCHORS_PER_CELL = (21, 1, 1)   # stride 32 (densified 32/64/128 px), stride 64 (256 px), stride 128 (512 px)
STRIDES = (32, 64, 128)


def num_anchors(size: int) -> int:
    return sum(a * (size // s) ** 2 for a, s in zip(ANCHORS_PER_CELL, STRIDES))


def conv_bn_relu(cin, cout, k, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CReLU(nn.Module):
    """conv + BN, then concat(x, -x) and ReLU: 2x the channels at the cost of one conv."""

    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(torch.cat([x, -x], 1))


class Inception(nn.Module):
    """128 -> 128: 1x1 32 | 3x3 avg pool -> 1x1 32 | 1x1 24 -> 3x3 32 | 1x1 24 -> 3x3 32 -> 3x3 32."""

    def __init__(self, c=128):
        super().__init__()
        self.branches = nn.ModuleList([
            conv_bn_relu(c, 32, 1),
            nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn_relu(c, 32, 1)),
            nn.Sequential(conv_bn_relu(c, 24, 1), conv_bn_relu(24, 32, 3)),
            nn.Sequential(conv_bn_relu(c, 24, 1), conv_bn_relu(24, 32, 3), conv_bn_relu(32, 32, 3)),
        ])

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class FaceBoxes(nn.Module):
    def __init__(self, num_classes: int = 2, in_chans: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.rdcl = nn.Sequential(CReLU(in_chans, 24, 7, 4), nn.MaxPool2d(3, 2, 1),
                                  CReLU(48, 64, 5, 2), nn.MaxPool2d(3, 2, 1))
        self.inception = nn.Sequential(Inception(), Inception(), Inception())
        self.conv3 = nn.Sequential(conv_bn_relu(128, 128, 1), conv_bn_relu(128, 256, 3, 2))
        self.conv4 = nn.Sequential(conv_bn_relu(256, 128, 1), conv_bn_relu(128, 256, 3, 2))
        chans = (128, 256, 256)
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(chans, ANCHORS_PER_CELL))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, 1, 1) for c, a in zip(chans, ANCHORS_PER_CELL))

    def forward(self, x):
        f1 = self.inception(self.rdcl(x))
        f2 = self.conv3(f1)
        f3 = self.conv4(f2)
        locs, confs = [], []
        for f, loc, conf in zip((f1, f2, f3), self.loc, self.conf):
            # (N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k): anchors ordered by cell, then anchor
            locs.append(loc(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, 4))
            confs.append(conf(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, self.num_classes))
        return torch.cat(locs, 1), torch.cat(confs, 1)


# The paper reports speed and accuracy only (20 FPS on a CPU at VGA): no parameter count or cost is
# registered. Measured here at 1024x1024 with 2 classes: 1.01M params, 0.93G MACs (see `hwnas models`).
@register_model("faceboxes", input_size=1024, family="faceboxes", tags=("detector",))
def faceboxes(num_classes: int = 2, **kw):
    return FaceBoxes(num_classes=num_classes, **kw)
