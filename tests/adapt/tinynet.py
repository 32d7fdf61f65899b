"""A small network with every coupling NetAdapt must respect: a residual addition, a depthwise conv,
an SE block (pool → 1x1 → act → 1x1 → sigmoid → multiply) and a channel concatenation."""
import torch
import torch.nn as nn


class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(8, c // r), 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(max(8, c // r), c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


def conv_bn(cin, cout, k=3, s=1, g=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyNet(nn.Module):
    def __init__(self, num_classes=10, width=32):
        super().__init__()
        w = width
        self.stem = conv_bn(3, w, 3, 2)
        self.expand = conv_bn(w, 2 * w, 1)
        self.dw = conv_bn(2 * w, 2 * w, 3, 1, g=2 * w)
        self.se = SE(2 * w)
        self.project = nn.Sequential(nn.Conv2d(2 * w, w, 1, bias=False), nn.BatchNorm2d(w))
        self.branch_a = conv_bn(w, w, 3, 2)
        self.branch_b = conv_bn(w, w, 1, 2)
        self.head = conv_bn(2 * w, 4 * w, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))  # inverted residual with SE
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        return self.fc(self.pool(self.head(x)).flatten(1))
