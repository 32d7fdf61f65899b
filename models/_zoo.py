"""Imports every model family module so that their @register_model decorators run."""
import importlib
import pkgutil

import hwnas.models as _pkg

for _m in pkgutil.iter_modules(_pkg.__path__):
    if not _m.name.startswith("_") and _m.name not in ("registry", "stats", "layers"):
        importlib.import_module(f"hwnas.models.{_m.name}")
