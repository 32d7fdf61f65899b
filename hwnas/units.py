"""Parsing of the quantities users type: latency budgets and input shapes."""
from __future__ import annotations

import re

from hwnas.errors import HwnasError

_LATENCY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)\s*$")
_TO_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


def parse_latency_ms(text: str | float | int) -> float:
    """'20ms', '20 ms', '0.02s', '20000us' -> 20.0 (milliseconds). Anything else is an error."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _LATENCY.match(str(text))
        if not m:
            raise HwnasError(f"cannot read latency {text!r}: write it with a unit, e.g. 20ms, 0.02s or 20000us")
        value = float(m.group(1)) * _TO_MS[m.group(2)]
    if not value > 0:
        raise HwnasError(f"latency must be positive, got {text!r}")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x48x320' -> (1, 3, 48, 320)."""
    parts = str(text).strip().lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise HwnasError(f"cannot read input shape {text!r}: write it as dimensions joined by x, e.g. 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise HwnasError(f"input shape {text!r} must have positive dimensions, e.g. 1x3x224x224")
    return dims
