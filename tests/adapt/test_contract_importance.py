"""The importance-criterion contract, over every registered criterion (a new one is tested by registering it):
an order is a permutation of the root's channels, the same for the same weights, pruning by it removes exactly
its first channels and keeps the network running, and a name or group it cannot serve is one line. Then what
each built-in criterion promises: l2/l1 are the group magnitudes, bn-scale the summed |gamma|, random a fixed
order per group name."""
import copy
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from hwnas.adapt.groups import build_graph, candidate_counts, channel_order, prunable_groups, prune_group, scale_width
from hwnas.adapt.importance import Importance, get_importance, importance_names
from tests.contract_helpers import coverage, one_line_error
from tinynet import TinyNet

SHAPE = (1, 3, 32, 32)


def trained_looking(seed: int = 0):
    """TinyNet with seeded weights and BatchNorm scales spread over [-1, 1] (at init every gamma is 1, which
    would make a scale criterion a tie everywhere). Returns (model, its dependency graph)."""
    torch.manual_seed(seed)
    m = TinyNet().eval()
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.weight.uniform_(-1.0, 1.0)
    return m, build_graph(m, SHAPE)


@lru_cache(maxsize=None)
def shared():
    """One read-only network for the checks that do not prune."""
    return trained_looking(0)


GROUPS = sorted(prunable_groups(*shared()))


def make(name, root, net=None):
    m, g = net or shared()
    return get_importance(name).order(g, m.get_submodule(root))


SERVED, REFUSED, FIRST = coverage(importance_names(), GROUPS, make)
REFUSED_PAIRS = {p.values for p in REFUSED}


def has_batchnorm(root) -> bool:
    m, g = shared()
    conv = m.get_submodule(root)
    group = g.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))
    return any(isinstance(item.dep.target.module, nn.BatchNorm2d) for item in group)


# -- the contract -------------------------------------------------------------------------------------------

def test_every_criterion_is_declared_and_serves_a_group():
    assert {"l2", "l1", "bn-scale", "random"} <= set(importance_names())
    assert set(importance_names()) == set(FIRST)
    for name in importance_names():
        crit = get_importance(name)
        assert isinstance(crit, Importance) and crit.name == name
        assert isinstance(crit.description, str) and crit.description


@pytest.mark.parametrize("name,root", SERVED)
def test_an_order_is_a_permutation_and_deterministic(name, root):
    channels = shared()[0].get_submodule(root).out_channels
    order = make(name, root)
    assert sorted(order) == list(range(channels)) and all(type(i) is int for i in order)
    assert make(name, root) == order                                   # a second call
    assert make(name, root, trained_looking(0)) == order               # a fresh network with the same seed


@pytest.mark.parametrize("name", importance_names())
def test_pruning_by_it_removes_its_weakest_and_keeps_the_network_running(name):
    m, g = trained_looking(1)
    x = torch.randn(2, 3, 32, 32)
    pruned = 0
    for root, channels in prunable_groups(m, g).items():
        conv = m.get_submodule(root)
        n = channels - candidate_counts(channels, 8)[0]
        if (name, root) not in REFUSED_PAIRS:
            order = get_importance(name).order(g, conv)
            before = conv.weight.detach().clone()
            prune_group(m, g, root, n, name)
            assert conv.out_channels == channels - n
            assert torch.equal(conv.weight.detach(), before[sorted(order[n:])])   # exactly its first n went
            pruned += 1
        else:
            one_line_error(lambda: prune_group(m, g, root, n, name), name, root)
            assert conv.out_channels == channels                               # a refusal prunes nothing
    assert pruned > 0
    assert m(x).shape == (2, 10)
    assert m.dw[0].groups == m.dw[0].in_channels == m.dw[0].out_channels


@pytest.mark.parametrize("name,root", REFUSED)
def test_a_group_it_cannot_order_is_one_line(name, root):
    one_line_error(lambda: make(name, root), name, root)


def test_only_groups_without_a_batchnorm_are_refused_and_only_by_bn_scale():
    assert REFUSED_PAIRS == {("bn-scale", r) for r in GROUPS if not has_batchnorm(r)}
    assert REFUSED_PAIRS, "TinyNet's SE squeeze conv has no BatchNorm: bn-scale must refuse it"


@pytest.mark.parametrize("name", importance_names())
def test_serves_says_beforehand_which_groups_it_can_order(name):
    m, g = shared()
    for root in GROUPS:
        assert get_importance(name).serves(g, m.get_submodule(root)) == ((name, root) not in REFUSED_PAIRS), root


def test_an_unknown_name_is_one_line_listing_the_names():
    names = importance_names()
    one_line_error(lambda: get_importance("taylor"), "taylor", *names)
    m, g = trained_looking(0)
    one_line_error(lambda: prune_group(m, g, "head.0", 8, "taylor"), "taylor", *names)
    assert m.head[0].out_channels == 128
    one_line_error(lambda: scale_width(m, SHAPE, 0.5, 8, criterion="taylor"), "taylor", *names)
    assert m.head[0].out_channels == 128


# -- what each criterion computes ----------------------------------------------------------------------------

def conv_bn_relu_conv(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 8, 3, padding=1, bias=False)).eval()
    with torch.no_grad():
        net[1].weight.uniform_(-1.0, 1.0)
    return net, build_graph(net, (1, 3, 8, 8))


@pytest.mark.parametrize("name,p", [("l2", 2), ("l1", 1)])
def test_magnitude_orders_are_the_summed_group_norms(name, p):
    """l2 is the order NetAdapt used before the registry: per channel, |w|^p summed over the conv's filter, its
    BN scale and the next conv's input slice (Torch-Pruning's group magnitude; its mean is a constant factor)."""
    net, g = conv_bn_relu_conv()
    w1, gamma, w2 = (t.detach().double() for t in (net[0].weight, net[1].weight, net[3].weight))
    scores = w1.abs().pow(p).sum((1, 2, 3)) + gamma.abs().pow(p) + w2.abs().pow(p).sum((0, 2, 3))
    expected = torch.argsort(scores, stable=True).tolist()
    assert expected != list(range(16))
    assert get_importance(name).order(g, net[0]) == expected
    if name == "l2":                                                    # the default, everywhere
        assert channel_order(g, net[0]) == expected
        prune_group(net, g, "0", 5)
        assert torch.equal(net[1].weight.detach().double(), gamma[sorted(expected[5:])])


def test_l1_and_l2_disagree_somewhere():
    net, g = conv_bn_relu_conv(3)
    with torch.no_grad():  # channels 0 and 1 only in the first filter: one weight of 3 vs 27 weights of 0.3
        net[0].weight[:2] = 0.0
        net[1].weight[:2] = 0.0
        net[3].weight[:, :2] = 0.0
        net[0].weight[0, 0, 0, 0] = 3.0   # L1 3, L2 9
        net[0].weight[1] = 0.3            # L1 8.1, L2 2.43
    l1, l2 = get_importance("l1").order(g, net[0]), get_importance("l2").order(g, net[0])
    assert l1.index(0) < l1.index(1) and l2.index(1) < l2.index(0)


def test_bn_scale_removes_the_smallest_gammas_whatever_the_weights():
    net, g = conv_bn_relu_conv()
    gamma = torch.tensor([0.9, -0.05, 0.3, -1.2, 0.01, 0.5, -0.2, 0.7, 1.1, -0.4, 0.02, 0.6, -0.8, 0.15, 1.0, -0.03])
    with torch.no_grad():
        net[1].weight.copy_(gamma)
        net[0].weight.mul_(1e-3)
        net[0].weight[[1, 4, 10, 15]] *= 1e6            # the smallest |gamma| have by far the largest filters
    assert set(get_importance("l2").order(g, net[0])[:4]).isdisjoint({1, 4, 10, 15})
    assert get_importance("bn-scale").order(g, net[0])[:4] == [4, 10, 15, 1]
    prune_group(net, g, "0", 4, "bn-scale")
    keep = [i for i in range(16) if i not in (1, 4, 10, 15)]
    assert torch.equal(net[1].weight.detach(), gamma[keep])
    assert net[3].in_channels == 12 and net(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)


def test_bn_scale_sums_every_batchnorm_of_the_group():
    """The residual group of TinyNet couples stem's and project's BatchNorms: its order is by |a| + |b|,
    which neither BatchNorm alone gives."""
    m, g = trained_looking(0)
    root = next(r for r in GROUPS if r in ("stem.0", "project.0"))
    a, b = m.stem[1].weight.detach().abs().double(), m.project[1].weight.detach().abs().double()
    total = torch.argsort(a + b, stable=True).tolist()
    assert total != torch.argsort(a, stable=True).tolist() and total != torch.argsort(b, stable=True).tolist()
    assert make("bn-scale", root, (m, g)) == total


def test_random_is_fixed_by_the_group_name_not_the_weights():
    same_width = [r for r in ("branch_a.0", "branch_b.0") if r in GROUPS]
    assert len(same_width) == 2
    orders = [make("random", r) for r in same_width]
    assert orders[0] != orders[1]                                       # another group, another order
    assert [make("random", r, trained_looking(5)) for r in same_width] == orders
    assert orders[0] != sorted(orders[0])


def test_a_proposal_prunes_by_its_criterion(tmp_path):
    """evaluate_proposal hands its criterion to prune_group (the NetAdapt worker side)."""
    from hwnas.adapt.modelfile import load_network, save_network
    from hwnas.adapt.proposals import Proposal, evaluate_proposal
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)).eval()
    gamma = torch.linspace(1.0, 0.1, 16)                                # the last four have the smallest |gamma|
    with torch.no_grad():
        net[1].weight.copy_(gamma)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x=rng.normal(size=(20, 3, 8, 8)).astype(np.float32),
             y=np.arange(20, dtype=np.int64) % 2)
    save_network(net, tmp_path / "in.safetensors", None)
    template = copy.deepcopy(net)
    for criterion, kept in (("bn-scale", gamma[:12]), ("l2", None)):
        out = tmp_path / f"{criterion}.safetensors"
        p = Proposal("0", 16, 12, 1.0, str(tmp_path / "in.safetensors"), str(out), (1, 3, 8, 8),
                     {"spec": str(tmp_path / "tiny.npz"), "image_size": 8}, 0, 4, 0.0, 0, template=template,
                     criterion=criterion)
        evaluate_proposal(p)
        pruned = load_network(out, template)
        assert pruned[0].out_channels == 12 and pruned[5].in_features == 12
        if kept is not None:
            assert torch.equal(pruned[1].weight.detach(), kept)
    assert Proposal.__dataclass_fields__["criterion"].default == "l2"
