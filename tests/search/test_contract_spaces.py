"""The search-space contract, over every registered space (a new one is tested by registering it): seeded
valid samples, architectures that survive JSON and encode(), a describe() that determines the network, a
network that is exactly its ops where the space says so (and made of its ops' layers in any case), ops
the table covers and op_indices() agrees with, a build that runs, and an exact min_cost()."""
import itertools
import json
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
import torch

from hwnas.search.spaces import get_space, list_spaces
from hwnas.search.spaces.base import Space
from tests.contract_helpers import one_line_error

NAMES = list_spaces()
# forms small enough to enumerate, for the spaces with a min_cost (the registered forms have ~1e11 networks):
# three blocks of every kind of decision the DP sees (op, skip, width and a repeated layer)
SMALL = {name: dict(blocks=((16, 1, 1), (24, 1, 2), (32, 2, 2)), ops=("dwconv", "mbconv6"), kernels=(3,),
                    se_ratios=(0.0,), skips=("identity", "none"), width_mults=(0.5, 1.0), layer_deltas=(0, 1))
         for name in ("mnasnet", "mnasnet-tiny")}
ENUMERABLE = 50_000


@lru_cache(maxsize=None)
def space(name) -> Space:
    return get_space(name)


def samples(name, n, seed=0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [space(name).sample(rng) for _ in range(n)]


def keys(sp, arch) -> list[str]:
    return [op.key for op in sp.ops(arch)]


def zeros(sp, batch=1):
    return torch.zeros(batch, 3, sp.input_size, sp.input_size)


def param_shapes(modules) -> Counter:
    return Counter(tuple(p.shape) for m in modules for p in m.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_name(name):
    sp = space(name)
    assert isinstance(sp, Space) and sp.name == name  # tables and runs are keyed by the space's name
    assert isinstance(sp.input_size, int) and isinstance(sp.num_classes, int)
    assert all(len(d.choices) >= 1 for d in sp.decisions())


def test_an_unknown_space_is_one_line_listing_the_spaces():
    msg = one_line_error(lambda: get_space("nope"), "nope")
    assert all(name in msg for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_valid_and_seeded(name):
    sp = space(name)
    a = samples(name, 20)
    assert samples(name, 20) == a and samples(name, 20, seed=1) != a
    for arch in a:
        assert isinstance(arch, tuple) and all(type(v) is int for v in arch)
        assert sp.validate(arch) == arch
        child = sp.mutate(arch, np.random.default_rng(0))
        assert sp.validate(child) == child != arch


@pytest.mark.parametrize("name", NAMES)
def test_an_architecture_survives_json_and_encode(name):
    sp = space(name)
    a = samples(name, 5)
    for arch in a:
        assert sp.validate(json.loads(json.dumps(list(arch)))) == arch
    enc = sp.encode(a)
    assert enc.shape == (5, len(sp.decisions())) and enc.dtype == np.int64
    assert [sp.validate(row) for row in enc] == a
    for bad in (a[0][:-1], a[0] + (0,), (len(sp.decisions()[0].choices),) + a[0][1:]):
        with pytest.raises(ValueError):
            sp.validate(bad)


@pytest.mark.parametrize("name", NAMES)
def test_describe_is_json_and_determines_the_network(name):
    """Two architectures that describe alike are one network (the same ops); checked on every single-decision
    neighbour of a few samples, where spaces with redundant decisions (unused cell blocks, widths that round
    alike) produce such pairs."""
    sp = space(name)
    for arch in samples(name, 3):
        desc = json.dumps(sp.describe(arch), sort_keys=True, allow_nan=False)
        for i, d in enumerate(sp.decisions()):
            for v in range(len(d.choices)):
                other = sp.validate(arch[:i] + (v,) + arch[i + 1:])
                if json.dumps(sp.describe(other), sort_keys=True) == desc:
                    assert keys(sp, other) == keys(sp, arch), (arch, other)


@pytest.mark.parametrize("name", NAMES)
def test_the_network_is_made_of_its_ops(name):
    """Every layer with weights of build(arch) is in one of ops(arch) and the other way round: what the
    latency table times (op by op) is what the network runs."""
    sp = space(name)
    for arch in samples(name, 2):
        assert param_shapes([sp.build(arch)]) == param_shapes(op.builder() for op in sp.ops(arch))


SEQUENTIAL = [n for n in NAMES if space(n).ops_are_network]


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_a_network_is_exactly_its_ops_in_sequence(name):
    """build(arch) computes what its ops, built alone with the same weights, compute one after the other, and
    each op gets the input shape its key and input_shape say."""
    sp = space(name)
    arch = samples(name, 1, seed=3)[0]
    ops = sp.ops(arch)
    torch.manual_seed(0)
    net = sp.build(arch).eval()
    torch.manual_seed(0)
    alone = [op.build() for op in ops]
    assert len(net) == len(ops)
    x = torch.randn(1, 3, sp.input_size, sp.input_size)
    with torch.no_grad():
        want = net(x)
        for op, module in zip(ops, alone):
            assert tuple(x.shape) == tuple(op.input_shape), op.key
            x = module(x)
    torch.testing.assert_close(x, want)


@pytest.mark.parametrize("name", NAMES)
def test_all_ops_cover_the_networks_and_op_indices_agree(name):
    sp = space(name)
    table = [op.key for op in sp.all_ops()]
    assert len(set(table)) == len(table)
    a = samples(name, 40)
    idx = sp.op_indices(np.asarray(a))
    assert idx.shape[0] == len(a) and idx.dtype == np.int64
    assert ((idx >= -1) & (idx < len(table))).all()
    for arch, row in zip(a, idx):
        assert [table[i] for i in row if i >= 0] == keys(sp, arch)  # in order; -1 pads (anywhere)


@pytest.mark.parametrize("name", NAMES)
def test_every_op_builds_alone_at_its_input_shape(name):
    """As a table build times them: a sample of all_ops() and the ops of one network."""
    sp = space(name)
    table = sp.all_ops()
    pick = np.random.default_rng(0).choice(len(table), min(12, len(table)), replace=False)
    for op in [table[i] for i in pick] + sp.ops(samples(name, 1)[0]):
        with torch.no_grad():
            out = op.build()(torch.zeros(op.input_shape))
        assert torch.isfinite(out).all(), op.key


@pytest.mark.parametrize("name", NAMES)
def test_build_runs_on_its_input_size(name):
    sp = space(name)
    arch = samples(name, 1, seed=2)[0]
    with torch.no_grad():
        assert sp.build(arch).eval()(zeros(sp)).shape == (1, sp.num_classes)
        assert sp.build(arch, num_classes=5).eval()(zeros(sp, 2)).shape == (2, 5)


def _costs(sp, archs, costs):
    idx = sp.op_indices(np.asarray(archs))
    return (costs[np.where(idx >= 0, idx, 0)] * (idx >= 0)).sum(axis=1)


# the spaces that have an exact minimum (Space.min_cost is declared on every space; None: no such structure)
WITH_MIN_COST = [n for n in NAMES if space(n).min_cost(np.ones(len(space(n).all_ops()))) is not None]


@pytest.mark.parametrize("name", WITH_MIN_COST)
def test_min_cost_is_a_lower_bound_on_the_registered_space(name):
    sp = space(name)
    costs = np.random.default_rng(1).uniform(0.1, 1.0, len(sp.all_ops()))
    assert sp.min_cost(costs) <= _costs(sp, samples(name, 500), costs).min() + 1e-9


@pytest.mark.parametrize("name", WITH_MIN_COST)
def test_min_cost_is_the_minimum_over_every_network_of_a_small_form(name):
    sp = get_space(name, **SMALL.get(name, {}))
    size = int(np.prod([len(d.choices) for d in sp.decisions()], dtype=object))
    assert size <= ENUMERABLE, f"give space {name!r} a form small enough to enumerate in SMALL"
    grid = list(itertools.product(*[range(len(d.choices)) for d in sp.decisions()]))
    for seed in range(3):
        costs = np.random.default_rng(seed).uniform(0.1, 1.0, len(sp.all_ops()))
        assert sp.min_cost(costs) == pytest.approx(_costs(sp, grid, costs).min())
