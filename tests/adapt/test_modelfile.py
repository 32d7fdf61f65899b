"""Pruned networks saved without pickle and rebuilt from their base + layer record."""
import copy

import pytest
import torch

from hwnas.adapt.groups import build_graph, prunable_groups, prune_group, scale_width
from hwnas.adapt.modelfile import load_network, save_network, zoo_base
from hwnas.errors import HwnasError
from hwnas.models import create
from tests.hwnas.test_tensorfile import malicious_pickle, malicious_torch_file

SHAPE = (1, 3, 32, 32)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "mnasnet_a1", "efficientnet_b0"])
def test_pruned_zoo_network_round_trips(tmp_path, name):
    torch.manual_seed(0)
    net = create(name, num_classes=10).eval()
    scale_width(net, SHAPE, 0.37, 8)
    graph = build_graph(net, SHAPE)
    root, ch = sorted(prunable_groups(net, graph).items())[1]
    if ch > 8:
        prune_group(net, graph, root, 8)
    save_network(net, tmp_path / "n.safetensors", zoo_base(name, num_classes=10))
    back = load_network(tmp_path / "n.safetensors").eval()
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        assert torch.allclose(net(x), back(x), atol=1e-5)
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in net.parameters())


def test_network_from_python_needs_its_template(tmp_path):
    from tinynet import TinyNet
    net = TinyNet(width=32).eval()
    template = copy.deepcopy(net)
    scale_width(net, SHAPE, 0.5, 8)
    save_network(net, tmp_path / "n.safetensors", None)
    with pytest.raises(HwnasError, match="pass that module as `template`"):
        load_network(tmp_path / "n.safetensors")
    back = load_network(tmp_path / "n.safetensors", template).eval()
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        assert torch.allclose(net(x), back(x), atol=1e-6)


def test_old_pickled_network_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    malicious_torch_file(tmp_path / "iter_000.pt", marker)
    with pytest.raises(HwnasError, match="is a pickle"):
        load_network(tmp_path / "iter_000.pt")
    malicious_pickle(tmp_path / "x.safetensors", marker)
    with pytest.raises(HwnasError, match="is a pickle"):
        load_network(tmp_path / "x.safetensors")
    assert not marker.exists()
