"""One registry type for everything hwnas looks up by name: models, device backends, search spaces,
strategies and accuracy estimators.

    STRATEGIES = Registry("search strategy")
    @STRATEGIES.register("evolution")
    class Evolution(Strategy): ...
    STRATEGIES.get("evolution"); STRATEGIES.names()
"""
from __future__ import annotations

from typing import Any, Callable

from hwnas.errors import HwnasError


class Registry:
    def __init__(self, kind: str, set_name: bool = False):
        self.kind = kind
        self.set_name = set_name  # give registered classes a `name` attribute
        self._items: dict[str, Any] = {}

    def add(self, name: str, item: Any) -> Any:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(item):
            if self.set_name:
                item.name = name
            return self.add(name, item)
        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str, hint: str = "") -> Any:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise HwnasError(f"unknown {self.kind} {name!r}; choose one of: {known}{hint}") from None


def import_modules(package: str, path) -> list[str]:
    """Import every module of a package (`package`, its `__path__`): the registrations in them run, so a new
    entry is one new file with its `@register...` decorator — no list to extend. Returns the module names."""
    import importlib
    import pkgutil
    names = sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
