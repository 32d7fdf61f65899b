"""The model registry: `@register_model(...)` on a builder function makes a network available by name.

    @register_model("resnet50", input_size=224, paper_params=25.6e6, paper_macs=4.1e9, width_mult=False)
    def resnet50(num_classes=1000, **kw): ...

    hwnas.models.create("resnet50", num_classes=10)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hwnas.errors import HwnasError
from hwnas.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    input_size: int = 224          # the paper's input resolution (square)
    paper_params: float | None = None  # parameter count in the paper's table (1000 classes)
    paper_macs: float | None = None    # multiply-accumulates in the paper's table
    width_mult: bool = False       # whether the paper defines a width multiplier for it
    family: str = ""
    tags: tuple = field(default_factory=tuple)


MODELS = Registry("model")


def register_model(name: str | None = None, **info):
    def deco(fn):
        key = name or fn.__name__
        MODELS.add(key, ModelInfo(name=key, builder=fn, **info))
        return fn
    return deco


def _ensure_loaded():
    # importing the package imports every model module (see models/__init__.py)
    import hwnas.models  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return MODELS.names()


def get_info(name: str) -> ModelInfo:
    _ensure_loaded()
    return MODELS.get(name, hint=" (`hwnas models` lists them with their sizes)")


def create(name: str, num_classes: int = 1000, width_mult: float = 1.0, **kwargs):
    info = get_info(name)
    if width_mult != 1.0:
        if not info.width_mult:
            raise HwnasError(f"model {name!r} has no width multiplier")
        kwargs["width_mult"] = width_mult
    return info.builder(num_classes=num_classes, **kwargs)
