"""hwnas scale: EfficientNet compound scaling (depth alpha^phi, width beta^phi, resolution gamma^phi) with
phi chosen so that the measured latency meets the target."""
from __future__ import annotations

import click

from hwnas.commands._common import count, devices_option, train_device_option, writable_file, write_json
from hwnas.progress import log as _log


@click.command("scale")
@click.option("--device", "-d", default="cpu", show_default=True, help="Device name (see `hwnas devices`).")
@click.option("--base", default="efficientnet_b0", show_default=True, help="Base network (an EfficientNet).")
@click.option("--target", "--budget", "target", required=True,
              help="Latency target, e.g. 20ms, 0.02s, 20000us (--budget: the same, as adapt calls it).")
@click.option("--data", default="digits", show_default=True,
              help="Data for the grid's accuracy: digits (shipped), an ImageFolder directory or an .npz (x, y).")
@click.option("--resolution", type=count("size", 16), default=32, show_default=True,
              help="Base input resolution the candidates train at (gamma^phi scales it).")
@click.option("--input-size", type=count("size", 16), default=None,
              help="Base deployment resolution the latency is measured and the network exported at (gamma^phi "
                   "scales it too), e.g. 224 while training at 32. Default: --resolution.")
@click.option("--steps", type=count("steps"), default=200, show_default=True,
              help="Training steps per grid candidate.")
@click.option("--final-steps", type=count("steps", 0), default=None,
              help="Training steps of the final scaled network (default --steps; 0: export it untrained).")
@click.option("--batch-size", type=count("batch"), default=32, show_default=True)
@train_device_option
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--grid-step", type=float, default=0.1, show_default=True, help="Grid step of alpha, beta, gamma.")
@click.option("--tolerance", type=float, default=0.05, show_default=True,
              help="Relative tolerance on alpha*beta^2*gamma^2 = 2.")
@click.option("--max-candidates", type=count("top"), default=5, show_default=True,
              help="Grid candidates trained (an even spread of those meeting the constraint).")
@click.option("--phi-min", type=float, default=-4.0, show_default=True)
@click.option("--phi-max", type=float, default=8.0, show_default=True)
@click.option("--bisect-steps", type=count("steps", 0), default=4, show_default=True,
              help="Bisection steps between the last phi meeting the target and the first missing it.")
@click.option("--runs", type=count("runs"), default=None,
              help="Timed runs per round of the measurement protocol (default: the protocol's, 10).")
@click.option("--out", default=None, help="Run directory (default runs/scale-<base>-<device>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", default=None, callback=writable_file,
              help="Write the summary as JSON (schema hwnas.scale) to a file, or - for stdout (then no report).")
@devices_option
def command(json_out, **settings):
    """Compound-scale BASE: grid-search alpha, beta, gamma (alpha*beta^2*gamma^2 ~ 2) on the data, then pick
    the largest phi whose measured latency on DEVICE meets the target."""
    from hwnas.search.config import ScaleConfig
    from hwnas.search.scaling import scale

    cfg = ScaleConfig(**settings)
    s = scale(cfg, log=_log)
    out = cfg.out
    if json_out:
        write_json(json_out, {**s, "out": str(out)})
    if json_out == "-":
        return
    c = s["chosen"]
    g = s["grid_best"]
    click.echo(f"grid best: alpha {c['alpha']:g}, beta {c['beta']:g}, gamma {c['gamma']:g} "
               f"(accuracy {g['accuracy']:.4f} at phi = 1, {g['latency_ms_at_phi_1']:.3f} ms)")
    click.echo(f"chosen phi {c['phi']:g}: depth x{c['depth_coefficient']:.3f}, width x{c['width_coefficient']:.3f}, "
               f"resolution {c['resolution']} px")
    verdict = s.get("target_verdict", "meets" if s["meets_target"] else "misses")
    within = {"meets": "meets", "misses": "MISSES",
              "within noise": f"within the ±{s.get('noise_pct', 5):.0f}% noise of"}[verdict]
    click.echo(f"measured latency {s['measured_latency_ms']:.3f} ms ({s['measurement']['statistic']}) on "
               f"{s['device']['name']} ({within} the target {s['target_ms']:g} ms); accuracy {s['accuracy']:.4f} "
               f"after {s['accuracy_steps']} steps")
    click.echo(f"wrote {out}/summary.json, grid.json, samples.jsonl, phi.jsonl, pareto.json, pareto.png, best.onnx")
