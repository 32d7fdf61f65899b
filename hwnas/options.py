"""Options of registered components (strategies, estimators) given by name, as `-S KEY=VALUE` / `-E KEY=VALUE`
hand them over: checked once, here, against the keyword defaults of the component's constructor.

The rule a component declares by its defaults: an option whose default is an int takes a whole number
(a fraction is refused, never truncated), one whose default is a float takes a finite number, and an
option whose default is not negative takes no negative value. Finer ranges (at least one step, a learning
rate above 0) and options defaulting to None or a string are the component's to check.
"""
from __future__ import annotations

import inspect
import math
from numbers import Integral, Real

from hwnas.errors import HwnasError


def keyword_defaults(cls, skip=("self", "space", "seed", "data")) -> dict:
    """{option: default} of the keywords `cls(...)` takes besides `skip`."""
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_options(kind: str, name: str, cls, options: dict, skip=("self", "space", "seed", "data")) -> dict:
    """`options` checked against `cls`'s keyword defaults; one HwnasError line naming the first bad one."""
    defaults = keyword_defaults(cls, skip)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise HwnasError(f"{kind} {name!r} has no option {', '.join(unknown)}; its options: "
                         f"{', '.join(defaults) or 'none'}")
    for key, value in options.items():
        why = _problem(defaults[key], value)
        if why:
            raise HwnasError(f"{kind} {name!r}: option {key}={value!r} {why}")
    return options


def _problem(default, value) -> str | None:
    if isinstance(default, bool) or default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, Integral):
        if isinstance(value, bool) or not isinstance(value, Integral):
            return "must be a whole number"
        return _sign(default, value)
    if isinstance(default, Real):
        if isinstance(value, bool) or not isinstance(value, Real):
            return "must be a number"
        if not math.isfinite(value):
            return "must be a finite number"
        return _sign(default, value)
    if isinstance(default, str) and not isinstance(value, str):
        return "must be text"
    return None


def _sign(default, value) -> str | None:
    return "must not be negative" if default >= 0 and value < 0 else None
