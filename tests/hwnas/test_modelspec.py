"""MODEL as a zoo name, a network file hwnas wrote, or package.module:factory (your own network)."""
import textwrap

import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.modelspec import is_factory, load_factory, resolve_module
from tests.cli_helpers import assert_one_line_error, hwnas

NETS = textwrap.dedent("""
    import torch.nn as nn

    def small(num_classes=10, width=16):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def fixed():
        return nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten())

    def not_a_module():
        return 3

    def broken(num_classes=10):
        raise ValueError("no such width")

    VALUE = 7
""")


@pytest.fixture
def nets(tmp_path, monkeypatch):
    (tmp_path / "my_nets_for_test.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_what_counts_as_a_factory(tmp_path):
    assert is_factory("pkg.mod:build") and is_factory("mod:f")
    assert not is_factory("resnet50") and not is_factory("a/b.onnx") and not is_factory("mod:") \
        and not is_factory(":f") and not is_factory("mod:f(1)")


def test_a_factory_is_called_with_the_keywords_it_takes(nets):
    m = load_factory("my_nets_for_test:small", num_classes=4)
    assert m(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    m = load_factory("my_nets_for_test:fixed", num_classes=4)   # takes none: called without
    assert m(torch.zeros(1, 3, 2, 2)).shape == (1, 16)
    assert resolve_module("my_nets_for_test:small", num_classes=3)(torch.zeros(2, 3, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("spec,words", [
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("my_nets_for_test:missing", "has no callable 'missing'"),
    ("my_nets_for_test:VALUE", "has no callable 'VALUE'"),
    ("my_nets_for_test:not_a_module", "returned a 'int' object, not a torch.nn.Module"),
    ("my_nets_for_test:broken", "ValueError: no such width"),
])
def test_a_factory_that_gives_no_network_is_one_line(nets, spec, words):
    with pytest.raises(HwnasError, match=words) as e:
        load_factory(spec, num_classes=10)
    assert "\n" not in str(e.value)


def test_a_network_file_hwnas_wrote_is_a_model(tmp_path):
    from hwnas.adapt.groups import scale_width
    from hwnas.adapt.modelfile import save_network, zoo_base
    from hwnas.models import create
    torch.manual_seed(0)
    net = scale_width(create("mobilenet_v2", num_classes=10).eval(), (1, 3, 32, 32), 0.5)
    save_network(net, tmp_path / "adapted.safetensors", zoo_base("mobilenet_v2", num_classes=10))
    again = resolve_module(str(tmp_path / "adapted.safetensors")).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(again(x), net(x), atol=1e-5)


def test_an_exported_file_is_not_a_torch_network(tmp_path):
    with pytest.raises(HwnasError, match="exported file"):
        resolve_module(str(tmp_path / "net.onnx"))


def test_a_factory_model_is_timed_like_a_zoo_one(nets):
    from hwnas.latency.artifacts import prepare_artifact
    art = prepare_artifact("my_nets_for_test:small", "onnx", (1, 3, 16, 16))
    assert art.path.exists() and art.input_shapes and list(art.input_shapes.values())[0] == (1, 3, 16, 16)
    with pytest.raises(HwnasError, match="give its input shape"):
        prepare_artifact("my_nets_for_test:small", "onnx", None)


def test_the_adapt_command_takes_a_factory_and_says_what_is_wrong_with_it(nets):
    r = hwnas("adapt", "my_nets_for_test:not_a_module", "--budget", "1ms", "--out", str(nets / "run"), cwd=nets,
              timeout=300)
    assert_one_line_error(r, "returned a 'int' object, not a torch.nn.Module")
    r = hwnas("adapt", str(nets / "x.onnx"), "--target", "1ms", "--out", str(nets / "run"), cwd=nets, timeout=300)
    assert_one_line_error(r, "exported file")
    assert not (nets / "run").exists()


def test_the_profile_command_times_a_factory_model(nets):
    import json
    env = {**__import__("os").environ, "HWNAS_HOME": str(nets / "home"), "HWNAS_CACHE": str(nets / "cache")}
    r = hwnas("profile", "--model", "my_nets_for_test:small", "--input-shape", "1x3x16x16", "--no-memory",
              "--json", "-", cwd=nets, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    m = load_factory("my_nets_for_test:small")
    assert out["measured_ms"] > 0 and out["params"] == sum(p.numel() for p in m.parameters())
    assert out["input_shapes"] and list(out["input_shapes"].values())[0] == [1, 3, 16, 16]
    r = hwnas("profile", "--model", "my_nets_for_test:small", "--input-size", "16", cwd=nets, env=env, timeout=300)
    assert_one_line_error(r, "give its input as --input-shape")
