"""SqueezeNet (Iandola et al., 2016): v1.0 from the paper, and v1.1 from the authors' release notes.

Fire module: squeeze 1x1 (s) -> ReLU -> [expand 1x1 (e1) | expand 3x3 (e3)] -> ReLU, concatenated.
No fully connected layer: a 1x1 conv to the classes, ReLU, global average pool. Max pools use
ceil mode as the authors' Caffe model does. Registered at the paper's stated 224x224 input (the
authors' Caffe model crops 227, which gives Table 1's 111x111 maps after conv1 and ~2% more MACs).
v1.1: 3x3/64 first conv, pools moved earlier — same accuracy, ~2.4x less computation.
"""
import torch
from torch import nn

from hwnas.models.registry import register_model


class Fire(nn.Module):
    def __init__(self, cin, s, e1, e3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, s, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(s, e1, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(s, e3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], dim=1)


def _pool():
    return nn.MaxPool2d(3, 2, ceil_mode=True)


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5, in_chans: int = 3):
        super().__init__()
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 96, 7, 2), nn.ReLU(), _pool(),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), _pool(),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), _pool(),
                Fire(512, 64, 256, 256))
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 64, 3, 2), nn.ReLU(), _pool(),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256))
        else:
            raise ValueError(f"unknown SqueezeNet version {version!r}")
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(512, num_classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


# v1.0 params: the paper's Table 1 total (1,248,424). MACs: the paper gives none; 0.82G (v1.0) and
# 0.35G (v1.1) at 224 are the reference implementation's figures (torchvision). v1.1 has no paper
# (the authors' release notes only): its 1.24M params are the reference implementation's too.
@register_model("squeezenet1_0", input_size=224, paper_params=1_248_424, paper_macs=0.82e9,
                family="squeezenet", tags=("macs-from-ref",))
def squeezenet1_0(num_classes: int = 1000, **kw):
    return SqueezeNet("1_0", num_classes=num_classes, **kw)


@register_model("squeezenet1_1", input_size=224, paper_params=1.24e6, paper_macs=0.35e9, family="squeezenet",
                tags=("params-from-ref", "macs-from-ref"))
def squeezenet1_1(num_classes: int = 1000, **kw):
    return SqueezeNet("1_1", num_classes=num_classes, **kw)
