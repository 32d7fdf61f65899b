"""Search spaces, by name: `get_space("mnasnet")`, `list_spaces()`, `@register_space("name")`."""
from __future__ import annotations

from hwnas.registry import Registry
from hwnas.search.spaces.base import Arch, Decision, OpSpec, Space

SPACES = Registry("space")
register_space = SPACES.register
list_spaces = SPACES.names


def get_space(name: str, **kwargs) -> Space:
    return SPACES.get(name)(**kwargs)


from hwnas.registry import import_modules  # noqa: E402

import_modules(__name__, __path__)  # mnasnet, mnasnet-tiny, nasnet, pnas, and any new file here

__all__ = ["Arch", "Decision", "OpSpec", "Space", "get_space", "list_spaces", "register_space"]
