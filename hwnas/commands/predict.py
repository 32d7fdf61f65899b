"""hwnas predict: the latency of any network from the device's kernel table, without timing it."""
from __future__ import annotations

import click

from hwnas.commands._common import db_option, devices_option, model_options, model_shape, write_json, writable_file


@click.command("predict")
@click.option("--device", "-d", default="cpu", show_default=True, help="Device whose kernel table predicts "
              "(build it with `hwnas lut kernels --device NAME`).")
@model_options(".onnx / .tflite")
@click.option("--per-kernel", is_flag=True, help="Show every kernel: its configuration, prediction and source.")
@click.option("--validate", is_flag=True, help="Also measure the network on the device (the measurement protocol) "
              "and print the prediction's error.")
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write results as JSON to a file, or "
              "- for stdout.")
@db_option
@devices_option
def command(device, model, input_size, batch, input_shape, per_kernel, validate, json_out, db, devices_file):
    """Predict MODEL's latency on DEVICE from the kernels its runtime runs: the network is decomposed into the
    kernels the device's runtime really runs (fusions included), each kernel's latency comes from the regressor
    of its kind, fitted on the device's kernel table. Ops no kernel kind covers are listed by name, never
    counted as 0 ms."""
    from hwnas.latency.devices import get_device
    from hwnas.latency.kernel_predict import predict_latency
    dev = get_device(device, devices_file)
    shape = model_shape(model, input_size, batch, input_shape)
    pred = predict_latency(dev, model, shape, db=db)
    if validate:
        lat = dev.latency(model, shape)
        pred.measured = {"ms": lat.ms, "statistic": lat.statistic, "rounds": lat.rounds, "spread_pct": lat.spread_pct,
                         "error_pct": 100.0 * (pred.ms - lat.ms) / lat.ms}
    if json_out:
        write_json(json_out, pred.to_dict(per_kernel=True))
    if json_out != "-":
        _print(pred, per_kernel)


def _print(pred, per_kernel: bool) -> None:
    shape = "x".join(str(d) for d in pred.input_shape)
    bound = "" if pred.complete else "at least "
    from hwnas.latency.predict import describe_correction
    click.echo(f"{pred.model} on {pred.device} ({shape}): predicted {bound}{pred.ms:.3f} ms from the kernel table "
               f"({len(pred.rows)} kernels; runtime overhead {pred.overhead_ms:.3f} ms for {pred.nodes} nodes), "
               f"in {pred.seconds:.2f} s")
    c = pred.correction
    click.echo(f"kernel sum {pred.raw_ms:.3f} ms; correction ({c.get('n_networks', 0)} fit networks) "
               f"{describe_correction(c).replace('op sum', 'kernel sum').replace('ms * ops', 'ms * nodes')}")
    if per_kernel:
        from rich.console import Console
        from rich.table import Table
        t = Table(title="kernels, in the order the runtime runs them")
        for col in ("name", "op", "kernel", "predicted ms", "source"):
            t.add_column(col, justify="right" if col == "predicted ms" else "left", overflow="fold")
        for r in pred.rows:
            t.add_row(r["name"], r["op"], r["key"], "-" if r["ms"] is None else f"{r['ms']:.4f}", r["source"])
        Console().print(t)
    if pred.unpredictable:
        click.echo(f"{len(pred.unpredictable)} ops could not be predicted and are not in the figure:")
        for u in pred.unpredictable:
            click.echo(f"  {u['name']} ({u['op']}): {u['why']}")
    if pred.measured:
        m = pred.measured
        click.echo(f"measured {m['ms']:.3f} ms ({m['statistic']} of {m['rounds']} rounds, halves within "
                   f"±{m['spread_pct'] / 2:.1f}%): the prediction is {m['error_pct']:+.1f}%")
