"""NF-ResNet numerics: scaled weight standardisation, the signal-propagation prediction, no batch norm,
and training with adaptive gradient clipping through the shared training helper."""
import math

import pytest
import torch
from torch import nn

from hwnas.models.nfnet import NFResNet, ScaledStdConv2d


def test_standardized_weight_has_zero_mean_and_unit_fan_in_variance():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(16, 8, 3)
    with torch.no_grad():  # raw weights far from standardised: per-channel offsets and scales
        conv.weight.mul_(torch.linspace(0.1, 30, 8).view(8, 1, 1, 1)).add_(torch.arange(8.0).view(8, 1, 1, 1))
        conv.gain.copy_(torch.linspace(0.5, 2, 8).view(8, 1, 1, 1))
    w = conv.standardized_weight()
    fan_in = 16 * 9
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(8), atol=1e-6)
    var = w.var(dim=(1, 2, 3), unbiased=False) * fan_in
    assert torch.allclose(var, conv.gain.flatten() ** 2, rtol=1e-4)


def test_output_is_invariant_to_each_filters_shift_and_scale():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 9, 9)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(6, 1, 1, 1) * 5 + 0.2).add_(torch.randn(6, 1, 1, 1))
    assert torch.allclose(conv(x), before, atol=1e-4)
    # a plain conv with the same raw weights is not invariant (the test above can fail)
    plain = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    plain.weight.data.copy_(conv.weight)
    assert not torch.allclose(plain(x), before, atol=1e-2)


def test_no_batch_norm_anywhere():
    m = NFResNet((1, 1, 1, 1), num_classes=10)
    assert not any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert convs and all(isinstance(c, ScaledStdConv2d) for c in convs)


def test_signal_propagation_matches_the_analytic_beta():
    """With the residual branches on, each block's input std is the predicted beta (within 10%; it drifts low by a few % per stage) at
    initialisation: Var grows by alpha^2 per block, and transition blocks reset it."""
    torch.manual_seed(0)
    m = NFResNet((2, 3, 3, 2), num_classes=10, skipinit=False).eval()
    stds = []
    hooks = [b.register_forward_pre_hook(lambda mod, inp: stds.append(inp[0].std().item())) for b in m.blocks]
    with torch.no_grad():
        m(torch.randn(4, 3, 96, 96))
    for h in hooks:
        h.remove()
    assert m.expected_std[1] == pytest.approx(math.sqrt(1 + 0.2 ** 2))
    # the first block sees the stem's max-pooled maps (not unit variance): its own transition resets that
    for seen, predicted in list(zip(stds, m.expected_std))[1:]:
        assert seen == pytest.approx(predicted, rel=0.10)


def test_trains_with_adaptive_gradient_clipping():
    """NF layers (weight-standardised convs with gains, scaled ReLU, a skip gain) trained by the shared
    helper with AGC: a few steps, finite, and the loss goes down on a learnable rule."""
    from hwnas.models.nfnet import GammaReLU, NFBottleneck
    from hwnas.train import train
    torch.manual_seed(0)
    x = torch.randn(64, 3, 16, 16)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    m = nn.Sequential(ScaledStdConv2d(3, 16, 3, padding=1), NFBottleneck(16, 8, 2, 0.2, 1.0, skipinit=False),
                      GammaReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        before = loss(m(x), y).item()
    train(m, loader, steps=20, lr=0.1, agc_clip=0.01, threads=1, progress=False)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    with torch.no_grad():
        assert loss(m(x), y).item() < before
