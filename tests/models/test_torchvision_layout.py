"""--weights in torchvision's layout: the recorded key lists of torchvision's definitions map onto the zoo, and a
mapped network computes what torchvision's computed with the same weights (recorded from torchvision's code)."""
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.models import create
from hwnas.models.torchvision_layout import (TORCHVISION, fit_weights, key_map, recorded_keys, recorded_output,
                                             reference_input, reference_weights, torchvision_kwargs)


def torchvision_checkpoint(zoo_name: str) -> dict:
    """A state dict with torchvision's names, order and shapes, holding the weights the recording used."""
    return reference_weights(recorded_keys(TORCHVISION[zoo_name]))


@pytest.mark.parametrize("zoo_name", sorted(TORCHVISION))
def test_a_torchvision_checkpoint_computes_what_torchvision_computed(zoo_name):
    model = create(zoo_name, num_classes=1000, **torchvision_kwargs(zoo_name)).eval()
    sd, notes, layout, new_classifier = fit_weights(model, torchvision_checkpoint(zoo_name), zoo_name)
    assert not new_classifier
    assert layout == "torchvision"
    model.load_state_dict(sd)  # strict: every tensor of the zoo network comes from the checkpoint
    assert notes == [f"mapped from torchvision's {TORCHVISION[zoo_name]} layout"]
    with torch.no_grad():
        out = model(reference_input()).double().flatten()
    ref = recorded_output(TORCHVISION[zoo_name])
    assert out[:8].tolist() == pytest.approx(ref["first"], rel=1e-3, abs=1e-3 * ref["norm"] / 30)
    assert float(out.norm()) == pytest.approx(ref["norm"], rel=1e-3)
    assert float(out.sum()) == pytest.approx(ref["sum"], abs=1e-3 * ref["norm"] * 30)


def test_resnet50_computes_torchvision_s_function_only_with_the_stride_in_the_3x3():
    """torchvision's ResNet-50 is v1.5; the zoo's default is the paper's v1: the same tensors, another network."""
    ref = recorded_output("resnet50")
    outs = {}
    for kw in ({}, torchvision_kwargs("resnet50")):
        model = create("resnet50", **kw).eval()
        model.load_state_dict(fit_weights(model, torchvision_checkpoint("resnet50"), "resnet50")[0])
        with torch.no_grad():
            outs[bool(kw)] = float(model(reference_input()).double().norm())
    assert outs[True] == pytest.approx(ref["norm"], rel=1e-3)
    assert outs[False] != pytest.approx(ref["norm"], rel=1e-2)


def test_names_map_to_the_layers_they_name():
    """Spot checks by name: the mapping is not just any order-preserving pairing."""
    r50 = key_map("resnet50", create("resnet50"))
    zoo = create("resnet50")
    stem = next(n for n, m in zoo.named_modules() if isinstance(m, torch.nn.Conv2d))
    fc = [n for n, m in zoo.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert r50["conv1.weight"] == f"{stem}.weight"
    assert r50["fc.weight"] == f"{fc}.weight" and r50["fc.bias"] == f"{fc}.bias"
    # the 1x1 expansion of the last bottleneck is the last conv before the classifier
    last_conv = [n for n, m in zoo.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert r50["layer4.2.conv3.weight"] == f"{last_conv}.weight"
    shuffle = key_map("shufflenet_v2_x1_0", create("shufflenet_v2_x1_0"))
    # torchvision's shortcut branch (branch1: depthwise 3x3 then 1x1) is the zoo's shortcut
    dw = shuffle["stage2.0.branch1.0.weight"]
    assert dict(create("shufflenet_v2_x1_0").state_dict().items())[dw].shape == (24, 1, 3, 3)


def test_a_1000_class_checkpoint_loads_into_a_10_class_network_with_a_new_classifier():
    model = create("mobilenet_v2", num_classes=10)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("classifier")}
    sd, notes, _, new_classifier = fit_weights(model, torchvision_checkpoint("mobilenet_v2"), "mobilenet_v2")
    model.load_state_dict(sd)
    assert new_classifier and any("1000 classes and this network 10" in n for n in notes)
    for k, v in head_before.items():
        assert torch.equal(model.state_dict()[k], v)  # left as initialised
    ck = torchvision_checkpoint("mobilenet_v2")
    stem = key_map("mobilenet_v2", model)["features.0.0.weight"]
    assert torch.equal(model.state_dict()[stem], ck["features.0.0.weight"])


def test_older_checkpoints_without_num_batches_tracked_and_dataparallel_prefixes_load():
    ck = {f"module.{k}": v for k, v in torchvision_checkpoint("resnet18").items()
          if not k.endswith("num_batches_tracked")}
    model = create("resnet18", num_classes=1000)
    sd, notes, _, new_classifier = fit_weights(model, ck, "resnet18")
    assert not new_classifier
    model.load_state_dict(sd)
    assert any("num_batches_tracked" in n for n in notes)


def test_own_names_still_load_and_a_checkpoint_that_fits_nothing_names_its_first_keys():
    model = create("resnet18", num_classes=10)
    own = create("resnet18", num_classes=10).state_dict()
    sd, notes, _, _ = fit_weights(model, own, "resnet18")
    assert notes == [] and all(torch.equal(sd[k], own[k]) for k in own)
    wrong = torchvision_checkpoint("resnet34")  # another network's layout
    with pytest.raises(HwnasError, match=r"fit neither the network's own names nor torchvision's layout; "
                                         r"closest, .*(missing|unexpected|size mismatch) \S+") as e:
        fit_weights(model, wrong, "resnet18", source="weights r34.pth")
    assert "\n" not in str(e.value) and str(e.value).startswith("weights r34.pth fit")
    bad = dict(torchvision_checkpoint("resnet18"))
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(HwnasError, match=r"size mismatch for \S+ \[64, 64, 1, 1\] \(the network's is \[64, 64, 3, 3\]"):
        fit_weights(create("resnet18"), bad, "resnet18")


def test_a_network_torchvision_does_not_define_accepts_only_its_own_names():
    model = create("vgg16", num_classes=10)
    with pytest.raises(HwnasError, match=r"fit this network; closest, the network's own names: missing"):
        fit_weights(model, torchvision_checkpoint("resnet18"), "vgg16")
