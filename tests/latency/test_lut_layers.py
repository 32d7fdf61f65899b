"""Per-layer (NetAdapt) tables: real convs timed on onnxruntime over a channel grid, interpolation between points."""
import pytest
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.lut import LayerLatencyTable, LutStore, build_layer_table
from hwnas.latency.lut.layers import conv_key, grid
from tests.latency.lut_helpers import fast_protocol


def small_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.Conv2d(8, 12, 1))


def test_grid_and_key():
    assert grid(12, 4) == [4, 8, 12] and grid(10, 4) == [4, 8, 10] and grid(3, 4) == [3]
    assert conv_key(8, 8, 16, 32, 3, 1, 1, 1, False) == "conv-in:8x8x16-out:32-k:3x3-s:1x1-p:1x1-d:1-g:1"
    assert conv_key(8, 8, 16, 16, (5, 5), (2, 2), (2, 2), (1, 1), True).endswith("-k:5x5-s:2x2-p:2x2-d:1-g:dw")


def test_build_resume_and_interpolate(tmp_path):
    dev = get_device("cpu")
    store = LutStore(tmp_path / "lut.db")
    rep = build_layer_table(dev, small_model(), (1, 3, 8, 8), channel_grid_step=4, store=store, model_id="small",
                            protocol=fast_protocol(), show_progress=False)
    # conv 0: cin {3} x cout {4, 8}; depthwise: {4, 8}; pointwise: cin {4, 8} x cout {4, 8, 12}
    assert (rep.layers, rep.points, rep.measured, rep.skipped) == (3, 10, 10, 0)
    again = build_layer_table(dev, small_model(), (1, 3, 8, 8), channel_grid_step=4, store=store, model_id="small",
                              protocol=fast_protocol(), show_progress=False)
    assert (again.measured, again.skipped) == (0, 10)
    assert store.count(dev.fingerprint_key()) == 20  # 10 points x 2 counted rounds

    table = LayerLatencyTable.load(store, dev.fingerprint_key(), "small")
    fp = dev.fingerprint_key()
    at = lambda key: store.get(fp, key)["value_ms"]  # noqa: E731
    pw = lambda ci, co: conv_key(4, 4, ci, co, 1, 1, 0, 1, False)  # noqa: E731
    assert table.latency("3", 8, 12) == pytest.approx(at(pw(8, 12)))          # grid points are exact
    assert table.latency("3", 4, 4) == pytest.approx(at(pw(4, 4)))
    mid = table.latency("3", 6, 10)                                            # bilinear between four points
    assert mid == pytest.approx((at(pw(4, 8)) + at(pw(4, 12)) + at(pw(8, 8)) + at(pw(8, 12))) / 4)
    dw = lambda c: conv_key(8, 8, c, c, 3, 2, 1, 1, True)  # noqa: E731
    assert table.latency("2", 6, 6) == pytest.approx((at(dw(4)) + at(dw(8))) / 2)
    assert table.latency("0", 3, 0) == 0.0
    with pytest.raises(HwnasError, match="no conv named"):
        table.latency("nope", 4, 4)


def test_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(HwnasError, match="no per-layer table"):
        LayerLatencyTable.load(LutStore(tmp_path / "lut.db"), "abc", "resnet")


def test_layer_table_survives_json_export_import(tmp_path):
    dev = get_device("cpu")
    store = LutStore(tmp_path / "a.db")
    build_layer_table(dev, nn.Sequential(nn.Conv2d(4, 8, 1)), (1, 4, 4, 4), channel_grid_step=4, store=store,
                      model_id="one", protocol=fast_protocol(2, 2), show_progress=False)
    store.export(tmp_path / "t.json")
    other = LutStore(tmp_path / "b.db")
    assert other.import_(tmp_path / "t.json") == 4  # 2 points x 2 rounds
    a = LayerLatencyTable.load(store, dev.fingerprint_key(), "one")
    b = LayerLatencyTable.load(other, dev.fingerprint_key(), "one")
    assert a.latency("0", 4, 6) == b.latency("0", 4, 6) > 0
