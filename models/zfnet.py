"""ZFNet (Zeiler & Fergus, ECCV 2014, Figure 3): AlexNet's layout with a 7x7 stride-2 first layer (instead
of 11x11 stride 4) and a stride-2 second layer, found by visualising the first layers' filters.

224 -> conv 7x7/2 96 (110) -> pool 3/2 (55) -> LRN -> conv 5x5/2 256 (26) -> pool 3/2 (13) -> LRN ->
conv 3x3 384 -> conv 3x3 384 -> conv 3x3 256 -> pool 3/2 (6) -> fc 4096 -> fc 4096 -> fc classes.
The figure's map sizes fix the paddings (1 on conv1, 0 on conv2) and Caffe's ceil-mode pooling.
"""
from torch import nn

from hwnas.models.registry import register_model


class ZFNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 96, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.Conv2d(96, 256, 5, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True))
        # 6x6 at the paper's 224 (the pool is skipped); other sizes are pooled to 6x6 for the classifier
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.features(x)
        if x.shape[-1] != 6 or x.shape[-2] != 6:
            x = self.pool(x)
        return self.classifier(x)


# The paper gives no parameter count or cost (its tables report error rates only), so none is registered:
# measured here, 62.4M params and 1.17G MACs at 224.
@register_model("zfnet", input_size=224, family="alexnet")
def zfnet(num_classes: int = 1000, **kw):
    return ZFNet(num_classes=num_classes, **kw)
