"""The searched network against zoo networks scaled uniformly to the same measured latency (issue 18, item 4).

    .venv/bin/python bench/versus.py --run runs/ofa --baselines mobilenet_v2 mnasnet_a1 \
        --steps 1500 --seeds 0 1 2 --jobs 2 --out /tmp/versus

  1. The search's best network (or --space/--arch) is built at the deployment size (mnasnet: 224) and each
     baseline's width multiplier is bisected on the device until it is the widest that measures no slower
     (the one measurement protocol; `adapt.baseline.widest_within`, as NetAdapt's uniform baseline).
  2. All of them are then measured side by side (interleaved rounds, the same moments of the machine): the
     latency figures and ratios printed come from this one measurement, next to each one's spread.
  3. Each is trained from scratch with `hwnas train`'s code at the training size on the same data, the same
     steps, learning rate and seeds; top-1 on the validation split as mean +- std over the seeds. With
     --jobs 2 two trainings share the machine (one thread each); they are not timed, so that is harmless.

The networks' latencies are measured before any training starts: run it on an otherwise quiet machine.
Trainings already finished in --out are reused (each has its own run directory; a killed one resumes).
Digits at 32x32 saturates near 99% for all of them; --hard 4 trains on distorted, noisy digits instead (the
search's accuracy estimates stay what they were: this asks whether the found architecture transfers).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hwnas.adapt.baseline import widest_within
from hwnas.data import load_dataset
from hwnas.errors import TrainingDiverged
from hwnas.latency.devices import get_device
from hwnas.latency.protocol import NETWORK, measure_latency
from hwnas.models import registry
from hwnas.models.stats import count_macs, count_params
from hwnas.train_run import TrainConfig, resolve, train_network


def _train(job: dict) -> dict:
    torch.set_num_threads(1)
    out = Path(job["out"])
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    try:
        return train_network(TrainConfig(**job, resume=True, measure=False), log=lambda *_: None,
                             show_progress=False)
    except TrainingDiverged as e:
        return {"top1": None, "diverged": str(e)}  # a result of the comparison, not a reason to stop it


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=None, help="a search run directory: its best network")
    ap.add_argument("--space", default=None)
    ap.add_argument("--arch", default=None, help="with --space: a JSON list of choice indices")
    ap.add_argument("--baselines", nargs="+", default=["mobilenet_v2", "mnasnet_a1"])
    ap.add_argument("--max-width", type=float, default=1.5, help="widest multiplier the bisection tries")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (one thread each)")
    ap.add_argument("--data", default=None, help="default: the search's, else digits")
    ap.add_argument("--hard", type=int, default=0, metavar="COPIES",
                    help="train on digits made harder (bench/netadapt.py's hard_digits: COPIES distorted, noisy "
                         "copies of each training image, 2 of each validation image), written under --out")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    if args.hard:
        from netadapt import hard_digits  # bench/netadapt.py, beside this file
        args.data, _ = hard_digits(Path(args.out), args.hard)
    found = TrainConfig(run=args.run, space=args.space, arch=args.arch, data=args.data)
    what = resolve(found)
    data, size, deploy = what["data"], what["train_size"], what["input_size"]
    classes = load_dataset(data, image_size=size, channels=3).num_classes
    shape = (1, 3, deploy, deploy)
    device = get_device(args.device)
    device.check()
    winner = what["build"](classes).eval()
    ref = measure_latency(device, {"found": (winner, shape)}, NETWORK)["found"].ms
    print(f"found: {what['what']}: {ref:.3f} ms on {args.device} at {deploy}x{deploy}", flush=True)

    widths = {}
    for name in args.baselines:
        def latency_of(mult, name=name):
            model = registry.create(name, num_classes=classes, width_mult=mult).eval()
            ms = device.latency(model, shape, NETWORK).ms
            print(f"  {name} x{mult:.3f}: {ms:.3f} ms", flush=True)
            return ms
        widths[name], ms = widest_within(latency_of, ref, 0.1, args.max_width)
        if ms > ref:
            print(f"  {name}: even x0.1 is slower than the found network; compared at x0.1 (unequal latency)")
    models = {"found": winner, **{f"{n} x{w:.3f}": registry.create(n, num_classes=classes, width_mult=w).eval()
                                  for n, w in widths.items()}}
    side = measure_latency(device, {k: (m, shape) for k, m in models.items()}, NETWORK)
    print("side by side (interleaved rounds):")
    for k, v in side.items():
        print(f"  {k:24s} {v.ms:8.3f} ms  ({v.ms / side['found'].ms:.2f}x the found network's; "
              f"spread {v.spread_pct:.1f}%)", flush=True)

    common = {"data": data, "train_size": size, "input_size": deploy, "steps": args.steps, "lr": args.lr}
    jobs = {("found", s): {**common, "space": what["source"]["space"], "arch": what["source"]["arch"], "seed": s,
                           "out": f"{args.out}/found-s{s}"} for s in args.seeds}
    for n, w in widths.items():
        jobs.update({(f"{n} x{w:.3f}", s): {**common, "model": n, "width": w, "seed": s,
                                            "out": f"{args.out}/{n}-x{w:.3f}-s{s}"} for s in args.seeds})
    print(f"training {len(jobs)} networks ({args.steps} steps, lr {args.lr}, at {size}x{size} on {data}), "
          f"{args.jobs} at once", flush=True)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding onnxruntime's threads
    with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
        done = dict(zip(jobs, pool.map(_train, jobs.values())))

    rows = {}
    for k, m in models.items():
        top1 = [done[(k, s)]["top1"] for s in args.seeds]  # None: diverged
        rows[k] = {"ms": side[k].ms, "spread_pct": side[k].spread_pct, "top1": top1,
                   "params": count_params(m), "macs": count_macs(m, shape)}
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    print(f"\n{'network':24s} {'ms':>8s} {'ratio':>6s} {'top-1 mean +- std (min..max)':32s} {'params':>9s} "
          f"{'MACs':>11s}")
    for k, r in rows.items():
        t = [v for v in r["top1"] if v is not None]
        fell = len(r["top1"]) - len(t)
        top = f"{statistics.mean(t):.4f} +- {sd(t):.4f} ({min(t):.4f}..{max(t):.4f})" if t else "-"
        print(f"{k:24s} {r['ms']:8.3f} {r['ms'] / rows['found']['ms']:6.2f} {top} {r['params']:9d} {r['macs']:11d}"
              + (f"  ({fell} of {len(r['top1'])} seeds diverged, left out)" if fell else ""))
    f = rows["found"]["top1"]
    for k, r in rows.items():
        if k == "found":
            continue
        pairs = [(a, b) for a, b in zip(f, r["top1"]) if a is not None and b is not None]
        if not pairs:
            continue
        diff = [a - b for a, b in pairs]
        fa, fb = [a for a, _ in pairs], [b for _, b in pairs]
        apart = min(fa) > max(fb) or max(fa) < min(fb)
        print(f"found - {k}: {100 * statistics.mean(diff):+.2f} +- {100 * sd(diff):.2f} points of top-1 over the "
              f"{len(pairs)} seeds both trained (per seed {[round(100 * d, 2) for d in diff]}); "
              f"{'outside' if apart else 'within'} the seeds' spread")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "widths": widths, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
