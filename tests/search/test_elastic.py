"""The elastic supernet: every architecture's slice, copied out into the network the space builds, computes what
the supernet computes for it (so the network a search exports and a table times is the one the supernet read);
a path trains only its slice; the largest and smallest architectures bound the space."""
import numpy as np
import pytest
import torch

from hwnas.models.stats import count_macs
from hwnas.search.elastic import ElasticMnasNet
from hwnas.search.spaces import get_space


def randomised(space):
    """A supernet whose BatchNorm statistics and affine parameters are not the identity (so a wrong slice of
    them shows)."""
    torch.manual_seed(0)
    net = ElasticMnasNet(space, num_classes=10)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var") or name.endswith("bn.weight"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or name.endswith("bn.bias"):
                t.uniform_(-0.2, 0.2)
    return net.eval()


def every_choice(space):
    """Architectures that between them take every choice of every decision (choice i of each, cycling)."""
    decisions = space.decisions()
    most = max(len(d.choices) for d in decisions)
    return [tuple((i + j) % len(d.choices) for j, d in enumerate(decisions)) for i in range(most)]


@pytest.mark.parametrize("name", ["mnasnet", "mnasnet-tiny"])
def test_an_extracted_network_computes_what_the_supernet_computes(name):
    space = get_space(name, input_size=32)
    net = randomised(space)
    rng = np.random.default_rng(0)
    archs = every_choice(space) + [net.largest(), net.smallest()] + [space.sample(rng) for _ in range(12)]
    x = torch.randn(3, 3, 32, 32)
    for arch in archs:
        model = net.extract(arch)
        assert [k for k, _ in model.state_dict().items()] == list(space.build(arch, num_classes=10).state_dict())
        with torch.no_grad():
            want, got = net(x, arch), model(x)
        assert torch.allclose(want, got, atol=1e-4, rtol=1e-4), (arch, float((want - got).abs().max()))


def test_the_conv_op_and_a_projected_pooling_shortcut_are_covered():
    """mnasnet's first block takes a regular conv with SE and a pooling shortcut that projects 32 -> 16 channels."""
    space = get_space("mnasnet", input_size=32)
    arch = list(every_choice(space)[0])
    c = space.config
    arch[0:6] = [c.ops.index("conv"), 1, c.se_ratios.index(0.25), c.skips.index("pool"), 0, 1]
    model = randomised(space).extract(tuple(arch))
    layer = model[1]
    assert layer.skip == "pool" and len(layer.body) == 2  # conv_bn + SE
    net = randomised(space)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x, tuple(arch)), net.extract(tuple(arch))(x), atol=1e-4)


def test_a_path_trains_only_its_slice():
    space = get_space("mnasnet-tiny")
    net = ElasticMnasNet(space, num_classes=10).train()
    small = net.smallest()
    net(torch.randn(4, 3, 32, 32), small).sum().backward()
    layer = net.blocks[2][0]
    assert all(p.grad is None for p in layer.branches["e36"].parameters())  # smallest: expansion 1 only
    grad = layer.branches["e1"]["dw"].weight.grad
    assert grad is not None and grad[:, :, 1:4, 1:4].abs().sum() > 0
    assert grad[:, :, 0].abs().sum() == 0 and grad[:, :, :, 4].abs().sum() == 0  # a 3x3 kernel: the 5x5's centre
    assert space.layers[2] == [2, 3]
    assert net.blocks[2][2].branches["e1"]["dw"].weight.grad is None  # fewer layers: the third one unused


def test_largest_and_smallest_bound_the_space():
    space = get_space("mnasnet", input_size=32)
    net = ElasticMnasNet(space, num_classes=10)
    rng = np.random.default_rng(1)
    macs = [count_macs(space.build(space.sample(rng), num_classes=10), (1, 3, 32, 32)) for _ in range(40)]
    lo = count_macs(space.build(net.smallest(), num_classes=10), (1, 3, 32, 32))
    hi = count_macs(space.build(net.largest(), num_classes=10), (1, 3, 32, 32))
    assert lo <= min(macs) and hi >= max(macs)
