"""Per-layer costs: timed on the real onnxruntime device, stored in the LUT store (SQLite), reused by a second run."""
import sqlite3

from hwnas.adapt.costs import LayerCosts
from hwnas.adapt.groups import build_graph, conv_changes
from hwnas.latency.devices import get_device
from hwnas.latency.lut.layers import conv_input_sizes
from tests.latency.lut_helpers import fast_protocol
from tinynet import TinyNet

SHAPE = (1, 3, 32, 32)


def test_conv_input_sizes():
    sizes = conv_input_sizes(TinyNet(), SHAPE)
    assert sizes["stem.0"] == (32, 32) and sizes["dw.0"] == (16, 16) and sizes["head.0"] == (8, 8)
    assert sizes["se.fc1"] == (1, 1)


def test_costs_measured_once_then_read_back(tmp_path):
    db = tmp_path / "layers.db"
    m = TinyNet()
    dev = get_device("cpu")
    costs = LayerCosts(dev, m, SHAPE, db=db, protocol=fast_protocol(2, 5, 2))
    told = []
    costs.on_timed = told.append  # what a progress bar is told: each conv as it is timed, never a cached one
    wide = costs.latency("head.0", 64, 128)
    narrow = costs.latency("head.0", 64, 8)
    assert wide > 0 and narrow > 0 and costs.timed == 2
    assert costs.latency("head.0", 64, 128) == wide and costs.timed == 2  # cached
    assert told == [costs.key("head.0", 64, 128), costs.key("head.0", 64, 8)]
    g = build_graph(m, SHAPE)
    d = costs.delta(conv_changes(m, g, "head.0", 120))
    assert d == costs.latency("head.0", 64, 8) - wide
    costs.close()
    again = LayerCosts(dev, m, SHAPE, db=db, protocol=fast_protocol(2, 5, 2))
    assert again.latency("head.0", 64, 128) == wide and again.timed == 0
    rows = sqlite3.connect(db).execute("SELECT fingerprint, key FROM measurements").fetchall()
    assert len(rows) == 4 and len({k for _, k in rows}) == 2  # two convs, two counted rounds each
    assert all(fp == dev.fingerprint_key() for fp, _ in rows)
    assert any("in:8x8x64-out:128-k:1x1" in k for _, k in rows)


def test_costs_at_a_batch_are_their_own_rows(tmp_path):
    """NetAdapt --batch N: each conv is timed at batch N, under a key of its own (batch-1 keys unchanged)."""
    db = tmp_path / "layers.db"
    m = TinyNet()
    dev = get_device("cpu")
    one = LayerCosts(dev, m, SHAPE, db=db, protocol=fast_protocol(2, 5, 2))
    four = LayerCosts(dev, m, (4, *SHAPE[1:]), db=db, protocol=fast_protocol(2, 5, 2))
    assert four.key("head.0", 64, 128) == one.key("head.0", 64, 128) + "-n:4"
    assert "-n:" not in one.key("head.0", 64, 128)
    shapes = []
    real = dev.latency
    dev.latency = lambda model, shape, protocol=None, **kw: shapes.append(shape) or real(model, shape, protocol, **kw)
    try:
        four.latency("head.0", 64, 128)
    finally:
        dev.latency = real
    assert shapes == [(4, 64, 8, 8)]


def test_kernel_layer_costs_come_from_the_kernel_table_and_time_nothing(built, tmp_path):
    """--layer-costs kernels: each conv matched to the kernel the runtime runs at its place (fused relu, layout),
    its cost predicted by the kernel table; nothing timed, fewer channels predicted cheaper."""
    from hwnas.adapt.costs import KernelLayerCosts, conv_contexts
    db = tmp_path / "k.db"
    with sqlite3.connect(db) as copy:  # the session's small kernel table
        sqlite3.connect(built[0]).backup(copy)
    m = TinyNet(width=32)
    dev = get_device("cpu")
    ctx = conv_contexts(dev, m, SHAPE)
    assert ctx["stem.0"][1] == "relu" and ctx["dw.0"][1] == "relu" and ctx["project.0"][1] == "none"
    assert "nchwc" in ctx["head.0"][0]
    costs = KernelLayerCosts(dev, m, SHAPE, db=db)
    assert costs.source.startswith("kernel table of cpu") and "convs matched" in costs.source
    wide, narrow = costs.latency("head.0", 64, 128), costs.latency("head.0", 64, 8)
    assert wide > narrow > 0 and costs.timed == 0
    assert costs.latency("dw.0", 64, 64) > 0
    g = build_graph(m, SHAPE)
    assert costs.delta(conv_changes(m, g, "head.0", 120)) == narrow - wide
    assert LayerCosts.source.startswith("measured per layer")
    costs.close()


def test_kernel_layer_costs_on_litert_match_each_conv_to_its_tflite_operator(built_litert, tmp_path):
    """The same on litert-cpu: convs matched to the .tflite operators XNNPACK runs (padded ones on their padded
    size), costs predicted by LiteRT's kernel table, nothing timed."""
    from hwnas.adapt.costs import KernelLayerCosts, conv_contexts
    db = tmp_path / "k.db"
    with sqlite3.connect(db) as copy:
        sqlite3.connect(built_litert[0]).backup(copy)
    m = TinyNet(width=32)
    dev = get_device("litert-cpu")
    ctx = conv_contexts(dev, m, SHAPE)
    assert {"stem.0", "expand.0", "dw.0", "project.0", "branch_a.0", "branch_b.0", "head.0"} <= set(ctx)
    assert ctx["dw.0"][0] == "tflite:DEPTHWISE_CONV_2D" and ctx["head.0"][0] == "tflite:CONV_2D"
    assert ctx["stem.0"][1] == "relu" and ctx["project.0"][1] == "none"
    costs = KernelLayerCosts(dev, m, SHAPE, db=db)
    assert costs.source.startswith("kernel table of litert-cpu")
    wide, narrow = costs.latency("head.0", 64, 128), costs.latency("head.0", 64, 8)
    assert wide > narrow > 0 and costs.timed == 0 and costs.latency("dw.0", 64, 64) > 0
    costs.close()
