"""Settings of a command as one object: the config dataclasses of search, scale and adapt share these pieces.

A command's config is a dataclass whose field names are the command's option names (click's parameter names:
`--top-k` is `top_k`), so the CLI builds it as `Config(**params)`, the library receives it whole, and the run
records it under the same names. A bad value is a SettingError naming the field; the CLI shows the flag instead
(`--top-k`), the Python API the field (`top_k`), from the same error.
"""
from __future__ import annotations

import math
from dataclasses import fields

from hwnas.errors import HwnasError


class SettingError(HwnasError):
    """A bad setting. `template` has one `{}` per name in `settings`; str() fills in the config names, and
    `named(flag_of)` fills in what the caller calls them (the CLI: its flags)."""

    def __init__(self, template: str, *settings: str):
        self.template, self.settings = template, settings
        super().__init__(template.format(*settings))

    def named(self, name_of) -> str:
        return self.template.format(*(name_of(s) for s in self.settings))


def literal(text) -> str:
    """`text` as it must appear inside a SettingError template: its braces doubled (a path or a value may hold
    some), so that only the template's own `{}` are filled with setting names."""
    return str(text).replace("{", "{{").replace("}", "}}")


def require(ok: bool, template: str, *settings: str) -> None:
    if not ok:
        raise SettingError(template, *settings)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def from_settings(cls, settings: dict, what: str):
    """`cls(**settings)`, an unknown name refused in one line listing the known ones (a typo in a Python call
    must not be dropped silently)."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise HwnasError(f"{what} has no setting {', '.join(unknown)}; its settings: {', '.join(known)}")
    return cls(**settings)


def record(config, omit: tuple[str, ...]) -> dict:
    """The settings a run records (and a resume compares): every field but `omit` (where output goes, how many
    processes help), under the field names."""
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in omit}


def flag_namer(command):
    """name -> how the click `command` spells it: `top_k` -> `--top-k`, an argument `model` -> `MODEL`;
    a name the command does not have is left as it is."""
    import click
    by_name = {p.name: p for p in getattr(command, "params", ())}

    def name_of(setting: str) -> str:
        p = by_name.get(setting)
        if p is None:
            return setting
        if isinstance(p, click.Argument):
            return p.human_readable_name
        longs = [o for o in p.opts + p.secondary_opts if o.startswith("--")]
        if isinstance(p, click.Option) and p.is_flag and p.secondary_opts and getattr(p, "default", None):
            longs = [o for o in p.secondary_opts if o.startswith("--")] or longs  # --no-build for build=True
        return (longs or p.opts)[0]
    return name_of
