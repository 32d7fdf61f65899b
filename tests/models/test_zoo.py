"""Every registered network, parametrized over the registry: shape, paper figures, ONNX export, width_mult."""
import functools
import math

import pytest
import torch

import hwnas.models as zoo
from hwnas.errors import HwnasError
from hwnas.latency.export import export_onnx
from tests.models.zoo_sizes import HEAVY, is_detector, small_size

NAMES = zoo.list_models()
WIDTH_NAMES = [n for n in NAMES if zoo.get_info(n).width_mult]
# Networks registered without paper figures, on purpose (nothing to compare against).
# (ZFNet's and FaceBoxes' papers give no parameter or MAC figures.)
NO_PAPER_FIGURES = {"lenet5", "zfnet", "faceboxes"}
KNOWN_TAGS = {"params-from-ref", "macs-from-ref", "params-rounded", "tp-unsupported", "detector"}
# Detectors return (loc, conf), not class logits: tests/models/test_faceboxes.py covers their shapes/export.
CLASSIFIERS = [n for n in NAMES if not is_detector(n)]


@functools.lru_cache(maxsize=None)
def paper_stats(name):
    info = zoo.get_info(name)
    torch.manual_seed(0)
    return zoo.stats(zoo.create(name), (1, 3, info.input_size, info.input_size))


def test_the_zoo_is_complete():
    expected = {"lenet5", "alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "se_resnet50",
                "densenet121", "squeezenet1_0", "squeezenet1_1", "xception", "mobilenet_v1", "mobilenet_v2",
                "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v1", "shufflenet_v2_x0_5",
                "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mnasnet_a1", "mnasnet_b1",
                "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
                # issue 11
                "googlenet", "inception_v3", "inception_v4", "inception_resnet_v2", "zfnet", "res2net50",
                "nf_resnet50", "residual_attention_56", "nasnet_a_mobile", "pnasnet5_mobile", "faceboxes"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_registration_is_complete(name):
    info = zoo.get_info(name)
    assert info.family and info.input_size >= 32
    assert set(info.tags) <= KNOWN_TAGS, info.tags
    if name not in NO_PAPER_FIGURES:
        assert info.paper_params and info.paper_macs, f"{name} has no paper figures registered"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_shape(name):
    size = small_size(name)
    model = zoo.create(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def _matches(measured, paper, rounded):
    if rounded:  # the paper prints two significant figures: the measured figure must round to it
        digits = 2 - int(math.floor(math.log10(abs(paper)))) - 1
        return round(measured, digits) == paper
    return abs(measured / paper - 1) <= 0.02


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_match_the_paper(name):
    info = zoo.get_info(name)
    if name in NO_PAPER_FIGURES:
        pytest.skip(f"{name}: no paper figures registered")
    s = paper_stats(name)
    assert _matches(s["params"], info.paper_params, "params-rounded" in info.tags), \
        f"{name}: {s['params']:,} params vs paper {info.paper_params:,.0f}"
    assert abs(s["macs"] / info.paper_macs - 1) <= 0.02, f"{name}: {s['macs']:,} MACs vs paper {info.paper_macs:,.0f}"


def test_rounded_rule_is_not_a_free_pass():
    assert _matches(1_366_792, 1.4e6, True)
    assert not _matches(1_300_000, 1.4e6, True) and not _matches(1_460_000, 1.4e6, True)
    assert not _matches(1_366_792, 1.4e6, False)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in CLASSIFIERS])
def test_onnx_export_matches_torch(name, tmp_path):
    size = small_size(name)
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10)
    res = export_onnx(model, (1, 3, size, size), tmp_path / "m.onnx", dynamo=False)  # raises on mismatch
    assert res.path.exists() and res.max_abs_diff is not None


@pytest.mark.parametrize("name", WIDTH_NAMES)
def test_width_mult_shrinks_and_grows(name):
    p = {w: zoo.count_params(zoo.create(name, num_classes=10, width_mult=w)) for w in (0.5, 1.0, 1.5)}
    assert p[0.5] < p[1.0] < p[1.5], p
    size = small_size(name)
    model = zoo.create(name, num_classes=10, width_mult=0.75).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)
    # rounded the usual way: in the MobileNet-style networks every depthwise conv is a multiple of 8 wide
    if not zoo.get_info(name).family.startswith("shufflenet"):
        dw = {m.out_channels for m in zoo.create(name, num_classes=10, width_mult=0.5).modules()
              if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels}
        assert dw and all(w % 8 == 0 for w in dw), sorted(dw)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in WIDTH_NAMES][:3])
def test_width_mult_refused_where_the_paper_has_none(name):
    with pytest.raises(HwnasError, match="no width multiplier"):
        zoo.create(name, width_mult=0.5)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(HwnasError, match="unknown model 'resnet9000'"):
        zoo.create("resnet9000")
    with pytest.raises(HwnasError, match="unknown model"):
        zoo.get_info("nope")
