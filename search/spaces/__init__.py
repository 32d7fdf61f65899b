"""Search spaces, by name: `get_space("mnasnet")`, `list_spaces()`, `@register_space("name")`."""
from __future__ import annotations

from hwnas.errors import HwnasError
from hwnas.search.spaces.base import Arch, Decision, OpSpec, Space

_SPACES: dict = {}


def register_space(name: str):
    def deco(factory):
        if name in _SPACES:
            raise ValueError(f"space {name!r} registered twice")
        _SPACES[name] = factory
        return factory
    return deco


def list_spaces() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str, **kwargs) -> Space:
    if name not in _SPACES:
        raise HwnasError(f"unknown space {name!r}; known spaces: {', '.join(list_spaces())}")
    return _SPACES[name](**kwargs)


from hwnas.search.spaces import mnasnet  # noqa: E402,F401  (registers mnasnet, mnasnet-tiny)

__all__ = ["Arch", "Decision", "OpSpec", "Space", "get_space", "list_spaces", "register_space"]
