"""LeNet-5 (LeCun et al., 1998), on 32x32 inputs; 3 input channels so it fits the zoo's conventions."""
from torch import nn

from hwnas.models.registry import register_model


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
                                        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("lenet5", input_size=32, family="lenet")
def lenet5(num_classes: int = 1000, **kw):
    return LeNet5(num_classes=num_classes, **kw)
