"""The hwnas model zoo. Every network is written here (no torchvision), registered by name.

    import hwnas.models as zoo
    zoo.list_models(); m = zoo.create("mobilenet_v2", num_classes=10, width_mult=0.5)
    zoo.stats(m, (1, 3, 224, 224))  # {'params': ..., 'macs': ...}
"""
from hwnas.models.registry import ModelInfo, create, get_info, list_models, register_model
from hwnas.models.stats import count_macs, count_params, stats

# Importing a module registers its networks. Keep this list sorted; one file per family.
from hwnas.models import _zoo  # noqa: F401,E402

__all__ = ["ModelInfo", "create", "get_info", "list_models", "register_model", "stats", "count_params",
           "count_macs"]
