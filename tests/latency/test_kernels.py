"""Kernel decomposition on onnxruntime's own optimised graph: the fusions the zoo relies on (conv+bn+relu,
residual adds into convs, depthwise convs, SE's broadcast multiply, hard-swish, concatenations), an op no kernel
kind covers, rules that follow the device's optimisation level, and every input form of MODEL."""
from collections import Counter

import onnx
import pytest
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.kernels import Kernel, classify, decompose
from hwnas.models import create, list_models


def _original(dec_model, shape):
    """Op counts of the ONNX graph hwnas exports for a zoo model (before onnxruntime optimises it)."""
    from hwnas.latency.artifacts import prepare_artifact
    art = prepare_artifact(dec_model, "onnx", shape)
    return Counter(n.op_type for n in onnx.load(str(art.path)).graph.node)


def test_resnet18_is_its_convs_with_batch_norms_relus_and_residual_adds_inside():
    shape = (1, 3, 224, 224)
    dec = decompose("cpu", "resnet18", shape)
    kinds = dec.by_kind()
    convs = [k for k in dec.kernels if k.kind == "conv"]
    original = _original("resnet18", shape)
    assert len(convs) == original["Conv"] == 20
    assert "bn" not in kinds and "add" not in kinds and "act" not in kinds and not dec.unsupported
    # every residual add of the network runs inside a conv; each conv+relu is one kernel
    assert sum(k.features()["add"] for k in convs) == original["Add"] == 8
    acts = Counter(k.features()["act"] for k in convs)  # every relu inside a conv; the 3 downsampling 1x1s have none
    assert acts == {"relu": original["Relu"], "none": 3} and original["Relu"] == 17
    assert {"Conv+Add", "Conv+Relu"} <= set(dec.rules)
    assert any(r.startswith("BatchNormalization") for r in dec.rules) or original["BatchNormalization"] == 0
    stem = convs[0].features()
    assert stem["hw"] == (224, 224) and stem["cin"] == 3 and stem["cout"] == 64 and stem["k"] == (7, 7) \
        and stem["s"] == (2, 2)
    assert convs[0].key == "conv-hw:224x224-cin:3-cout:64-k:7x7-s:2x2-act:relu-add:0"
    assert kinds["maxpool"] == 1 and kinds["gap"] == 1 and kinds["fc"] == 1
    assert dec.nodes_ms > 0 and all(k.ms >= 0 for k in dec.kernels)


def test_mobilenet_v2_has_depthwise_kernels_with_relu6_and_its_residual_adds_fused():
    shape = (1, 3, 96, 96)
    dec = decompose("cpu", "mobilenet_v2", shape)
    dw = [k for k in dec.kernels if k.kind == "dwconv"]
    assert len(dw) == 17 and all(k.features()["cin"] == k.features()["cout"] for k in dw)
    assert all(k.features()["act"] == "relu6" for k in dw)
    adds = sum(k.features()["add"] for k in dec.kernels if k.kind in ("conv", "dwconv"))
    assert adds + dec.by_kind()["add"] == _original("mobilenet_v2", shape)["Add"] == 10
    assert not dec.unsupported


def test_mobilenet_v3_small_covers_squeeze_excitation_and_hard_swish():
    dec = decompose("cpu", "mobilenet_v3_small", (1, 3, 96, 96))
    assert not dec.unsupported, dec.unsupported
    muls = [k for k in dec.kernels if k.kind == "mul"]
    # SE: a channel vector times the feature map (the other multiplies are hard-swish's x * hardsigmoid(x))
    assert sum(k.features()["bcast"] for k in muls) == 9
    fns = {k.features()["fn"] for k in dec.kernels if k.kind == "act"} | \
        {k.features()["act"] for k in dec.kernels if k.kind in ("conv", "dwconv")}
    assert "hardswish" in fns or "HardSwish" in str(dec.rules)
    assert dec.by_kind()["gap"] >= 9  # one squeeze per SE block, and the head's pooling


def test_squeezenet_concatenations_are_kernels():
    dec = decompose("cpu", "squeezenet1_1", (1, 3, 96, 96))
    cats = [k for k in dec.kernels if k.kind == "concat"]
    assert len(cats) == 8 and all(k.features()["n"] == 2 for k in cats)
    assert not dec.unsupported


class CumulativeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return torch.cumsum(self.conv(x), dim=1)


def test_an_op_no_kernel_kind_covers_is_listed_by_name_never_dropped():
    dec = decompose("cpu", CumulativeNet().eval(), (1, 3, 16, 16))
    assert [op for _, op in dec.unsupported] == ["ai.onnx:CumSum"]
    assert dec.unsupported[0][0]  # its node name, to show the user
    assert [k.kind for k in dec.kernels if k.kind != "reorder"] == ["conv"]


def test_the_rules_are_observed_from_the_device_not_assumed(tmp_path):
    """With onnxruntime's optimisations off, batch norms and relus run as kernels of their own."""
    f = tmp_path / "devices.yaml"
    f.write_text("plain:\n  backend: onnxruntime\n  threads: 1\n  graph_optimization: disable\n")
    dec = decompose(get_device("plain", f), "resnet18", (1, 3, 64, 64))
    kinds, original = dec.by_kind(), _original("resnet18", (1, 3, 64, 64))
    assert kinds["bn"] == original["BatchNormalization"] and kinds["add"] == 8 and kinds["act"] == 17
    assert "Conv+Relu" not in dec.rules and "Conv+Add" not in dec.rules
    assert all(k.features()["act"] == "none" and k.features()["add"] == 0 for k in dec.kernels if k.kind == "conv")


def test_an_onnx_file_with_dynamic_dimensions_takes_an_input_shape(tmp_path):
    path = tmp_path / "dyn.onnx"
    model = create("resnet18", num_classes=10).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    onnx.checker.check_model(str(path))
    with pytest.raises(HwnasError, match="input"):
        decompose("cpu", str(path))
    dec = decompose("cpu", str(path), "1x3x48x80")
    assert dec.kernels[0].features()["hw"] == (48, 80)
    assert dec.input_shape == (1, 3, 48, 80)


def test_a_device_that_does_not_run_onnx_is_one_clear_error():
    with pytest.raises(HwnasError, match="kernel decomposition reads onnxruntime's optimised graph"):
        decompose("torch-cpu", "resnet18", (1, 3, 32, 32))


def test_classify_reads_a_fused_conv_s_sum_input_and_a_grouped_conv():
    from hwnas.latency.devices.base import RuntimeNode
    n = RuntimeNode(name="c", op="com.microsoft:FusedConv", inputs=[[1, 64, 28, 28], [128, 16, 3, 3], [128],
                                                                   [1, 128, 14, 14]],
                    outputs=[[1, 128, 14, 14]], attrs={"group": 4, "strides": [2, 2], "kernel_shape": [3, 3],
                                                       "activation": "Relu"})
    kind, config = classify(n)
    k = Kernel("c", n.op, kind, config)
    assert k.key == "gconv-hw:28x28-cin:64-cout:128-k:3x3-s:2x2-g:4-act:relu-add:1"
    assert classify(RuntimeNode(name="t", op="ai.onnx:TopK", inputs=[[1, 10]], outputs=[[1, 5]])) is None


@pytest.mark.slow
def test_every_zoo_network_decomposes_without_an_unsupported_op():
    """The whole zoo at each network's own input size: every node is a known kernel kind."""
    missing = {}
    for name in list_models():
        dec = decompose("cpu", name)
        if dec.unsupported:
            missing[name] = dec.unsupported[:3]
    assert not missing, missing
