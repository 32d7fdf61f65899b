"""The NASNet / PNAS cell space: canonical architectures, growth by one block, networks that are their ops."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.search.spaces import get_space, list_spaces
from hwnas.search.spaces.nasnet import Cell, CellHead, unused_blocks

SMALL = dict(channels=8, stem=8, normal_cells=1, stacks=2, max_blocks=3)


def test_registered_with_the_paper_decisions():
    assert {"nasnet", "pnas"} <= set(list_spaces())
    nasnet, pnas = get_space("nasnet"), get_space("pnas")
    assert len(nasnet.decisions()) == 1 + 2 * 5 * 4      # blocks + (normal, reduce) x 5 blocks x 4
    assert len(pnas.decisions()) == 1 + 5 * 4
    d = {x.name: x.choices for x in nasnet.decisions()}
    assert d["blocks"] == (1, 2, 3, 4, 5)
    assert d["reduce.b3.in2"] == (0, 1, 2, 3, 4)            # h-2, h-1, blocks 0..2
    assert len(d["normal.b0.op1"]) == 8


def test_canonical_forms_one_architecture_per_network():
    space = get_space("pnas", **SMALL)
    # block 0 reads (h-1, sep3) and (h-2, max3): swapping the pairs is the same network
    a = [1, 1, 0, 1, 5, 0, 2, 2, 2, 0, 0, 0, 0]
    b = [1, 0, 1, 5, 1, 0, 2, 2, 2, 0, 0, 0, 0]
    assert space.validate(a) == space.validate(b)
    # blocks beyond `blocks` do not matter and are zeroed
    c = list(space.validate(a))
    c[9:13] = [1, 2, 3, 4]
    assert space.validate(c) == space.validate(a)
    assert 136 == len({tuple(x) for x in space.expand(None)}) == len(space.expand(None))   # PNAS's 136


def test_expand_grows_one_block_and_keeps_the_others():
    space = get_space("nasnet", **SMALL)
    rng = np.random.default_rng(0)
    parent = space.validate([0] + list(space.sample(rng))[1:])
    kids = space.expand(parent)
    assert len(kids) == len({tuple(k) for k in kids}) == (3 * 8 * (3 * 8 + 1) // 2) ** 2
    for k in kids[:: max(1, len(kids) // 50)]:
        assert space.validate(k) == tuple(k)
        assert space.blocks(k) == 2
        assert [c[:1] for c in space.cells_of(k)] == [c[:1] for c in space.cells_of(parent)]
    full = space.validate([2] + list(space.sample(rng))[1:])
    assert len(space.expand(full)) == 0


def test_sample_mutate_describe():
    space = get_space("nasnet")
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = space.sample(rng)
        assert space.validate(a) == a
        m = space.mutate(a, rng)
        assert m != a and space.validate(m) == m
    d = space.describe(a)
    json.dumps(d)
    assert set(d) >= {"blocks", "normal", "reduce", "normal_concat", "reduce_concat"}
    assert len(d["normal"]) == d["blocks"]


def _leaf_inputs(net):
    """Input shapes of the modules that are ops, in call order."""
    shapes, hooks = [], []
    targets = [net.stem]
    for cell in net.cells:
        assert isinstance(cell, Cell)
        targets += [cell.pre0, cell.pre1] + [m for pair in cell.blocks for m in pair if not isinstance(m, nn.Identity)]
    targets.append(net.head)
    for m in targets:
        hooks.append(m.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(inp[0].shape))))
    return shapes, hooks


def test_network_is_exactly_its_ops():
    space = get_space("nasnet")
    rng = np.random.default_rng(2)
    keys = [op.key for op in space.all_ops()]
    assert len(set(keys)) == len(keys)
    archs = [space.sample(rng) for _ in range(60)]
    idx = space.op_indices(archs)
    for a, row in zip(archs, idx):
        ops = space.ops(a)
        assert [keys[i] for i in row if i >= 0] == [op.key for op in ops]
    for a in archs[:4]:
        net = space.build(a, num_classes=7).eval()
        shapes, hooks = _leaf_inputs(net)
        with torch.no_grad():
            assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
        for h in hooks:
            h.remove()
        ops = space.ops(a, num_classes=7)
        glue = [op for op in ops if op.key.startswith(("add-", "concat-"))]
        modules = [op for op in ops if op not in glue]
        assert shapes == [op.input_shape for op in modules]    # same ops, same order, same shapes
        cells = space.cells_of(a)
        assert sum(op.key.startswith("add-") for op in glue) == sum(len(cells[t]) for t, *_ in space.layout)
        assert sum(op.key.startswith("concat-") for op in glue) == sum(len(unused_blocks(cells[t])) > 1
                                                                       for t, *_ in space.layout)
        assert isinstance(net.head, CellHead) and ops[-1].key.endswith("classes:7")
        for op in modules[1:-1:7]:                              # each op builds alone at its input shape
            out = op.build()(torch.zeros(op.input_shape))
            h, c = op.key.split("-out:")[1].split("-")[0].split("x")[1:]
            assert out.shape[1:] == (int(c), int(h), int(h))


def test_cell_output_concatenates_the_unread_blocks():
    cell = ((0, 1, 1, 2), (1, 2, 0, 4), (0, 1, 6, 7))  # block 1 reads block 0: blocks 1 and 2 are the output
    assert unused_blocks(cell) == [3, 4]
    m = Cell(cell, get_space("nasnet").config.ops, 8, 8, 4, reduce=True, reduce_prev=False)
    y = m(torch.zeros(1, 8, 16, 16), torch.zeros(1, 8, 16, 16))
    assert y.shape == (1, 8, 8, 8)


def test_features_are_block_averaged_one_hots():
    space = get_space("nasnet")
    rng = np.random.default_rng(3)
    archs = [space.sample(rng) for _ in range(20)]
    f = space.features(archs)
    n_ops = len(space.config.ops)
    assert f.shape == (20, 2 * 2 * (3 + n_ops) + 1)
    per_cell = f[:, :-1].reshape(20, 2, 2, 3 + n_ops)
    np.testing.assert_allclose(per_cell[..., :3].sum(-1), 1.0, rtol=1e-6)   # one input kind per slot
    np.testing.assert_allclose(per_cell[..., 3:].sum(-1), 1.0, rtol=1e-6)   # one op per slot
    np.testing.assert_allclose(f[:, -1], [space.blocks(a) / 5 for a in archs])


@pytest.mark.parametrize("name", ["nasnet", "pnas"])
def test_onnx_export_matches_torch(name, tmp_path):
    import onnxruntime as ort
    from hwnas.latency.export import export_onnx
    space = get_space(name)
    a = space.sample(np.random.default_rng(4))
    torch.manual_seed(0)
    net = space.build(a)
    for m in net.modules():  # BN statistics of real activations: an untrained cell stack's output barely moves
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32))
    net.eval()
    res = export_onnx(net, (1, 3, 32, 32), tmp_path / "cell.onnx")
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 32, 32)
    got = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1].numpy()})[0] for i in range(4)])
    with torch.no_grad():
        ref = net(x).numpy()
    assert ref.std(axis=0).mean() > 1e-3          # the output depends on the input
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
