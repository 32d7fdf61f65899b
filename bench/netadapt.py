"""NetAdapt vs a uniform width multiplier, on this machine's `cpu` device (onnxruntime, 1 thread).

For each network (small enough to finish here: digits upsampled to --input-size px):
  1. NetAdapt to a budget (default: half the network's measured latency);
  2. the baseline: the same start, every group scaled by one width multiplier to the adapted network's
     *measured* latency, fine-tuned for the same number of steps NetAdapt spent after the start;
  3. a baseline curve (a few multipliers, same steps) to read the latency each reaches at equal accuracy.
Prints accuracy at equal measured latency, latency at equal accuracy, wall time per iteration and peak
resident memory (this process and its workers).

    .venv/bin/python bench/netadapt.py                       # mobilenet_v2 and resnet50
    .venv/bin/python bench/netadapt.py --models mobilenet_v2 --short-steps 20 --out /tmp/na
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path


def peak_rss_gib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return own, kids


def run_one(name: str, args) -> dict:
    from hwnas.adapt import AdaptConfig, adapt
    from hwnas.adapt.baseline import evaluate_width, latency_at_accuracy, match_latency
    from hwnas.adapt.proposals import load_model, load_split
    from hwnas.latency.devices import get_device
    from hwnas.models import create

    out = Path(args.out) / name
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    dev = get_device(args.device)
    data = {"spec": args.data, "image_size": args.input_size, "channels": 3, "seed": 0}
    split = load_split(data)
    shape = (1, *split.input_shape)
    budget = args.budget or 0.5 * dev.latency(create(name, num_classes=split.num_classes).eval(), shape).ms
    t0 = time.time()
    cfg = AdaptConfig(name, budget_ms=budget, device=args.device, data=args.data, input_size=args.input_size,
                      out=str(out), short_steps=args.short_steps, long_epochs=args.long_epochs,
                      pretrain_steps=args.pretrain_steps, workers=args.workers, initial_step=args.initial_step,
                      min_proposals=args.min_proposals, max_cut=args.max_cut, batch_size=args.batch_size,
                      resume=args.resume)
    s = adapt(cfg)
    adapt_s = time.time() - t0
    start = load_model(out / "checkpoints" / "iter_000.safetensors")
    steps = s["fine_tune_steps"]
    mult, _ = match_latency(dev, start, shape, s["adapted"]["measured_ms"])
    kw = {"batch_size": args.batch_size}
    eq = evaluate_width(dev, start, shape, mult, data, steps, **kw)
    curve = [eq] + [evaluate_width(dev, start, shape, m, data, steps, **kw) for m in args.curve
                    if abs(m - mult) > 0.02]
    lat_base = latency_at_accuracy(curve, s["adapted"]["accuracy"])
    side = side_by_side(dev, shape, {"original": start, "netadapt": load_model(out / "adapted.safetensors"),
                                     f"uniform x{mult:.3f}": _uniform(start, shape, mult)}, args.rounds)
    from hwnas.adapt.report import plot_trajectory
    rows = json.loads((out / "trajectory.json").read_text())
    plot_trajectory(out / "comparison.png", rows, budget, f"{name}: NetAdapt vs uniform width",
                    {"measured_ms": s["adapted"]["measured_ms"], "accuracy": s["adapted"]["accuracy"]}, curve)
    res = {"model": name, "budget_ms": budget, "summary": s, "baseline_equal_latency": eq, "baseline_curve": curve,
           "baseline_latency_at_adapted_accuracy": lat_base, "adapt_seconds": adapt_s, "side_by_side": side,
           "peak_rss_gib": peak_rss_gib()}
    (out / "bench.json").write_text(json.dumps(res, indent=2, default=float))
    return res


def _uniform(start, shape, mult: float, unit: int = 8):
    import copy
    from hwnas.adapt.groups import scale_width
    return scale_width(copy.deepcopy(start), shape, mult, unit).eval()


def side_by_side(dev, shape, models: dict, min_rounds: int) -> dict:
    """The networks measured together with the measurement protocol (interleaved rounds: the same moments of
    the machine). Separate measurements minutes apart are less comparable."""
    from hwnas.latency.protocol import measure_latency
    lat = measure_latency(dev, {name: (m.eval(), shape) for name, m in models.items()},
                          min_rounds=min_rounds, max_rounds=max(12, min_rounds))
    return {name: {"ms": v.ms, "statistic": v.statistic, "spread_pct": v.spread_pct, "rounds": v.segments_ms}
            for name, v in lat.items()}


def report(r: dict) -> None:
    s, eq = r["summary"], r["baseline_equal_latency"]
    o, a = s["original"], s["adapted"]
    it = s["seconds_per_iteration"]
    print(f"\n== {r['model']} (budget {r['budget_ms']:.3f} ms, {s['iterations']} iterations, "
          f"{s['fine_tune_steps']} fine-tune steps after the start) ==")
    print(f"original          {o['measured_ms']:.3f} ms  top-1 {o['accuracy']:.4f}  params {o['params']:,}  "
          f"MACs {o['macs']:,}")
    print(f"NetAdapt          {a['measured_ms']:.3f} ms  top-1 {a['accuracy']:.4f}  params {a['params']:,}  "
          f"MACs {a['macs']:,}  (budget {'met' if s['budget_met'] else 'MISSED'})")
    print(f"uniform x{eq['width_mult']:.3f}    {eq['measured_ms']:.3f} ms  top-1 {eq['accuracy']:.4f}  "
          f"params {eq['params']:,}  MACs {eq['macs']:,}")
    print(f"equal latency: accuracy NetAdapt {a['accuracy']:.4f} vs uniform {eq['accuracy']:.4f} "
          f"({100 * (a['accuracy'] - eq['accuracy']):+.2f} points)")
    lb = r["baseline_latency_at_adapted_accuracy"]
    if lb is None:
        print(f"equal accuracy: uniform width never reaches {a['accuracy']:.4f} on the curve "
              f"{[(round(p['measured_ms'], 3), round(p['accuracy'], 4)) for p in r['baseline_curve']]}")
    else:
        print(f"equal accuracy ({a['accuracy']:.4f}): NetAdapt {a['measured_ms']:.3f} ms vs uniform {lb:.3f} ms "
              f"({lb / a['measured_ms']:.2f}x; the paper reports 1.7x on MobileNetV1)")
    if it:
        print(f"wall time per iteration: mean {sum(it) / len(it):.1f} s, max {max(it):.1f} s; whole adapt "
              f"{r['adapt_seconds']:.0f} s")
    side = r.get("side_by_side")
    if side:
        print("side by side (measured together, interleaved): " + ", ".join(
            f"{k} {v['ms']:.3f} ms ({v['statistic']}, halves ±{v['spread_pct'] / 2:.1f}%)" for k, v in side.items()))
    own, kids = r["peak_rss_gib"]
    print(f"peak resident memory: {own:.2f} GiB (this process), {kids:.2f} GiB (largest worker)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--budget", type=float, default=None, help="ms (default: half the measured latency)")
    ap.add_argument("--short-steps", type=int, default=20)
    ap.add_argument("--long-epochs", type=int, default=2)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--initial-step", type=float, default=0.1)
    ap.add_argument("--min-proposals", type=int, default=1)
    ap.add_argument("--max-cut", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--curve", type=float, nargs="*", default=[0.5, 0.75, 1.0])
    ap.add_argument("--out", default="/tmp/hwnas-bench-netadapt")
    ap.add_argument("--rounds", type=int, default=5, help="minimum interleaved rounds of the side-by-side measurement")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    results = [run_one(m, args) for m in args.models]
    for r in results:
        report(r)


if __name__ == "__main__":
    main()
