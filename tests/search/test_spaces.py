"""The search-space contract on the registered MnasNet spaces (real torch models)."""
import json

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.search.spaces import get_space, list_spaces

FIELDS = ("op", "kernel", "se", "skip", "width", "layers")


def test_registry():
    assert {"mnasnet", "mnasnet-tiny"} <= set(list_spaces())
    with pytest.raises(HwnasError, match="nope"):
        get_space("nope")
    assert get_space("mnasnet", input_size=160).input_size == 160


def test_decisions_are_seven_blocks_of_six():
    space = get_space("mnasnet")
    d = space.decisions()
    assert [x.name for x in d] == [f"b{b}.{f}" for b in range(7) for f in FIELDS]
    assert d[0].choices == ("conv", "dwconv", "mbconv1", "mbconv3", "mbconv6")
    assert d[1].choices == (3, 5) and d[2].choices == (0.0, 0.25) and d[3].choices == ("pool", "identity", "none")


def test_sample_mutate_validate_encode_describe():
    space = get_space("mnasnet-tiny")
    rng = np.random.default_rng(0)
    a = space.sample(rng)
    assert isinstance(a, tuple) and space.validate(a) == a
    assert space.validate(list(a)) == a
    for _ in range(20):
        b = space.mutate(a, rng)
        assert sum(x != y for x, y in zip(a, b)) == 1 and space.validate(b) == b
    for bad in (a[:-1], a + (0,), (99,) + a[1:], "abc"):
        with pytest.raises(ValueError):
            space.validate(bad)
    enc = space.encode([a, space.sample(rng)])
    assert enc.shape == (2, len(space.decisions())) and enc.dtype == np.int64 and tuple(enc[0]) == a
    desc = space.describe(a)
    json.dumps(desc)
    assert len(desc["blocks"]) == 7 and desc["input_size"] == 32


def test_build_runs_and_matches_its_ops():
    space = get_space("mnasnet-tiny")
    rng = np.random.default_rng(1)
    for _ in range(3):
        a = space.sample(rng)
        net = space.build(a, num_classes=5).eval()
        with torch.no_grad():
            assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
        ops = space.ops(a)
        assert ops[0].key.startswith("stem-") and ops[-1].key.startswith("head-") and len(ops) == len(net)
        x = torch.zeros(ops[1].input_shape)
        with torch.no_grad():
            ops[1].build()(x)  # each op builds alone at its input shape


def test_all_ops_cover_every_sampled_network():
    space = get_space("mnasnet-tiny")
    keys = {op.key for op in space.all_ops()}
    assert len(keys) == len(space.all_ops())
    rng = np.random.default_rng(2)
    for _ in range(100):
        assert {op.key for op in space.ops(space.sample(rng))} <= keys


def test_min_cost_is_the_true_minimum_on_a_small_space():
    space = get_space("mnasnet-tiny", ops=("dwconv", "mbconv6"), kernels=(3,), se_ratios=(0.0,),
                      skips=("none",), width_mults=(0.5, 1.0), layer_deltas=(0,))
    costs = np.random.default_rng(3).uniform(0.1, 1.0, len(space.all_ops()))
    import itertools
    archs = np.array(list(itertools.product(*[range(len(d.choices)) for d in space.decisions()])))
    brute = costs[np.where((idx := space.op_indices(archs)) >= 0, idx, 0)] * (idx >= 0)
    assert space.min_cost(costs) == pytest.approx(brute.sum(axis=1).min())


def test_a_batched_space_is_the_space_with_batched_ops():
    from hwnas.latency.lut.store import space_id
    from hwnas.search.spaces.base import batch_of, batched
    from tests.latency.lut_helpers import micro_space
    space = micro_space()
    assert batched(space, 1) is space and batch_of(space) == 1
    b = batched(space, 8)
    arch = space.sample(np.random.default_rng(0))
    assert batch_of(b) == 8 and b.decisions() == space.decisions() and b.input_size == space.input_size
    assert [op.key for op in b.ops(arch)] == [op.key + "-n:8" for op in space.ops(arch)]
    assert all(op.input_shape[0] == 8 and op.input_shape[1:] == o.input_shape[1:]
               for op, o in zip(b.all_ops(), space.all_ops()))
    assert np.array_equal(b.op_indices(np.asarray([arch])), space.op_indices(np.asarray([arch])))
    assert space_id(b) != space_id(space)  # its networks' timings never mix with batch 1's
    import copy
    again = copy.copy(b)  # copied (as executors' serialisers do) without recursing into __getattr__
    assert again.batch == 8 and [o.key for o in again.all_ops()] == [o.key for o in b.all_ops()]
