"""Record the state-dict keys and shapes of torchvision's model definitions (for hwnas.models.torchvision_layout).

torchvision does not import beside this project's torch (its compiled operators are built for another torch),
but its model definitions are plain Python. This script runs them from an unpacked torchvision wheel without
its package initialiser (which loads the compiled operators) and writes, per network, the ordered list of
[key, shape] of a 1000-class network built with weights=None, and what the network computes with
deterministic weights (hwnas.models.torchvision_layout.reference_weights) on a fixed input: the tests map the
same weights onto the zoo network and check it computes the same. Nothing is downloaded by hwnas at run time:
the file this writes is shipped in the package.

    pip download torchvision --no-deps -d /tmp/tv                     # the registry's wheel (0.29.1 here)
    python -c "import zipfile, glob; zipfile.ZipFile(glob.glob('/tmp/tv/*.whl')[0]).extractall('/tmp/tv/x')"
    python scripts/record_torchvision_keys.py /tmp/tv/x models/torchvision_keys.json.gz
"""
from __future__ import annotations

import gzip
import importlib
import json
import sys
import types
from pathlib import Path

# torchvision module -> the constructors whose layouts hwnas maps (hwnas.models.torchvision_layout.TORCHVISION)
NETWORKS = {
    "resnet": ["resnet18", "resnet34", "resnet50", "resnet101"],
    "mobilenetv2": ["mobilenet_v2"],
    "mobilenetv3": ["mobilenet_v3_large", "mobilenet_v3_small"],
    "efficientnet": ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"],
    "densenet": ["densenet121"],
    "squeezenet": ["squeezenet1_0", "squeezenet1_1"],
    "shufflenetv2": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"],
    "mnasnet": ["mnasnet1_0"],
}


def _bare_packages(root: Path) -> None:
    """torchvision, torchvision.models and torchvision.ops as namespace-like packages: their submodules import,
    their __init__ files (which load the compiled operators) never run."""
    for name, sub in (("torchvision", ""), ("torchvision.models", "models"), ("torchvision.ops", "ops")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(root / "torchvision" / sub)]
        sys.modules[name] = mod
    ops = sys.modules["torchvision.ops"]
    ops.misc = importlib.import_module("torchvision.ops.misc")
    ops.StochasticDepth = importlib.import_module("torchvision.ops.stochastic_depth").StochasticDepth


def record(root: Path) -> dict:
    import torch
    from hwnas.models.torchvision_layout import output_summary, reference_input, reference_weights
    _bare_packages(root)
    version = next(root.glob("torchvision-*.dist-info")).name[len("torchvision-"):-len(".dist-info")]
    nets = {}
    for module, constructors in NETWORKS.items():
        mod = importlib.import_module(f"torchvision.models.{module}")
        for name in constructors:
            net = getattr(mod, name)(weights=None).eval()
            keys = [[k, list(v.shape)] for k, v in net.state_dict().items()]
            own = net.state_dict()  # its tensors share storage with the network's (and carry mnasnet's version)
            with torch.no_grad():
                for k, v in reference_weights(keys).items():
                    own[k].copy_(v)
            with torch.no_grad():
                out = output_summary(net(reference_input()))
            nets[name] = {"keys": keys, "output": out}
    return {"source": f"torchvision {version} model definitions, weights=None, 1000 classes; outputs with "
                      f"reference_weights on reference_input()", "networks": nets}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = record(Path(sys.argv[1]))
    with gzip.open(sys.argv[2], "wt", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    print(f"{len(data['networks'])} networks from {data['source']} -> {sys.argv[2]}")


if __name__ == "__main__":
    main()
