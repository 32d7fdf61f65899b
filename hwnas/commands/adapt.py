"""hwnas adapt: NetAdapt — shrink MODEL until its latency measured on DEVICE meets a budget."""
from __future__ import annotations

import click

from hwnas.commands._common import (count, db_option, devices_option, executor_options, train_device_option,
                                    writable_file, write_json)


@click.command("adapt")
@click.argument("model")
@click.option("--budget", "--target", "budget_ms", required=True,
              help="Latency budget on the device, e.g. 20ms, 0.02s, 20000us (--target: the same, as search and "
                   "scale call it).")
@click.option("--device", "-d", default="cpu", show_default=True, help="Device name (see `hwnas devices`).")
@click.option("--data", default="digits", show_default=True, help="digits, an ImageFolder DIR or a FILE.npz.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Trained weights to start from: a state dict (.safetensors, or a .pt of model.state_dict()) in "
                   "the network's own names or, for the zoo networks torchvision also has, torchvision's (a "
                   "classifier for other classes is retrained); a pickled module is refused. Without them the "
                   "network is trained briefly first.")
@click.option("--input-size", type=count("size", 8), default=None,
              help="Deployment input (square): every latency is measured at it. Default: the model's own (224 "
                   "for resnet50; `hwnas models` lists them), 224 for your own network.")
@click.option("--train-size", type=count("size", 8), default=None,
              help="Input size fine-tuning and top-1 run at (pruned networks take any size). Default: "
                   "the smaller of --input-size and 32, what a 2-core CPU can train.")
@click.option("--batch", type=count("batch"), default=1, show_default=True,
              help="Batch every latency is measured at (the budget holds at this batch; --batch-size is training's).")
@train_device_option
@click.option("--importance", default="l2", show_default=True,
              help="Which channels of a group are removed first: l2 | l1 (weight norms), bn-scale (|BN gamma|, "
                   "Network Slimming) | random (a baseline).")
@click.option("--distill/--no-distill", default=True, show_default=True,
              help="Fine-tune against the unpruned network's soft labels as well as the labels (distillation).")
@click.option("--short-steps", type=count("steps", 0), default=50, show_default=True,
              help="Short-term fine-tune steps per proposal.")
@click.option("--long-epochs", type=count("epochs", 0), default=2, show_default=True,
              help="Long-term fine-tune epochs at the end.")
@click.option("--long-steps", type=count("steps", 0), default=None,
              help="The long-term fine-tune in steps instead of epochs (a small data set's epochs are few steps).")
@click.option("--layer-costs", type=click.Choice(["measured", "kernels"]), default="measured", show_default=True,
              help="Per-layer costs: each conv timed alone on the device (kept in the latency table), or predicted "
                   "from the device's kernel table (`hwnas lut kernels`; nothing timed while cuts are planned).")
@click.option("--pretrain-steps", type=count("steps", 0), default=600, show_default=True,
              help="Training steps from scratch when no --weights are given (or of a new classifier's "
                   "fine-tuning when they are for other classes).")
@click.option("--workers", type=count("workers"), default=1, show_default=True,
              help="Processes evaluating proposals in parallel.")
@executor_options("proposals (fine-tuned, in a local process pool of --workers)")
@click.option("--initial-step", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="First latency reduction, as a fraction of the original latency "
              "(the paper used 0.025).")
@click.option("--decay", type=click.FloatRange(0, 1, min_open=True), default=0.96, show_default=True,
              help="Per-iteration decay of the reduction step.")
@click.option("--unit", type=count("channels"), default=8, show_default=True, help="Channel rounding unit.")
@click.option("--min-proposals", type=count("top"), default=2, show_default=True,
              help="Halve the step until at least this many groups can meet it (a choice, not one forced cut).")
@click.option("--max-proposals", type=count("top", 0), default=8, show_default=True,
              help="Fine-tune at most this many proposals per iteration: of the groups that can meet the target, "
                   "those cut by the smallest fraction; 0: one for every group (the paper's rule).")
@click.option("--max-cut", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Largest fraction of a group's channels one iteration may remove.")
@click.option("--accuracy-floor", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Top-1 below which no proposal is kept (the step is halved instead); default halfway between "
                   "chance and the starting top-1.")
@click.option("--batch-size", type=count("batch"), default=64, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Fine-tune learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--runs", type=count("runs", 3), default=10, show_default=True,
              help="Timed runs per round of the measurement protocol (whole-network measurements).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run directory (default runs/adapt-<model>-<device>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last finished iteration.")
@db_option
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the summary as JSON to a file, or - for stdout.")
@devices_option
def command(json_out, **settings):
    """Adapt MODEL to a latency BUDGET measured on DEVICE (NetAdapt). MODEL: a zoo name (`hwnas models`),
    package.module:factory (a callable returning your nn.Module; called with num_classes if it takes it), or a
    .safetensors network file hwnas wrote (e.g. an earlier run's adapted.safetensors)."""
    from hwnas.adapt import AdaptConfig, adapt
    from hwnas.modelspec import is_factory
    from hwnas.models import get_info
    from hwnas.units import parse_latency_ms

    settings["budget_ms"] = parse_latency_ms(settings["budget_ms"])
    settings["max_proposals"] = settings["max_proposals"] or None
    cfg = AdaptConfig(**settings)
    cfg.check()
    spec, module = cfg.model, None
    if is_factory(spec) or spec.endswith((".safetensors", ".onnx", ".tflite")):
        from hwnas.adapt.proposals import load_split
        from hwnas.modelspec import resolve_module
        module = resolve_module(spec, num_classes=load_split(cfg.data_args()).num_classes)
    else:
        get_info(spec)  # unknown names fail here, before any work
    summary = adapt(cfg, model=module)
    if json_out:
        write_json(json_out, summary)
    if json_out != "-":
        _print(summary, cfg.out)


def _print(s: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    h, w = s["input_shape"][-2:]
    th, tw = s.get("train_shape", s["input_shape"])[-2:]
    t = Table(title=f"NetAdapt {s['model']} on {s['device']} (budget {s['budget_ms']:g} ms, "
                    f"{s['iterations']} iterations; latency at {h}x{w}, top-1 at {th}x{tw})")
    for col in ("", "measured ms", "top-1", "params", "MACs"):
        t.add_column(col, justify="right")
    for name in ("original", "adapted"):
        r = s[name]
        t.add_row(name, f"{r['measured_ms']:.3f}", f"{r['accuracy']:.4f}", f"{r['params']:,}", f"{r['macs']:,}")
    c = Console()
    c.print(t)
    speed = {"faster": "", "slower": " (slower!)", "within noise": " (within noise: not told apart)"}
    budget = {"meets": "met", "misses": "MISSED", "within noise": "met" if s["budget_met"] else "MISSED"}
    near = " by less than the noise" if s["budget_verdict"] == "within noise" else ""
    c.print(f"speed-up {s['speedup']:.2f}x{speed[s['speedup_verdict']]}, budget {budget[s['budget_verdict']]}{near} "
            f"(measured; noise ±{s['noise_pct']:.0f}%); "
            f"start: {s['start']}; outputs in {out}/")
