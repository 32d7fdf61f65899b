"""The shared inverted-residual block (hwnas.models.layers) keeps every network built from it as it was.

The digests below were recorded before the five MBConv-like blocks became one: a changed state-dict key or
shape breaks users' pretrained weights, NetAdapt's pruned-network files and supernet checkpoints, and a
changed op key orphans every latency table measured for the MnasNet spaces.
"""
import hashlib

import pytest
import torch

import hwnas.models as zoo
from hwnas.models.layers import InvertedResidual
from hwnas.search.spaces import get_space


def keys_digest(model: torch.nn.Module) -> str:
    """sha1 of the sorted (state-dict key, shape) list."""
    items = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return hashlib.sha1(repr(items).encode()).hexdigest()


# name: (params, keys digest) at the defaults (1000 classes, width 1.0)
ZOO = {
    "mnasnet_a1": (3887038, "ad999065dcbdb6e4a9bbf61ef65cc6b704760447"),
    "mnasnet_b1": (4383312, "4f19a8f56b51162bf1ea05d797474b33e058ab3a"),
    "efficientnet_b0": (5288548, "703307496278e365e3b318b5bfbc9b4ed670ac04"),
    "efficientnet_b1": (7794184, "297f691902b9f5ba70434d10705c4407d28bf1d1"),
    "efficientnet_b2": (9109994, "d07657987f2c600b2e641db1a849f1e6e3fb53d4"),
    "efficientnet_b3": (12233232, "6f687f1c60e69acc27ec0add2a27670badaac9ea"),
    "mobilenet_v2": (3504872, "c7d39a42e600c159c9ef6df5b5d02d905351802c"),
    "mobilenet_v3_large": (5483032, "7805812b8c453720be0ffe563bbda351a971c145"),
    "mobilenet_v3_small": (2542856, "c23788eaa2d09e6227d8e01221729d7803e69ade"),
}

# space: (number of distinct ops, sha1 of their keys joined by newlines)
SPACE_OPS = {"mnasnet": (2684, "996cebd02f814d9eaa833ded926b626ec22a9b1f"),
             "mnasnet-tiny": (242, "2b486440d3984b3d54d6eec85e8b96a81d08935b")}

# (space, architecture, params, keys digest): np.random.default_rng(0) samples, six per space; the mnasnet
# ones hold every op (conv, dwconv, mbconv1/3/6) with every skip (pool, identity, none)
ARCHS = [
    ("mnasnet", (4, 1, 1, 0, 0, 0, 0, 0, 0, 2, 1, 2, 2, 1, 1, 2, 1, 1, 2, 1, 0, 2, 2, 0, 1, 1, 1, 0, 2, 2, 4, 0, 0,
                 2, 0, 1, 0, 0, 0, 1, 1, 0), 2748788, "344c1167af884bc44d1b41ac1642fd9135eee723"),
    ("mnasnet", (0, 0, 0, 2, 1, 1, 1, 1, 1, 1, 1, 2, 4, 1, 0, 2, 2, 1, 4, 1, 1, 1, 2, 0, 2, 1, 1, 1, 1, 0, 2, 0, 1,
                 2, 0, 2, 2, 0, 1, 1, 0, 0), 2084086, "a751b047ec3045d23c2d32deaf5f2353a54475ff"),
    ("mnasnet", (3, 1, 1, 1, 2, 1, 1, 1, 0, 0, 2, 1, 0, 0, 0, 2, 1, 2, 1, 0, 1, 2, 0, 0, 3, 0, 1, 0, 2, 1, 4, 1, 1,
                 0, 2, 0, 2, 0, 1, 0, 2, 0), 3261602, "14076ea7ab3b6558b9c8cb949d18c7b49ebf32e6"),
    ("mnasnet", (3, 1, 1, 0, 2, 2, 4, 0, 1, 2, 0, 1, 3, 0, 1, 1, 2, 2, 2, 0, 0, 2, 0, 1, 0, 0, 1, 1, 1, 2, 3, 1, 0,
                 1, 2, 2, 2, 0, 0, 1, 0, 2), 2975890, "d51c1220c6c42e1c3c196189236fcd599361845d"),
    ("mnasnet", (0, 0, 0, 2, 2, 2, 4, 1, 0, 0, 0, 2, 4, 1, 1, 2, 2, 0, 0, 1, 0, 2, 2, 2, 1, 0, 1, 2, 1, 2, 1, 1, 0,
                 1, 0, 0, 4, 1, 0, 2, 2, 0), 3095468, "acbb0eb159483606378a2c5f425b39e4fcd0105f"),
    ("mnasnet", (2, 1, 1, 1, 0, 2, 3, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0, 1, 0, 1, 2, 2, 1, 0, 0, 2, 1, 0, 3, 0, 0,
                 1, 2, 2, 0, 1, 1, 0, 0, 0), 4420596, "7e6439aa16ce64365ef25939146ab49194a65daa"),
    ("mnasnet-tiny", (2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 2, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 2,
                      1, 0, 1, 0, 1, 2, 0, 0, 1, 0, 0), 636168, "6cfc63bdcc5036267f93b7e107bfe1f436cce786"),
    ("mnasnet-tiny", (1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 1, 1, 0, 0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 1, 1, 0, 1, 2,
                      1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1), 716212, "5ea16ca4e97b2869d63609599c9330f49487346d"),
    ("mnasnet-tiny", (1, 0, 0, 0, 0, 1, 2, 0, 1, 1, 0, 0, 2, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1,
                      0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1), 450718, "27bf1ae7920fd63e573a51d8e44ec7010a598450"),
    ("mnasnet-tiny", (2, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 2, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 2,
                      1, 1, 0, 0, 1, 2, 0, 0, 1, 0, 0), 650256, "dbb97a91c077ea98b551ae9cec677baeb6370949"),
    ("mnasnet-tiny", (1, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 1, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 1,
                      0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1), 298004, "62fbd7837ce08c151d55c87e5efa9217b27ad190"),
    ("mnasnet-tiny", (2, 0, 0, 0, 0, 1, 2, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 2, 1, 0, 0, 0, 1, 2, 0, 1, 0, 0, 1, 0,
                      0, 0, 0, 0, 1, 2, 0, 1, 1, 0, 0), 449550, "e4feabd31d397484a4f1cc76d65a39fd5ac35db6"),
]

# sha1 over "<op key> <keys digest of the op's module>" lines, in all_ops() order: every layer the tiny
# space's latency table times
TINY_OP_MODULES = "9289a418ad9b382ee455c025e50e754a6e20988d"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_networks_keep_their_state_dict(name):
    model = zoo.create(name)
    assert any(isinstance(m, InvertedResidual) for m in model.modules()), f"{name} no longer uses the shared block"
    assert (zoo.count_params(model), keys_digest(model)) == ZOO[name]


@pytest.mark.parametrize("space_name", sorted(SPACE_OPS))
def test_space_op_keys_are_unchanged(space_name):
    keys = [op.key for op in get_space(space_name).all_ops()]
    assert (len(keys), hashlib.sha1("\n".join(keys).encode()).hexdigest()) == SPACE_OPS[space_name]


@pytest.mark.parametrize("space_name, arch, params, digest", ARCHS,
                         ids=[f"{s}-{i}" for i, (s, *_) in enumerate(ARCHS)])
def test_space_networks_keep_their_state_dict(space_name, arch, params, digest):
    model = get_space(space_name).build(arch)
    assert (zoo.count_params(model), keys_digest(model)) == (params, digest)


def test_every_tiny_space_op_keeps_its_state_dict():
    lines = [f"{op.key} {keys_digest(op.builder())}" for op in get_space("mnasnet-tiny").all_ops()]
    assert hashlib.sha1("\n".join(lines).encode()).hexdigest() == TINY_OP_MODULES


@pytest.mark.parametrize("cin, cout, stride, skip, residual", [(8, 8, 1, True, True), (8, 8, 1, False, False),
                                                               (8, 8, 2, True, False), (8, 16, 1, True, False)])
def test_the_shortcut_is_added_only_where_shapes_match_and_skip_allows(cin, cout, stride, skip, residual):
    torch.manual_seed(0)
    block = InvertedResidual(cin, cin * 3, cout, 3, stride, se=2, skip=skip).eval()
    x = torch.randn(1, cin, 8, 8)
    with torch.no_grad():
        body = block.block(x)
        assert torch.equal(block(x), x + body if residual else body)
    assert [type(m).__name__ for m in block.block] == ["Sequential", "Sequential", "SqueezeExcite", "Sequential"]
