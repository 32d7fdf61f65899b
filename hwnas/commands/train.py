"""hwnas train: the last step of search-then-train - a found network trained stand-alone, exported at the
deployment size and measured on the device."""
from __future__ import annotations

import click

from hwnas.commands._common import count, devices_option, train_device_option
from hwnas.progress import log as _log


@click.command("train")
@click.option("--run", default=None, help="A search run directory (hwnas search --out): train its best network.")
@click.option("--sample", type=int, default=None, help="With --run: train this sample of the search instead.")
@click.option("--space", default=None, help="Or a search space, with --arch.")
@click.option("--arch", default=None, help="With --space: the architecture as a JSON list, e.g. '[0, 1, 2, ...]'.")
@click.option("--model", default=None, help="Or a zoo network (hwnas models), e.g. mobilenet_v2.")
@click.option("--width", type=float, default=1.0, show_default=True,
              help="With --model: a uniform width multiplier (the baseline a search is compared with).")
@click.option("--data", default=None,
              help="Training data: digits (shipped), an ImageFolder directory or an .npz (x, y). Default: the "
                   "search's, else digits.")
@click.option("--train-size", type=count("size", 8), default=None,
              help="Input size to train at (default: the search's, else min(deployment size, 32)).")
@click.option("--input-size", type=count("size", 8), default=None,
              help="Deployment input size the export and the measurement use (default: the space's or model's).")
@click.option("--steps", type=count("steps"), default=1000, show_default=True)
@click.option("--batch-size", type=count("batch"), default=64, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", "-d", default="cpu", show_default=True, help="Device the network is measured on.")
@click.option("--out", default=None, help="Run directory (default runs/train-<space or model>).")
@click.option("--resume", is_flag=True, help="Continue the training in --out (after a crash or kill).")
@click.option("--checkpoint-every", type=count("steps"), default=100, show_default=True,
              help="Steps between checkpoints (what a kill can lose).")
@train_device_option
@devices_option
def command(**settings):
    """Train one network stand-alone on the data at the training size, export it (ONNX, and the device's format)
    at the deployment size, and measure its latency on DEVICE with the measurement protocol."""
    from hwnas.train_run import TrainConfig, train_network

    s = train_network(TrainConfig(**settings), log=_log)
    click.echo(f"{s['network']}: top-1 {s['top1']:.4f} ({s['val_images']} validation images, trained at "
               f"{s['train_size']}x{s['train_size']}), {s['latency_ms']:.3f} ms on {s['device']} at "
               f"{s['input_size']}x{s['input_size']} ({s['latency_statistic']}, spread {s['latency_spread_pct']:.1f}%)")
    click.echo("wrote " + ", ".join(str(v) for v in s["files"].values()))
