"""FaceBoxes is a detector: (loc, conf) over its anchors instead of class logits, so the registry-wide
shape test does not apply to it (it is tagged "detector"); these tests cover it instead."""
import pytest
import torch

import hwnas.models as zoo
from hwnas.latency.export import export_onnx
from hwnas.models.faceboxes import CReLU, num_anchors


def test_registered_as_a_detector_at_1024():
    info = zoo.get_info("faceboxes")
    assert info.input_size == 1024 and "detector" in info.tags
    assert info.paper_params is None and info.paper_macs is None  # the paper states neither


def test_anchor_count_follows_the_paper_tiling():
    # stride 32: 32 px x16 + 64 px x4 + 128 px x1 = 21 per cell; one 256 px (stride 64), one 512 px (128)
    assert num_anchors(1024) == 32 * 32 * 21 + 16 * 16 + 8 * 8 == 21824
    assert num_anchors(256) == 8 * 8 * 21 + 4 * 4 + 2 * 2


@pytest.mark.parametrize("num_classes", [2, 3])
def test_forward_returns_loc_and_conf_over_all_anchors(num_classes):
    model = zoo.create("faceboxes", num_classes=num_classes).eval()
    with torch.no_grad():
        loc, conf = model(torch.randn(2, 3, 256, 256))
    assert loc.shape == (2, num_anchors(256), 4)
    assert conf.shape == (2, num_anchors(256), num_classes)
    assert torch.isfinite(loc).all() and torch.isfinite(conf).all()


def test_rdcl_digests_the_input_32x_before_the_inception_modules():
    model = zoo.create("faceboxes", num_classes=2).eval()
    with torch.no_grad():
        assert model.rdcl(torch.zeros(1, 3, 1024, 1024)).shape == (1, 128, 32, 32)


def test_crelu_doubles_channels_with_one_conv():
    torch.manual_seed(0)
    layer = CReLU(3, 8, 3, 1).eval()
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        y = layer(x)
        z = layer.bn(layer.conv(x))
    assert y.shape == (1, 16, 5, 5)
    assert torch.equal(y[:, :8], z.clamp_min(0)) and torch.equal(y[:, 8:], (-z).clamp_min(0))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in layer.modules()) == 1


def test_size_at_1024_with_two_classes():
    # about a million parameters and under a billion MACs at 1024x1024: what makes it CPU real-time
    s = zoo.stats(zoo.create("faceboxes", num_classes=2), (1, 3, 1024, 1024))
    assert 0.9e6 < s["params"] < 1.1e6 and 0.8e9 < s["macs"] < 1.0e9


def test_exports_to_onnx_with_both_outputs_and_profiles_on_cpu(tmp_path):
    import onnx

    from hwnas.latency.devices import get_device
    torch.manual_seed(0)
    model = zoo.create("faceboxes", num_classes=2)
    res = export_onnx(model, (1, 3, 256, 256), tmp_path / "fb.onnx")  # raises if ORT disagrees with torch
    outs = onnx.load(str(res.path)).graph.output
    assert len(outs) == 2
    m = get_device("cpu").measure(model, (1, 3, 256, 256), warmup=1, runs=3)
    assert m.count == 3 and m.median > 0
