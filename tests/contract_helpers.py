"""Shared parts of the registry contract tests (tests/*/test_contract_*.py): the one-line error check and
the bad values every option of a registered class is tried with."""
from __future__ import annotations

import math

import pytest

from hwnas.errors import HwnasError
from hwnas.options import keyword_defaults


def one_line_error(call, *names: str) -> str:
    """`call()` raises HwnasError with a one-line message that contains each of `names`; returns it."""
    with pytest.raises(HwnasError) as e:
        call()
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    for name in names:
        assert name in msg, f"{name!r} not in {msg!r}"
    return msg


def keyword_options(cls, skip=("self", "space", "seed", "data")) -> dict:
    """{name: default} of the options a registered class takes as keywords (what -S / -E KEY=VALUE reach)."""
    return keyword_defaults(cls, skip)


def is_count(default) -> bool:
    return isinstance(default, int) and not isinstance(default, bool)


def is_real(default) -> bool:
    return isinstance(default, float)


# What `-S KEY=VALUE` hands over for a value that is no number, a fraction and a NaN (hwnas.commands.search
# parse_options: int, else float, else the string).
NOT_A_NUMBER = "abc"
FRACTION = 2.5
NAN = math.nan


def options_of_kind(registry_names, cls_of, kind) -> list[tuple[str, str]]:
    """(entry, option) pairs, over every entry of a registry, of the options whose default is of `kind`."""
    return [(name, opt) for name in registry_names for opt, default in keyword_options(cls_of(name)).items()
            if kind(default)]


def bad_values(registry_names, cls_of) -> list:
    """pytest params (entry, option, value) of every bad value an option of a registered class must refuse with
    one line naming it: any number option a non-number, a count -1 and a fraction, a real NaN."""
    out = []
    for name, opt in options_of_kind(registry_names, cls_of, lambda d: is_count(d) or is_real(d)):
        default = keyword_options(cls_of(name))[opt]
        values = [NOT_A_NUMBER] + ([-1, FRACTION] if is_count(default) else [NAN])
        out += [pytest.param(name, opt, v, id=f"{name}-{opt}-{v}") for v in values]
    return out


def coverage(names, keys, make):
    """Which registered entries `make(name, key)` builds on which contract spaces (a refusal is an HwnasError):
    (served pairs, refused pairs) as pytest params, and each entry's first space served."""
    def serves(name, key) -> bool:
        try:
            make(name, key)
            return True
        except HwnasError:
            return False

    ok = {(n, k): serves(n, k) for n in names for k in keys}
    served = [pytest.param(n, k, id=f"{n}-{k}") for (n, k), yes in ok.items() if yes]
    refused = [pytest.param(n, k, id=f"{n}-{k}") for (n, k), yes in ok.items() if not yes]
    first = {n: next(k for k in keys if ok[n, k]) for n in names if any(ok[n, k] for k in keys)}
    return served, refused, first

