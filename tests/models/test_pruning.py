"""Torch-Pruning (which NetAdapt uses to remove channels) can build its dependency graph on every zoo
network and prune it, except the ones tagged "tp-unsupported" — and those really do fail."""
import pytest
import torch

import hwnas.models as zoo
from tests.models.zoo_sizes import HEAVY, is_detector, small_size

tp = pytest.importorskip("torch_pruning")



def _prune(name, ratio=0.25):
    size = small_size(name)
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10).eval()
    x = torch.randn(1, 3, size, size)
    classifier = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
                  and getattr(m, "out_features", getattr(m, "out_channels", None)) == 10]
    before = zoo.count_params(model)
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=classifier, round_to=8)
    pruner.step()
    with torch.no_grad():
        out = model(x)
    return before, zoo.count_params(model), out.shape


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in zoo.list_models() if not is_detector(n)])
def test_torch_pruning_prunes_the_network(name):
    if "tp-unsupported" in zoo.get_info(name).tags:
        with pytest.raises(Exception):  # noqa: B017 - the tag must stay honest: it really fails
            _prune(name)
        return
    before, after, shape = _prune(name)
    assert shape == (1, 10)
    assert after < 0.8 * before
