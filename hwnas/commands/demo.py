"""hwnas demo: a short tour on the embedded default device with the shipped digits data."""
from __future__ import annotations

import click

from hwnas.commands._common import devices_option


@click.command("demo")
@click.option("--device", "-d", default="cpu", show_default=True)
@click.option("--out", default="runs/demo", show_default=True, help="Where the demo writes its files.")
@click.option("--steps", type=click.IntRange(min=1, max=100_000), default=300, show_default=True,
              help="Training steps of the network NetAdapt starts from (digits).")
@click.option("--samples", type=click.IntRange(min=4, max=10_000), default=60, show_default=True,
              help="Architectures the search evaluates.")
@devices_option
def command(device, out, steps, samples, devices_file):
    """The main job, small: profile zoo models (latency is not FLOPs), build and validate a latency table, search
    under a latency target with it, adapt a network with NetAdapt against a uniform width multiplier; one report
    (OUT/report.md). A rerun continues what a previous one finished."""
    from hwnas.demo import run_demo
    run_demo(device=device, out=out, steps=steps, samples=samples, devices_file=devices_file)
