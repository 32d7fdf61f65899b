"""Options and output helpers shared by the subcommands."""
from __future__ import annotations

import json
import math
import sys

import click

from hwnas.errors import HwnasError
from hwnas.latency.protocol import LIMITS as PROTOCOL_LIMITS

# The largest value of each kind of count option: far above any real use, low enough that a typo (a few zeros
# too many) is refused in one line instead of running for days. --help shows every option's range.
COUNT_LIMITS = {
    **PROTOCOL_LIMITS,        # runs, rounds, warmup: the measurement protocol's own bounds
    "samples": 100_000,       # architectures a search evaluates, networks a validation times
    "networks": 10_000,       # whole networks fitting a correction (hwnas.latency.predict.MAX_FIT_NETWORKS)
    "steps": 1_000_000,       # training steps
    "epochs": 1_000,
    "batch": 4_096,
    "size": 4_096,            # input resolution (pixels per side)
    "workers": 256,
    "top": 1_000,             # networks re-measured on the device at the end (top-k, candidates, proposals)
    "channels": 4_096,        # channel rounding unit
}


def count(kind: str, lo: int = 1) -> click.IntRange:
    """The range of a count option: `lo` to COUNT_LIMITS[kind]."""
    return click.IntRange(lo, COUNT_LIMITS[kind])


def train_device_option(f):
    return click.option("--train-device", default="auto", show_default=True,
                        help="Where training runs: auto (the first GPU torch sees, else the CPU), cpu, cuda or "
                             "cuda:N.")(f)


def devices_option(f):
    return click.option("--devices", "devices_file", type=click.Path(dir_okay=False), default=None,
                        help="Extra devices YAML (also $HWNAS_DEVICES).")(f)


def executor_options(what: str):
    """--executor and --ray-address, for a command whose `what` can run on a Ray cluster."""
    def decorate(f):
        f = click.option("--ray-address", default=None, help="Ray cluster to join (default: start a local one).")(f)
        return click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                            help=f"Where {what} run: this machine, or a Ray cluster (pip install "
                                 f"'hwnas[ray]').")(f)
    return decorate


db_option = click.option("--db", type=click.Path(dir_okay=False), default=None,
                         help="Latency-table database (SQLite; default $HWNAS_HOME/lut.db or ~/.cache/hwnas/lut.db).")


def writable_file(ctx, param, value):
    """A click callback: an output file (or - for stdout) that can be written, checked before any work starts
    (a long build or search must not end in 'cannot write')."""
    if value is None or value == "-":
        return value
    import os
    from pathlib import Path
    path = Path(value)
    parent = path.parent if str(path.parent) else Path(".")
    flag = param.opts[0] if param is not None else "output"
    if path.is_dir():
        raise click.BadParameter(f"{value} is a folder; give a file name", ctx, param)
    if not parent.is_dir():
        raise click.BadParameter(f"the folder {parent} does not exist", ctx, param)
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{value} cannot be written here ({flag})", ctx, param)
    return value


def write_json(out: str, data, kind: str | None = None) -> None:
    """Write `data` as JSON to the file `out`, or to stdout for '-', stamped with its schema (hwnas.schemas):
    {"schema": "hwnas.<kind>/<n>", ...}. The kind is the running command's words ("hwnas lut build" ->
    "lut-build") unless given. Numbers that are not finite (NaN, inf) are written as null: the output is strict
    JSON, readable by any parser."""
    from hwnas.schemas import stamp
    text = json.dumps(_finite(stamp(kind or _command_kind(), data)), indent=2, default=str, allow_nan=False)
    if out == "-":
        sys.stdout.write(text + "\n")
        return
    try:
        with open(out, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        raise HwnasError(f"cannot write {out}: {e.strerror}") from None


def _command_kind() -> str:
    """The result kind of the running click command: its words below the `hwnas` group, joined by "-"."""
    from hwnas.cli import cli
    from hwnas.schemas import kind_of
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        raise RuntimeError("write_json outside a command needs kind=")
    words = []
    while ctx is not None and ctx.command is not cli:
        words.append(ctx.command.name)
        ctx = ctx.parent
    return kind_of(reversed(words))


def _finite(v):
    """`v` with every NaN or infinite float (at any depth) replaced by None."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def model_options(files: str):
    """--model, --input-size, --batch and --input-shape (what `model_shape` reads), for a command that takes
    `files` (".onnx / .tflite", ".onnx") as model files."""
    def decorate(f):
        f = click.option("--input-shape", default=None, help="Concrete input shape for files with dynamic dims (and "
                         "your own networks), e.g. 1x3x48x320 (several inputs: name=1x3x48x320,mask=1x48).")(f)
        f = click.option("--batch", type=count("batch"), default=1, show_default=True)(f)
        f = click.option("--input-size", type=count("size"), default=None, help="Square input size for zoo models "
                         "(default: the paper's).")(f)
        return click.option("--model", "-m", required=True, help=f"Zoo model name, a {files} file, or "
                            f"package.module:factory (your own nn.Module; give --input-shape).")(f)
    return decorate


def model_shape(model: str, input_size: int | None, batch: int, input_shape: str | None):
    """The input for MODEL as --model, --input-size, --batch and --input-shape give it (profile, predict): a zoo
    model's shape at its size, a model file's --input-shape (for dynamic dims; None: the file's own), the shape of
    your own `package.module:factory` network. Mixed-up options are one clear line."""
    from hwnas.latency.artifacts import is_model_file, model_input_shape
    from hwnas.modelspec import is_factory
    is_file = is_model_file(model)
    if is_file and input_size is not None:
        raise HwnasError("--input-size is for zoo models; a model file's input comes from the file "
                         "(concrete dims for dynamic ones: --input-shape)")
    if not is_file and not is_factory(model) and input_shape is not None:
        raise HwnasError("--input-shape is for model files with dynamic dims; for a zoo model use --input-size "
                         "and --batch")
    if is_factory(model):
        if input_shape is None or input_size is not None:
            raise HwnasError(f"model {model!r} is your own network: give its input as --input-shape (e.g. "
                             f"1x3x224x224), not --input-size")
        from hwnas.units import parse_shape
        return parse_shape(input_shape)
    if is_file:
        return input_shape
    from hwnas.models import get_info
    get_info(model)  # unknown names fail here, before any work
    return model_input_shape(model, input_size, batch)
