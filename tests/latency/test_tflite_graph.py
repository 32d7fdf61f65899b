"""Reading a .tflite file as the kernels LiteRT runs: converted zoo networks (litert-torch, the real converter)
decomposed on the litert-cpu device with every fusion pattern the zoo has there (activations fused by the
converter, pads folded into convs by XNNPACK, layout transposes and channel shuffles), and an operator no kernel
kind covers listed by name."""
import numpy as np
import pytest
import torch

from hwnas.latency import tflite_kernels
from hwnas.latency.kernels import decompose
from hwnas.latency.tflite_graph import classify, fold_pads, read_nodes

pytest.importorskip("litert_torch")


def test_mobilenet_v2_is_convs_with_fused_relu6_and_pads_folded_into_them():
    dec = decompose("litert-cpu", "mobilenet_v2", (1, 3, 64, 64))
    kinds = dec.by_kind()
    assert kinds["conv"] == 35 and kinds["dwconv"] == 17 and kinds["add"] == 10
    assert kinds["gap"] == 1 and kinds["fc"] == 1 and kinds["transpose"] == 1  # the input's NCHW -> NHWC
    assert "pad" not in kinds and not dec.unsupported
    assert "PAD into the following conv (XNNPACK folds constant pads into convolutions)" in dec.rules
    assert "CONV_2D+RELU6" in dec.rules and "DEPTHWISE_CONV_2D+RELU6" in dec.rules
    first = dec.kernels[1]
    assert first.key.startswith("conv-hw:") and dict(first.config)["cin"] == 3 and dict(first.config)["act"] == "relu6"


def test_shufflenet_runs_channel_shuffles_as_transposes_and_reshapes_and_splits_as_slices():
    kinds = decompose("litert-cpu", "shufflenet_v2_x0_5", (1, 3, 64, 64)).by_kind()
    assert kinds["transpose"] > 30 and kinds["reshape"] > 20 and kinds["slice"] > 20 and kinds["concat"] >= 16
    assert kinds["maxpool"] == 1 and kinds["pad"] == 1  # the pad before the max pool is not a conv's: it stays


def test_an_operator_no_kind_covers_is_listed_by_name_not_counted_as_zero():
    class Lrn(torch.nn.Module):  # googlenet's local response norm: a StableHLO window sum on LiteRT
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.lrn = torch.nn.LocalResponseNorm(5)

        def forward(self, x):
            return self.lrn(torch.relu(self.conv(x)))

    dec = decompose("litert-cpu", Lrn().eval(), (1, 3, 16, 16))
    assert dec.unsupported and all(op.startswith("tflite:") for _, op in dec.unsupported)
    assert any("REDUCE_WINDOW" in op for _, op in dec.unsupported)
    assert dec.by_kind()["conv"] == 1


def test_only_a_pad_read_by_a_conv_alone_is_folded(tmp_path):
    fb = tflite_kernels._Flatbuffer(0)
    s = fb.s
    x = fb.input((1, 8, 8, 4))
    p1 = fb.op("PAD", [x, fb.ints([[0, 0], [1, 1], [1, 1], [0, 0]])], (1, 10, 10, 4), s.PadOptionsT())
    y = fb.op("CONV_2D", [p1, fb.weights((4, 3, 3, 4), 36), fb.tensor((4,), np.zeros(4, np.float32))],
              (1, 8, 8, 4), s.Conv2DOptionsT(padding=s.Padding.VALID, strideH=1, strideW=1, dilationHFactor=1,
                                             dilationWFactor=1, fusedActivationFunction=1))
    p2 = fb.op("PAD", [y, fb.ints([[0, 0], [1, 1], [1, 1], [0, 0]])], (1, 10, 10, 4), s.PadOptionsT())
    z = fb.op("MAX_POOL_2D", [p2], (1, 4, 4, 4), s.Pool2DOptionsT(padding=s.Padding.VALID, strideH=2, strideW=2,
                                                                  filterHeight=3, filterWidth=3))
    fb.outputs = [z]
    fb.write(tmp_path / "m.tflite")
    nodes = read_nodes(tmp_path / "m.tflite")
    kept, folded = fold_pads(nodes)
    assert folded == 1 and [n.op for n in kept] == ["tflite:CONV_2D", "tflite:PAD", "tflite:MAX_POOL_2D"]
    assert classify(kept[0]) == ("conv", (("hw", (10, 10)), ("cin", 4), ("cout", 4), ("k", (3, 3)), ("s", (1, 1)),
                                          ("act", "relu"), ("add", 0)))
    assert classify(kept[1])[0] == "pad" and nodes[0].attrs["paddings"] == [0, 0, 1, 1, 1, 1, 0, 0]


def test_a_file_that_is_not_a_tflite_model_is_one_clear_error(tmp_path):
    from hwnas.errors import HwnasError
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(HwnasError, match="cannot read x.tflite as a .tflite model"):
        read_nodes(bad)


def test_without_xnnpack_no_pad_is_folded_and_the_rules_say_which_kernels_run(tmp_path):
    from hwnas.latency.devices import get_device
    devices = tmp_path / "devices.yaml"
    devices.write_text("litert-builtin:\n  backend: litert\n  threads: 1\n  xnnpack: false\n")
    dec = decompose(get_device("litert-builtin", str(devices)), "mobilenet_v2", (1, 3, 64, 64))
    assert dec.by_kind()["pad"] == 5 and not any("XNNPACK" in r for r in dec.rules)
    assert "TFLite builtin kernels, one per operator (batch norms folded by the converter)" in dec.rules
