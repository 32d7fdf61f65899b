"""hwnas lut: build, validate, export, import and list latency lookup tables."""
from __future__ import annotations

import click

from hwnas.commands._common import (COUNT_LIMITS, count, db_option, devices_option, executor_options,
                                    writable_file, write_json)



def _protocol(base, rounds, runs, warmup):
    """`base` with the CLI's --rounds (the minimum), --runs and --warmup where given."""
    p = base.but(**{k: v for k, v in (("runs", runs), ("warmup", warmup)) if v is not None})
    if rounds is not None:
        p = p.but(min_rounds=rounds, max_rounds=max(p.max_rounds, rounds))
    return p.check()


def _space(name: str, input_size: int | None, batch: int = 1):
    from hwnas.search.spaces import get_space
    from hwnas.search.spaces.base import batched
    return batched(get_space(name, **({"input_size": input_size} if input_size else {})), batch)


batch_option = click.option("--batch", type=count("batch"), default=1, show_default=True,
                            help="Time every op and network at this batch (a table per batch: 1 vs 64 on a GPU).")


@click.group("lut")
def command():
    """Latency lookup tables: time every op of a space on a device, predict unseen networks."""


@command.command("build")
@click.option("--device", "-d", default="cpu", show_default=True)
@click.option("--space", "space_name", default="mnasnet", show_default=True)
@click.option("--input-size", type=count("size", 8), default=None, help="Input resolution (default: the space's).")
@batch_option
@click.option("--rounds", type=count("rounds", 2), default=None,
              help="At least this many interleaved rounds per op (default 3; more until two halves agree).")
@click.option("--runs", type=count("runs"), default=None,
              help="Timed runs per op per round (default 10; more for ops much shorter than the reference).")
@click.option("--warmup", type=count("warmup", 0), default=None, help="Untimed runs per round (default 3).")
@click.option("--fit-networks", type=count("networks"), default=24, show_default=True,
              help="Whole networks measured to fit the correction.")
@db_option
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the build report as JSON (file or -).")
@executor_options("the timings")
@devices_option
def build(device, space_name, input_size, batch, rounds, runs, warmup, fit_networks, db, json_out, executor,
          ray_address, devices_file):
    """Time every distinct op of SPACE on DEVICE (resumable: a rerun continues where it stopped).
    DEVICE may be a pool of devices from devices.yaml: the ops are split across its members."""
    from dataclasses import asdict

    from hwnas.executor import get_executor
    from hwnas.latency.devices import get_device
    from hwnas.latency.lut import build_lut
    space = _space(space_name, input_size, batch)
    dev = get_device(device, devices_file)
    from hwnas.latency.protocol import NETWORK, OP
    with get_executor(executor, address=ray_address) as ex:
        try:
            rep = build_lut(space, dev, db, op_protocol=_protocol(OP, rounds, runs, warmup),
                            network_protocol=_protocol(NETWORK, None, runs, warmup), fit_networks=fit_networks,
                            executor=ex)
        except KeyboardInterrupt:
            from hwnas.progress import log
            log("interrupted: every row timed so far is in the table; run the same command again to continue")
            raise SystemExit(130) from None
    click.echo(f"{rep.ops} ops ({rep.statistic}): {rep.measured} measured now, {rep.skipped} already in the table; "
               f"{rep.networks} networks measured for the correction; {rep.seconds:.0f} s", err=json_out == "-")
    if json_out:
        write_json(json_out, asdict(rep))


@command.command("kernels")
@click.option("--device", "-d", default="cpu", show_default=True)
@click.option("--samples", type=count("samples", 20), default=1200, show_default=True,
              help="Kernel configurations of the initial round, spread over the kernel kinds.")
@click.option("--adaptive-rounds", type=click.IntRange(0, 20), default=2, show_default=True,
              help="Rounds that add configurations near the ones the regressors get most wrong.")
@click.option("--adaptive-samples", type=count("samples", 1), default=300, show_default=True,
              help="Configurations per adaptive round.")
@click.option("--error-bound", type=click.FloatRange(0.001, 1.0), default=0.10, show_default=True,
              help="Adaptive rounds sample near kernels whose out-of-bag error is above this (relative).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--fit-space", default="mnasnet", show_default=True,
              help="Search space whose networks (at its own resolution) fit the correction of the kernel sum.")
@click.option("--fit-networks", type=click.IntRange(0, COUNT_LIMITS["networks"]), default=24, show_default=True,
              help="Whole networks measured to fit the correction (0: none, the bare kernel sum).")
@click.option("--rounds", type=count("rounds", 2), default=None,
              help="At least this many interleaved rounds per kernel model (default 3; more until two halves agree).")
@click.option("--runs", type=count("runs"), default=None, help="Timed runs per kernel model per round (default 10).")
@db_option
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the build report as JSON (file or -).")
@devices_option
def kernels(device, samples, adaptive_rounds, adaptive_samples, error_bound, seed, fit_space, fit_networks, rounds,
            runs, db, json_out, devices_file):
    """Time kernel configurations on DEVICE for `hwnas predict` (any network, not one space's): small models
    that make its runtime run each kind of kernel (convs, depthwise, fc, pools, SE, concat, ...), measured with
    the protocol and split into kernels by the runtime's profiler (on LiteRT, which has none: copies of one
    operator per model), then adaptive rounds where the per-kind regressors' error is high. Resumable: a rerun
    continues where it stopped."""
    from dataclasses import asdict

    from hwnas.latency.devices import get_device
    from hwnas.latency.lut.kernel_table import build_kernels
    from hwnas.latency.protocol import OP
    from hwnas.latency.protocol import NETWORK
    dev = get_device(device, devices_file)
    space = _space(fit_space, None) if fit_networks else None
    try:
        rep = build_kernels(dev, db, samples=samples, adaptive_rounds=adaptive_rounds,
                            adaptive_samples=adaptive_samples, error_bound=error_bound, seed=seed,
                            protocol=_protocol(OP, rounds, runs, None), fit_space=space, fit_networks=fit_networks,
                            network_protocol=_protocol(NETWORK, rounds, runs, None))
    except KeyboardInterrupt:
        from hwnas.progress import log
        log("interrupted: every kernel model timed so far is in the table; run the same command again to continue")
        raise SystemExit(130) from None
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(rep.by_kind.items(), key=lambda kv: -kv[1]))
    click.echo(f"{rep.models} kernel models ({rep.statistic}): {rep.measured} measured now, {rep.skipped} already in "
               f"the table; {rep.samples} kernel samples ({kinds}); {rep.fit_networks} fit networks "
               f"({rep.networks} measured now); {rep.seconds:.0f} s", err=json_out == "-")
    if json_out:
        write_json(json_out, asdict(rep))


@command.command("validate")
@click.option("--device", "-d", default="cpu", show_default=True)
@click.option("--space", "space_name", default="mnasnet", show_default=True)
@click.option("--input-size", type=count("size", 8), default=None)
@batch_option
@click.option("--samples", type=count("samples"), default=50, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--rounds", type=count("rounds", 2), default=None,
              help="At least this many rounds per network (default 6; more until two halves agree).")
@click.option("--runs", type=count("runs"), default=None, help="Timed runs per round (default 10).")
@click.option("--plot", "plot_path", default=None, help="Scatter PNG (default lut-validate-<space>-<device>.png).")
@db_option
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the report as JSON (file or -).")
@devices_option
def validate_cmd(device, space_name, input_size, batch, samples, seed, rounds, runs, plot_path, db, json_out,
                 devices_file):
    """Time held-out networks end to end and compare with the table's predictions."""
    from hwnas.latency.devices import get_device
    from hwnas.latency.validate import validate
    space = _space(space_name, input_size, batch)
    png = plot_path or f"lut-validate-{space_name}-{device}.png"
    from hwnas.latency.protocol import NETWORK
    rep = validate(space, get_device(device, devices_file), db, samples=samples, seed=seed,
                   protocol=_protocol(NETWORK, rounds, runs, None), png=png)
    if json_out:
        write_json(json_out, rep)
    if json_out != "-":
        _print_validation(rep)


def _print_validation(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"{rep['space']} on {rep['device']}: {rep['predictor']['n']} held-out networks "
                    f"(seed {rep['seed']}, {rep['statistic']} of {rep['rounds']:.1f} rounds on average)")
    for col in ("", "within ±5%", "within ±10%", "RMSE ms", "mean |err| %", "Spearman"):
        t.add_column(col, justify="right")
    for label, k in (("predictor", "predictor"), ("bare op sum", "raw_op_sum"), ("noise floor", "noise_floor")):
        r = rep[k]
        t.add_row(label, f"{r['within_5pct']:.1%}", f"{r['within_10pct']:.1%}", f"{r['rmse_ms']:.4f}",
                  f"{r['mean_abs_pct']:.2f}", f"{r['spearman']:.3f}")
    Console().print(t)
    Console().print("noise floor: the same networks measured a second time, against the first measurement (what "
                    f"the predictor is compared with); no predictor can beat it. Scatter plot: {rep.get('plot')}")


@command.command("export")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--device", "-d", default=None, help="Only this device's fingerprint.")
@db_option
@devices_option
def export(out, device, db, devices_file):
    """Write the table (op rows) to OUT.csv or OUT.json (JSON also carries fingerprints and corrections)."""
    from hwnas.latency.lut import LutStore
    fp = None
    if device:
        from hwnas.latency.devices import get_device
        fp = get_device(device, devices_file).fingerprint_key()
    n = LutStore(db).export(out, fp)
    click.echo(f"exported {n} rows to {out}")


@command.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--device", "-d", default=None, help="Check the rows were measured on this device's fingerprint.")
@click.option("--allow-mixed", is_flag=True, help="Store rows of another fingerprint as this device's anyway.")
@db_option
@devices_option
def import_cmd(path, device, allow_mixed, db, devices_file):
    """Read a table exported elsewhere (e.g. built on a phone by a teammate)."""
    from hwnas.latency.lut import LutStore
    fp, fingerprint = None, None
    if device:
        from hwnas.latency.devices import get_device
        dev = get_device(device, devices_file)
        fingerprint = dev.fingerprint()
        fp = fingerprint["key"]
    n = LutStore(db).import_(path, expect_fingerprint=fp, allow_mixed=allow_mixed, fingerprint=fingerprint)
    click.echo(f"imported {n} new rows from {path}")


@command.command("list")
@db_option
@click.option("--json", "json_out", default=None, callback=writable_file)
def list_cmd(db, json_out):
    """The fingerprints in the database, with their row counts."""
    from hwnas.latency.lut import LutStore
    from hwnas.latency.lut.kernel_table import KernelTable
    store = LutStore(db)
    kernels = KernelTable(store)
    rows = [{"fingerprint": k, "rows": store.count(k), "ops": len(store.keys(k)), "runtime": f"{v.get('runtime')} "
             f"{v.get('runtime_version')}", "device": v.get("device"), "cpu": v.get("cpu_model") or v.get("soc"),
             "kernel_models": kernels.count(k)[0]}
            for k, v in store.fingerprints().items()]
    if json_out:
        write_json(json_out, rows)
        return
    for r in rows:
        click.echo(f"{r['fingerprint']}  {r['rows']:>6} rows  {r['ops']:>5} ops  {r['kernel_models']:>5} kernel models  "
                   f"{r['device']}  {r['runtime']}  {r['cpu']}")
