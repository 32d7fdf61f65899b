"""hwnas profile: time a zoo model or a model file on a device."""
from __future__ import annotations

import click

from hwnas.commands._common import count, devices_option, model_options, model_shape, write_json, writable_file
from hwnas.errors import HwnasError


@click.command("profile")
@click.option("--device", "-d", default="cpu", show_default=True,
              help="Device name (see `hwnas devices`), or several separated by commas: each profiled in turn, "
                   "then compared side by side.")
@model_options(".onnx / .tflite")
@click.option("--warmup", type=count("warmup", 0), default=3, show_default=True,
              help="Untimed runs before each round.")
@click.option("--runs", type=count("runs"), default=10, show_default=True,
              help="Timed runs per round of the measurement protocol.")
@click.option("--rounds", type=count("rounds", 2), default=None,
              help="At least this many rounds (default 4); more until two halves of the rounds agree within ±1%.")
@click.option("--adaptive", is_flag=True, help="Keep adding rounds until the halves agree within ±0.5% (up to 40).")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Override the device's thread count "
              "(0 = all cores; a device timing on this machine takes at most 4 per core, a phone at most 256).")
@click.option("--per-op", is_flag=True, help="Also profile per op (onnxruntime trace, torch profiler, phone), with "
              "totals per op type.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Show only the N slowest ops (default 25; in "
              "the --csv file: all). Implies --per-op.")
@click.option("--csv", "csv_out", default=None, callback=writable_file, help="Write the per-op times as CSV to a "
              "file (the --top N slowest if given, else every op). Implies --per-op.")
@click.option("--memory/--no-memory", default=True, show_default=True, help="Measure the peak memory of running "
              "the model, in a fresh process (host runtimes).")
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write results as JSON to a file, or - for stdout.")
@devices_option
def command(device, model, input_size, batch, input_shape, warmup, runs, rounds, adaptive, threads, per_op, top,
            csv_out, memory, json_out, devices_file):
    """Measure MODEL on DEVICE with the measurement protocol: interleaved rounds, each run paired with a
    calibration reference where the device can, until two halves of the rounds agree. Also reports the model's
    size on disk, parameters, MACs and peak memory."""
    from hwnas.latency.devices import get_device
    from hwnas.latency.profile import profile
    from hwnas.progress import log

    names = [d.strip() for d in device.split(",") if d.strip()]
    if not names or len(set(names)) != len(names):
        raise HwnasError(f"--device takes one name or several different ones separated by commas, got {device!r}")
    devs = [get_device(n, devices_file) for n in names]  # an unknown device or a bad devices file fails first
    shape = model_shape(model, input_size, batch, input_shape)
    per_op = per_op or top is not None or csv_out is not None
    if csv_out and len(devs) > 1:
        raise HwnasError("--csv writes the per-op times of one device; give one --device")
    results = []
    for dev in devs:
        result = profile(dev, model, shape, warmup=warmup, runs=runs, rounds=rounds, adaptive=adaptive,
                         per_op=per_op, threads=threads, memory=memory, log=log if json_out != "-" else None)
        results.append(result)
        if json_out != "-":
            _print_table(result, top)
    if json_out:
        if len(results) == 1:
            write_json(json_out, results[0])
        else:
            write_json(json_out, results, kind="profile-devices")
    if csv_out:
        write_per_op_csv(csv_out, results[0], top)
    if len(results) > 1 and json_out != "-":
        _print_comparison(results)


def _print_comparison(results: list[dict]) -> None:
    """The devices side by side: measured latency, its statistic and spread, and the ratio to the first."""
    from rich.console import Console
    from rich.table import Table
    base = results[0]["measured_ms"]
    t = Table(title=f"{results[0]['model']} on {len(results)} devices (each measured with the protocol, one after "
                    f"the other)")
    for col in ("device", "measured ms", "statistic", "halves agree", f"vs {results[0]['device']}", "fingerprint"):
        t.add_column(col, justify="left" if col in ("device", "statistic", "fingerprint") else "right")
    for r in results:
        t.add_row(r["device"], f"{r['measured_ms']:.3f}", r["statistic"],
                  f"±{r['reproducibility']['spread_pct'] / 2:.2f}%", f"{r['measured_ms'] / base:.2f}x",
                  str(r["fingerprint"].get("key")))
    Console().print(t)


def slowest_ops(r: dict, top: int | None = None) -> list[dict]:
    """The per-op rows, slowest (median) first; the `top` slowest if given."""
    ops = sorted(r["per_op"], key=lambda o: -o["median_ms"])
    return ops if top is None else ops[:top]


CSV_COLUMNS = ("rank", "op", "op_type", "median_ms", "mean_ms", "runs", "share")


def write_per_op_csv(path: str, r: dict, top: int | None = None) -> None:
    """One row per op, slowest first: its rank, name, type, median and mean ms, traced runs, share of the sum of
    per-op medians."""
    import csv
    import io

    from hwnas.rundir import atomic_write_bytes
    total = r["per_op_total_ms"] or 1.0
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for i, o in enumerate(slowest_ops(r, top), 1):
        w.writerow([i, o["name"], o["op_type"], o["median_ms"], o["mean_ms"], o["count"], o["median_ms"] / total])
    try:
        atomic_write_bytes(path, buf.getvalue().encode())
    except OSError as e:
        raise HwnasError(f"cannot write {path}: {e.strerror}") from None


def _print_table(r: dict, top: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    fp = r["fingerprint"]
    lat = r["latency_ms"]
    shapes = ", ".join(f"{k}: {'x'.join(map(str, v))}" for k, v in r["input_shapes"].items())
    rep = r["reproducibility"]
    t = Table(title=f"{r['model']} on {r['device']}", show_header=True)
    for col in ("measured ms", "statistic", "rounds", "halves agree", "raw median", "raw min", "raw p90", "runs"):
        t.add_column(col, justify="right")
    t.add_row(f"{r['measured_ms']:.3f}", r["statistic"], str(rep["rounds"]), f"±{rep['spread_pct'] / 2:.2f}%",
              f"{lat['median']:.3f}", f"{lat['min']:.3f}", f"{lat['p90']:.3f}", str(r["runs"]))
    console.print(t)
    a, b = rep["halves_ms"]
    ref = r.get("reference")
    rerun = sum(rep["reruns"].values())
    console.print(f"reproducibility: two independent halves of the rounds read {a:.3f} and {b:.3f} ms "
                  f"({rep['stopped_by']})" + (f"; {rerun} round(s) re-run for interference" if rerun else "")
                  + (f"; the machine ran at {1 / ref['slowdown']:.2f}x its calibrated speed (reference "
                     f"{ref['observed_ms']:.3f} ms vs nominal {ref['nominal_ms']:.3f} ms)" if ref else
                     "; uncalibrated (the device cannot pair runs with the reference)"))
    console.print(f"input {shapes} | {fp.get('runtime')} {fp.get('runtime_version')} | "
                  f"{fp.get('provider') or fp.get('delegate') or ''} | threads {fp.get('threads')} | cores {fp.get('cores', '?')} | "
                  f"{fp.get('cpu_model') or fp.get('soc') or ''} | fingerprint {fp.get('key')}")
    _print_model_lines(console, r)
    if "per_op" in r:
        ops = r["per_op"]
        shown = slowest_ops(r, top or 25)
        traced = r.get("profiled_run_median_ms")
        t = Table(title=f"per op ({len(ops)} ops): sum of medians {r['per_op_total_ms']:.3f} ms, sum of means "
                        f"{r['per_op_mean_total_ms']:.3f} ms"
                        + (f", traced runs {traced:.3f} ms" if traced else "")
                        + f"; end-to-end measured {r['measured_ms']:.3f} ms")
        t.add_column("op")
        t.add_column("type")
        t.add_column("median ms", justify="right")
        t.add_column("share", justify="right")
        total = r["per_op_total_ms"] or 1.0
        for o in shown:
            t.add_row(o["name"][:60], o["op_type"], f"{o['median_ms']:.4f}", f"{100 * o['median_ms'] / total:.1f}%")
        if len(ops) > len(shown):
            t.add_row(f"... {len(ops) - len(shown)} more", "", "", "")
        console.print(t)
        t = Table(title=f"per op type: sum of the per-op medians ({r['per_op_total_ms']:.3f} ms in all)")
        for col, just in (("type", "left"), ("ops", "right"), ("total ms", "right"), ("share", "right")):
            t.add_column(col, justify=just)
        for row in r["per_op_types"]:
            t.add_row(row["op_type"], str(row["ops"]), f"{row['total_ms']:.4f}", f"{100 * row['share']:.1f}%")
        console.print(t)


def _print_model_lines(console, r: dict) -> None:
    """Size on disk, params, MACs and peak memory, each saying what it is."""
    from pathlib import Path

    from rich.markup import escape

    from hwnas.cache import format_size
    from hwnas.commands.models import fmt_count
    if r["model_bytes"] is not None:
        size = f"{format_size(r['model_bytes'])} on disk ({Path(r['model_path']).name}, {r['model_bytes']} bytes)"
    else:
        size = "size on disk n/a (the device runs a torch module, no file)"
    params = f"params {fmt_count(r['params'])} ({r['params_note']})" if r["params"] is not None else \
        f"params {r['params_note']}"
    macs = f"MACs {fmt_count(r['macs'])} ({r['macs_note']})" if r["macs"] is not None else f"MACs {r['macs_note']}"
    console.print(escape(f"model: {size} | {params} | {macs}"))
    mem = r.get("peak_memory")
    if mem is not None:
        if mem["growth_bytes"] is None:
            console.print(escape(f"peak memory: {mem['what']}"))
        else:
            console.print(escape(f"peak memory: +{format_size(mem['growth_bytes'])} (from "
                                 f"{format_size(mem['baseline_rss_bytes'])} to {format_size(mem['peak_rss_bytes'])}): "
                                 f"{mem['what']}"))
