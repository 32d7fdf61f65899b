"""VGG (Simonyan & Zisserman, ICLR 2015), configuration D = VGG-16, without batch norm as in the paper."""
from torch import nn

from hwnas.models.registry import register_model

# numbers are 3x3 conv output channels, "M" a 2x2 max pool
_CFG = {"vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


class VGG(nn.Module):
    def __init__(self, cfg, num_classes: int = 1000, dropout: float = 0.5, batch_norm: bool = False,
                 in_chans: int = 3):
        super().__init__()
        layers, c = [], in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        if tuple(x.shape[-2:]) != (7, 7):  # already 7x7 at 224: no pool (keeps ONNX export simple)
            x = self.pool(x)
        return self.classifier(x)


# Params: paper Table 2 (138M). MACs: the paper gives none; 15.5G is Sze et al. (Proc. IEEE 2017).
@register_model("vgg16", input_size=224, paper_params=138e6, paper_macs=15.5e9, family="vgg",
                tags=("macs-from-ref",))
def vgg16(num_classes: int = 1000, **kw):
    return VGG(_CFG["vgg16"], num_classes=num_classes, **kw)
