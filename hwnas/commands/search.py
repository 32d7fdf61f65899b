"""hwnas search: platform-aware architecture search with the MnasNet reward ACC * (LAT / T) ** w."""
from __future__ import annotations

import click

from hwnas.commands._common import (count, db_option, devices_option, executor_options, train_device_option,
                                    writable_file, write_json)
from hwnas.progress import log as _log


@click.command("search")
@click.option("--device", "-d", default="cpu", show_default=True, help="Device name (see `hwnas devices`).")
@click.option("--space", default="mnasnet", show_default=True,
              help="Search space: mnasnet, mnasnet-tiny, nasnet (normal + reduction cells), pnas (tied cells).")
@click.option("--target", "--budget", "target", required=True,
              help="Latency target T, e.g. 20ms, 0.02s, 20000us (--budget: the same, as adapt calls it).")
@click.option("--reward-exponent", "--w", "w", type=float, default=None,
              help="Soft reward exponent w (alpha = beta = w; default -0.07). --w: the same (older name).")
@click.option("--hard", is_flag=True, help="Hard constraint: alpha = 0, beta = -1.")
@click.option("--alpha", type=float, default=None, help="Custom exponent under the target.")
@click.option("--beta", type=float, default=None, help="Custom exponent over the target.")
@click.option("--strategy", default="evolution", show_default=True,
              help="rl | ppo | evolution | random | progressive (PNAS; cell spaces nasnet, pnas) | "
                   "predictor-evolution (OFA's: a whole evolution over an MLP predictor, ofa-mlp or train-mlp, and the "
                   "table).")
@click.option("--strategy-option", "-S", "strategy_options", multiple=True, metavar="KEY=VALUE",
              help="A strategy setting, repeatable: e.g. -S population=16 (evolution), -S beam=8 (progressive).")
@click.option("--samples", type=count("samples"), default=200, show_default=True,
              help="Architectures to evaluate.")
@click.option("--data", default="digits", show_default=True,
              help="Data for the accuracy estimate: digits (shipped), an ImageFolder directory or an .npz (x, y).")
@click.option("--estimator", default="naswot", show_default=True,
              help="naswot | synflow (zero-cost proxies, ~0.1 s per network: a few hundred samples in a "
                   "minute or two) | short-train (real validation accuracy after --train-steps of training, "
                   "seconds per network) | supernet (SPOS weight sharing) | ofa (a once-for-all supernet, "
                   "trained once: ~30 min for mnasnet at 32x32) | ofa-mlp (an MLP fitted on the ofa supernet: "
                   "thousands of estimates a millisecond; with --strategy predictor-evolution) | train-mlp (the "
                   "same MLP fitted on -E fit=200 architectures each trained alone for 50 steps; ranks far "
                   "better than the supernet, measured on distorted digits).")
@click.option("--estimator-option", "-E", "estimator_options", multiple=True, metavar="KEY=VALUE",
              help="An estimator setting, repeatable: e.g. -E steps=200 -E validate=8 (supernet).")
@click.option("--train-steps", type=count("steps"), default=None,
              help="Training steps per architecture for short-train (default 60) and train-mlp (default 50).")
@click.option("--train-size", type=count("size", 8), default=None,
              help="Input size the accuracy is estimated at (default: the space's, at most 32). The latency "
                   "table stays at the space's deployment size (mnasnet: 224).")
@click.option("--out", default=None, help="Run directory (default runs/search-<space>-<device>-<strategy>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (after a crash or with more --samples).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top-k", type=count("top"), default=5, show_default=True,
              help="Best architectures re-measured on the device at the end.")
@db_option
@click.option("--build/--no-build", default=True, help="Build a missing latency table (--no-build: fail instead).")
@click.option("--missing-ops", type=click.Choice(["build", "kernels"]), default="build", show_default=True,
              help="Ops the latency table lacks: build (time them, unless --no-build) or kernels (predict them, and "
                   "the correction if the table has none, from the device's kernel table, `hwnas lut kernels`; "
                   "nothing is timed; the summary's latency_sources and each sample's kernel_ops say which figures "
                   "were predicted).")
@click.option("--json", "json_out", default=None, callback=writable_file,
              help="Write the summary as JSON (schema hwnas.search) to a file, or - for stdout (then no table).")
@executor_options("accuracy estimates (in parallel batches)")
@train_device_option
@devices_option
def command(train_steps, json_out, **settings):
    """Search SPACE for the network with the best accuracy/latency trade-off on DEVICE. Latency comes from
    the device's latency table during the search; the final top-k are measured on the device."""
    from hwnas.search.api import search
    from hwnas.search.config import SearchConfig
    from hwnas.settings import SettingError

    settings["strategy_options"] = parse_options(settings["strategy_options"], "--strategy-option")
    settings["estimator_options"] = parse_options(settings["estimator_options"], "--estimator-option")
    if train_steps is not None:
        if settings["estimator"] not in ("short-train", "train-mlp"):
            raise SettingError("--train-steps applies to {} short-train and train-mlp only", "estimator")
        settings["estimator_options"]["steps"] = train_steps
    res = search(SearchConfig(**settings), log=_log)
    if json_out:
        write_json(json_out, {**res.summary, "out": str(res.out)})
    if json_out != "-":
        _report(res)


def parse_options(items, flag: str) -> dict:
    """KEY=VALUE strings -> {key: int | float | str}."""
    from hwnas.errors import HwnasError
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HwnasError(f"{flag} takes KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value
    return out


def _report(res) -> None:
    from rich.console import Console
    from rich.table import Table

    s = res.summary
    console = Console()
    r = s["reward"]
    t = Table(title=f"top {len(s['top_k'])} of {s['samples']} samples ({s['unique_architectures']} distinct), "
                    f"target {r['target_ms']:g} ms, {r['mode']} reward")
    value = "accuracy" if s["value_kind"] == "top-1" else "score"  # a proxy's value is a score (search/results.py)
    acc_name = "accuracy" if value == "accuracy" else f"{s['estimator']} score"
    for col in ("#", acc_name, "predicted ms", "measured ms", "error %", "reward (measured)"):
        t.add_column(col, justify="right")
    for row in s["top_k"]:
        t.add_row(str(row["i"]), f"{row[value]:.4f}", f"{row['latency_ms']:.3f}",
                  f"{row.get('measured_ms', float('nan')):.3f}", f"{row.get('prediction_error_pct', float('nan')):+.1f}",
                  f"{row.get('measured_reward', row['reward']):.4f}")
    console.print(t)
    b = s["best"]
    verdict = b.get("target_verdict", "meets" if b.get("meets_target_measured", True) else "misses")
    within = {"meets": "within", "misses": "OVER", "within noise": "within the measurement noise of"}[verdict]
    console.print(f"best: sample #{b['i']}, {acc_name} {b[value]:.4f}, predicted {b['latency_ms']:.3f} ms, "
                  f"measured {b.get('measured_ms', float('nan')):.3f} ms ({within} the target)"
                  + (f"; measured = {b['measured_statistic']} of {b['measured_rounds']} rounds"
                     if "measured_statistic" in b else ""))
    if s.get("hard_target") and not s["hard_target"]["met"]:
        console.print(s["hard_target"]["message"])
    src = s.get("latency_sources") or {}
    if src.get("ops_from_kernels"):
        console.print(f"predicted latencies: {src['ops_from_table']} ops timed (the table), {src['ops_from_kernels']} "
                      f"predicted from the kernel table; correction {src['correction']}")
    console.print(f"Pareto front: {s['pareto_size']} networks, hypervolume {s['hypervolume']:.4g} (ms x {value})")
    files = ", ".join(f"{res.out / n}" for n in ("samples.jsonl", "pareto.json", "pareto.png", "summary.json"))
    console.print(f"wrote {files}, {s['exported'].get('onnx')}"
                  + (f", {s['exported']['tflite']}" if s["exported"].get("tflite") else ""))
