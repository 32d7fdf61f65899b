"""Options and output helpers shared by the subcommands."""
from __future__ import annotations

import json
import sys

import click

from hwnas.errors import HwnasError


def devices_option(f):
    return click.option("--devices", "devices_file", type=click.Path(dir_okay=False), default=None,
                        help="Extra devices YAML (also $HWNAS_DEVICES).")(f)


def write_json(out: str, data) -> None:
    """Write `data` as JSON to the file `out`, or to stdout for '-'."""
    text = json.dumps(data, indent=2, default=str)
    if out == "-":
        sys.stdout.write(text + "\n")
        return
    try:
        with open(out, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        raise HwnasError(f"cannot write {out}: {e.strerror}") from None
