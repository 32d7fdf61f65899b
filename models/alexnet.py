"""AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012), the original two-tower network.

The paper splits conv2, conv4 and conv5 across two GPUs (each half sees only its own GPU's maps);
on one device that is exactly a grouped convolution with groups=2, which is what gives the paper's
"60 million parameters". Local response normalisation follows conv1 and conv2 as in the paper.
Conv1 uses padding 2 so that a 224x224 input gives the paper's 55x55 maps (the paper's 224 is
really 227 without padding).
"""
from torch import nn

from hwnas.models.registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_chans: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 96, 11, stride=4, padding=2), nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        # 6x6 at 224; smaller inputs are pooled (or, if larger, averaged) to 6x6 as well
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        if tuple(x.shape[-2:]) != (6, 6):  # already 6x6 at 224: no pool (keeps ONNX export simple)
            x = self.pool(x)
        return self.classifier(x)


# Params: the paper's "60 million". MACs: the paper gives none; 724M is the figure of Sze et al.,
# "Efficient Processing of Deep Neural Networks" (Proc. IEEE 2017), Table for AlexNet.
@register_model("alexnet", input_size=224, paper_params=60e6, paper_macs=724e6, family="alexnet",
                tags=("macs-from-ref",))
def alexnet(num_classes: int = 1000, **kw):
    return AlexNet(num_classes=num_classes, **kw)
