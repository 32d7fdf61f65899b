"""hwnas demo: a short tour on the embedded default device with the shipped digits data."""
from __future__ import annotations

import click

from hwnas.commands._common import devices_option


@click.command("demo")
@click.option("--device", "-d", default="cpu", show_default=True)
@click.option("--out", default="runs/demo", show_default=True, help="Where the demo writes its files.")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Training steps on digits.")
@devices_option
def command(device, out, steps, devices_file):
    """Profile zoo models (latency is not FLOPs), train on digits, export, re-measure, predict with a LUT."""
    from hwnas.demo import run_demo
    run_demo(device=device, out=out, steps=steps, devices_file=devices_file)
