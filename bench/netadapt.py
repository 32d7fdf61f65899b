"""NetAdapt vs a uniform width multiplier, on this machine's `cpu` device (onnxruntime), per seed.

Latency at the deployment input (--input-size, default the network's own: 224), training at --train-size (32).
For each network and seed:
  1. NetAdapt to a budget (default: 0.6 of the network's measured latency), distilling from the unpruned network
     unless --no-distill;
  2. the baseline: the same start, every group scaled by one width multiplier to the adapted network's
     *measured* latency, fine-tuned for the same number of steps NetAdapt spent after the start (distilled from
     the same teacher when NetAdapt was);
  3. a baseline curve (a few multipliers, same steps) to read the latency each reaches at equal accuracy;
  4. the original, NetAdapt's and the uniform network measured side by side (interleaved rounds).
Prints accuracy at equal measured latency, latency at equal accuracy, the spread across seeds, wall time per
iteration and peak resident memory. `--train-per-class K` makes digits harder honestly: K training images per
class (the validation split stays the same 20%), written as an ImageFolder under --out; `--hard COPIES` instead
distorts every digit (rotation, zoom, shear, shift, noise) with a held-out test set. Both print whether the task
separates the methods at all: how much uniform width at the budget loses against the unpruned network.

    .venv/bin/python bench/netadapt.py                                   # mobilenet_v2 and resnet18, 3 seeds
    .venv/bin/python bench/netadapt.py --models resnet18 --seeds 0 --train-per-class 30 --out /tmp/na
    .venv/bin/python bench/netadapt.py --models resnet18 --hard 8 --pretrain-steps 1500 --budget-fraction 0.5 \
        --curve 0.35 0.5 0.75 1.0 --out /tmp/na-r18
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import time
from pathlib import Path


def peak_rss_gib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return own, kids


def few_digits(root: Path, per_class: int, seed: int = 0) -> tuple[str, str]:
    """digits as two ImageFolders (PNG, 8x8 grey). The first, passed as --data: val/ the same stratified 20% hwnas
    holds out, train/ `per_class` images of each class from the rest. The second has the same train/ (so the same
    standardisation) and as val/ every remaining image no run ever sees: the held-out test set, on which the
    networks are compared (NetAdapt chooses its proposals on val/, so val/ figures favour it)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from hwnas.data import _stratified_split
    base = Path(root) / f"digits-{per_class}-per-class"
    test = Path(root) / f"digits-{per_class}-per-class-test"
    if (base / "val").is_dir() and (test / "val").is_dir():
        return str(base), str(test)
    d = load_digits()
    tr, va = _stratified_split(d.target, 0.2, seed)
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(tr[d.target[tr] == c])[:per_class] for c in range(10)])
    rest = np.setdiff1d(tr, keep)
    for folder_root, part, idx in ((base, "train", keep), (base, "val", va), (test, "train", keep),
                                   (test, "val", rest)):
        for i in idx:
            folder = folder_root / part / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return str(base), str(test)


def _affine_noise(images, copies: int, seed: int, size: int = 32, rotate: float = 35.0, shift: float = 0.2,
                  noise: float = 0.35):
    """`copies` distorted versions of each 8x8 digit (N x 8 x 8 in [0, 1]) on a size x size canvas: rotation up to
    ±`rotate` degrees, zoom 0.85-1.15, shear up to ±0.2, shift up to ±`shift` of the canvas, then Gaussian noise of
    std `noise`; uint8 N*copies x size x size. Fixed by `seed`."""
    import math
    import numpy as np
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None], size=(20, 20),
                      mode="bilinear", align_corners=False)
    pad = (size - 20) // 2
    x = F.pad(x, (pad, size - 20 - pad, pad, size - 20 - pad)).repeat_interleave(copies, 0)
    n = len(x)

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)
    angle, zoom = uniform(-1, 1) * math.radians(rotate), uniform(0.85, 1.15)
    shear, move = uniform(-0.2, 0.2), uniform(-shift, shift, 2)
    c, s = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([c * zoom, (shear - s) * zoom, move[:, 0]], 1),
                         torch.stack([s * zoom, c * zoom, move[:, 1]], 1)], 1)
    y = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    y = (y + noise * torch.randn(y.shape, generator=g)).clamp(0, 1)
    return (y[:, 0] * 255).round().to(torch.uint8).numpy()


def hard_digits(root: Path, copies: int, seed: int = 0) -> tuple[str, str]:
    """digits made harder honestly, by distortion: every image rotated, zoomed, sheared, shifted on a 32x32 canvas
    and buried in Gaussian noise (`_affine_noise`). Split before distorting, so no source image is on two sides:
    val/ is the same stratified 20% hwnas holds out (2 distorted copies each), the rest is split 75/25 into train/
    (`copies` distorted copies each) and the held-out test set (3 copies each, no choice is made on it).
    Returns (data, test) as ImageFolders, like few_digits."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from hwnas.data import _stratified_split
    base, test = Path(root) / f"digits-hard-x{copies}", Path(root) / f"digits-hard-x{copies}-test"
    if (base / "val").is_dir() and (test / "val").is_dir():
        return str(base), str(test)
    d = load_digits()
    images = d.images / 16.0
    tr, va = _stratified_split(d.target, 0.2, seed)
    keep_rel, rest_rel = _stratified_split(d.target[tr], 0.25, seed + 1)
    keep, rest = tr[keep_rel], tr[rest_rel]
    sets = {"train": (keep, copies, 0), "val": (va, 2, 1), "test": (rest, 3, 3)}  # indices, copies, seed offset
    pictures = {name: _affine_noise(images[idx], k, seed=1000 * seed + offset)
                for name, (idx, k, offset) in sets.items()}
    # both folders hold the same train/ (the same standardisation); the test folder's val/ is the held-out set
    for folder_root, part, name in ((base, "train", "train"), (base, "val", "val"), (test, "train", "train"),
                                    (test, "val", "test")):
        idx, k, _ = sets[name]
        for j, i in enumerate(np.repeat(idx, k)):
            folder = folder_root / part / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pictures[name][j]).save(folder / f"{i:04d}-{j % k}.png")
    return str(base), str(test)


def test_scorer(test_data: str | None, image_size: int, seed: int):
    """model -> top-1 on the held-out test images (None without --train-per-class: there is no test set)."""
    if not test_data:
        return None
    from torch.utils.data import DataLoader
    from hwnas.data import load_dataset
    from hwnas.train import evaluate
    loader = DataLoader(load_dataset(test_data, image_size=image_size, channels=3, seed=seed).val, batch_size=256)
    return lambda model: float(evaluate(model, loader))


def run_one(name: str, seed: int, args) -> dict:
    from hwnas.adapt import AdaptConfig, adapt
    from hwnas.adapt.baseline import evaluate_width, latency_at_accuracy, match_latency
    from hwnas.adapt.proposals import load_model, load_split
    from hwnas.latency.devices import get_device
    from hwnas.models import create

    out = Path(args.out) / f"{name}-seed{seed}"
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    dev = get_device(args.device)
    cfg = AdaptConfig(name, budget_ms=1.0, device=args.device, data=args.data, input_size=args.input_size,
                      train_size=args.train_size, out=str(out), short_steps=args.short_steps,
                      long_epochs=args.long_epochs, long_steps=args.long_steps, pretrain_steps=args.pretrain_steps,
                      workers=args.workers, initial_step=args.initial_step, min_proposals=args.min_proposals,
                      max_proposals=args.max_proposals or None, max_cut=args.max_cut, batch_size=args.batch_size,
                      distill=args.distill, importance=args.importance, seed=seed, resume=args.resume)
    data = cfg.data_args()
    split = load_split(data)
    shape = (1, *split.input_shape)                                    # training input: traced, fine-tuned
    lat_shape = (1, split.input_shape[0], cfg.input_size, cfg.input_size)  # deployment input: timed
    budget = args.budget or args.budget_fraction * dev.latency(create(name, num_classes=split.num_classes).eval(),
                                                               lat_shape).ms
    cfg.budget_ms = budget
    t0 = time.time()
    s = adapt(cfg)
    adapt_s = time.time() - t0
    start = load_model(out / "checkpoints" / "iter_000.safetensors")
    teacher = start if cfg.distill else None
    steps = s["fine_tune_steps"]
    mult, _ = match_latency(dev, start, shape, s["adapted"]["measured_ms"], lat_shape=lat_shape)
    score = test_scorer(args.test_data, cfg.train_size, seed)
    kw = {"batch_size": args.batch_size, "seed": seed, "lat_shape": lat_shape, "teacher": teacher, "test": score}
    eq = evaluate_width(dev, start, shape, mult, data, steps, **kw)
    curve = [eq] + [evaluate_width(dev, start, shape, m, data, steps, **kw) for m in args.curve
                    if abs(m - mult) > 0.02]
    lat_base = latency_at_accuracy(curve, s["adapted"]["accuracy"])
    adapted = load_model(out / "adapted.safetensors")
    test = None
    if score:
        test = {"original": score(start), "netadapt": score(adapted)}
        test["uniform_latency_at_netadapt_accuracy"] = latency_at_accuracy(
            [{**p, "accuracy": p["test_accuracy"]} for p in curve], test["netadapt"])
    side = side_by_side(dev, lat_shape, {"original": start, "netadapt": adapted,
                                         f"uniform x{mult:.3f}": _uniform(start, shape, mult)}, args.rounds)
    from hwnas.adapt.report import plot_trajectory
    rows = json.loads((out / "trajectory.json").read_text())
    plot_trajectory(out / "comparison.png", rows, budget, f"{name} seed {seed}: NetAdapt vs uniform width",
                    {"measured_ms": s["adapted"]["measured_ms"], "accuracy": s["adapted"]["accuracy"]}, curve)
    res = {"model": name, "seed": seed, "budget_ms": budget, "summary": s, "baseline_equal_latency": eq,
           "baseline_curve": curve, "baseline_latency_at_adapted_accuracy": lat_base, "adapt_seconds": adapt_s,
           "side_by_side": side, "peak_rss_gib": peak_rss_gib(), "input_size": cfg.input_size,
           "train_size": cfg.train_size, "data": args.data, "distill": cfg.distill, "test": test}
    (out / "bench.json").write_text(json.dumps(res, indent=2, default=float))
    return res


def below_curve(curve: list[dict], accuracy: float, key: str = "accuracy") -> bool:
    """True when even the fastest multiplier of the curve reaches `accuracy`: the uniform latency at equal
    accuracy is then only an upper bound (a narrower multiplier might reach it too)."""
    fastest = min(curve, key=lambda p: p["measured_ms"])
    return fastest[key] >= accuracy


def _ratio_text(lb: float, ms: float, bound: bool) -> str:
    return f"uniform {'<= ' if bound else ''}{lb:.3f} ms ({'<= ' if bound else ''}{lb / ms:.2f}x)"


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
    print(f"\n== {r['model']} seed {r['seed']} (budget {r['budget_ms']:.3f} ms at {r['input_size']}x{r['input_size']}, "
          f"top-1 at {r['train_size']}x{r['train_size']} on {r['data']}, distill {r['distill']}; "
          f"{s['iterations']} iterations, {s['fine_tune_steps']} fine-tune steps after the start) ==")
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
        bound = below_curve(r["baseline_curve"], a["accuracy"])
        print(f"equal accuracy ({a['accuracy']:.4f}): NetAdapt {a['measured_ms']:.3f} ms vs "
              f"{_ratio_text(lb, a['measured_ms'], bound)}; the paper reports 1.7x on MobileNetV1")
    t = r.get("test")
    if t:
        ut = eq["test_accuracy"]
        print(f"held-out test top-1 (never used for a choice): original {t['original']:.4f}, NetAdapt "
              f"{t['netadapt']:.4f}, uniform x{eq['width_mult']:.3f} {ut:.4f} ({100 * (t['netadapt'] - ut):+.2f} points "
              f"at equal latency); uniform curve " + ", ".join(
                  f"x{p['width_mult']:.2f} {p['measured_ms']:.3f} ms {p['test_accuracy']:.4f}" for p in r["baseline_curve"]))
        lt = t["uniform_latency_at_netadapt_accuracy"]
        print(f"equal held-out accuracy ({t['netadapt']:.4f}): " + (
            f"NetAdapt {a['measured_ms']:.3f} ms vs "
            f"{_ratio_text(lt, a['measured_ms'], below_curve(r['baseline_curve'], t['netadapt'], 'test_accuracy'))}"
            if lt else
            "uniform width never reaches it on the curve"))
    errors = [e for e in s.get("prediction_error_pct", []) if e is not None]
    if errors:
        print(f"per-layer cost prediction of each chosen network vs its measurement: "
              f"{', '.join(f'{e:+.1f}%' for e in errors)}")
    if it:
        print(f"wall time per iteration: mean {sum(it) / len(it):.1f} s, max {max(it):.1f} s; whole adapt "
              f"{r['adapt_seconds']:.0f} s")
    side = r.get("side_by_side")
    if side:
        print("side by side (measured together, interleaved): " + ", ".join(
            f"{k} {v['ms']:.3f} ms ({v['statistic']}, halves ±{v['spread_pct'] / 2:.1f}%)" for k, v in side.items()))
    own, kids = r["peak_rss_gib"]
    print(f"peak resident memory: {own:.2f} GiB (this process), {kids:.2f} GiB (largest worker)")


def _mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def across_seeds(results: list[dict]) -> None:
    """Per network: the gap at equal measured latency and the latency ratio at equal accuracy, over seeds; on the
    held-out test images where there are some, else on the validation split NetAdapt chose its proposals by."""
    for name in dict.fromkeys(r["model"] for r in results):
        rs = [r for r in results if r["model"] == name]
        held_out = all(r.get("test") for r in rs)
        if held_out:
            na = [r["test"]["netadapt"] for r in rs]
            un = [r["baseline_equal_latency"]["test_accuracy"] for r in rs]
            full = [r["test"]["original"] for r in rs]
            lat = [r["test"]["uniform_latency_at_netadapt_accuracy"] for r in rs]
        else:
            na = [r["summary"]["adapted"]["accuracy"] for r in rs]
            un = [r["baseline_equal_latency"]["accuracy"] for r in rs]
            full = [r["summary"]["original"]["accuracy"] for r in rs]
            lat = [r["baseline_latency_at_adapted_accuracy"] for r in rs]
        key = "test_accuracy" if held_out else "accuracy"
        bounds = sum(below_curve(r["baseline_curve"], a, key) for r, a in zip(rs, na))
        gap = [100 * (a - b) for a, b in zip(na, un)]
        lost = [100 * (f - b) for f, b in zip(full, un)]
        ratio = [lb / r["summary"]["adapted"]["measured_ms"] for lb, r in zip(lat, rs) if lb is not None]
        ms = [r["summary"]["adapted"]["measured_ms"] for r in rs]
        print(f"\n{name} over {len(rs)} seeds, top-1 on the {'held-out test images' if held_out else 'validation split'}: "
              f"start (unpruned) {_mean_std(full)}, NetAdapt {_mean_std(na)} at {_mean_std(ms)} ms, uniform at equal "
              f"latency {_mean_std(un)}; gap {_mean_std(gap)} points; latency ratio at equal accuracy "
              f"{_mean_std(ratio) if ratio else 'n/a'} ({len(ratio)} of {len(rs)} seeds where uniform reaches it"
              f"{f'; in {bounds} of them only an upper bound: uniform reaches it at its fastest point' if bounds else ''})")
        print(f"  hardness: uniform width at the budget loses {_mean_std(lost)} points of top-1 against the unpruned "
              f"start (a task that separates the methods needs >= 3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet18"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--train-per-class", type=int, default=None,
                    help="digits with only this many training images per class (a harder task)")
    ap.add_argument("--hard", type=int, default=None, metavar="COPIES",
                    help="digits distorted (rotation, zoom, shear, shift, noise; COPIES distorted copies of each "
                         "training image) with a held-out test set: a harder task")
    ap.add_argument("--input-size", type=int, default=None, help="deployment input (default: the network's own)")
    ap.add_argument("--train-size", type=int, default=None, help="training input (default: NetAdapt's, 32)")
    ap.add_argument("--budget", type=float, default=None, help="ms (default: --budget-fraction of the measured)")
    ap.add_argument("--budget-fraction", type=float, default=0.6)
    ap.add_argument("--short-steps", type=int, default=50)
    ap.add_argument("--long-epochs", type=int, default=2)
    ap.add_argument("--long-steps", type=int, default=None, help="long-term fine-tune steps (instead of epochs)")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--initial-step", type=float, default=0.1)
    ap.add_argument("--min-proposals", type=int, default=1)
    ap.add_argument("--max-proposals", type=int, default=12, help="0: every group")
    ap.add_argument("--max-cut", type=float, default=1.0)
    ap.add_argument("--importance", default="l2")
    ap.add_argument("--no-distill", dest="distill", action="store_false")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--curve", type=float, nargs="*", default=[0.5, 0.75, 1.0])
    ap.add_argument("--out", default="/tmp/hwnas-bench-netadapt")
    ap.add_argument("--rounds", type=int, default=5, help="minimum interleaved rounds of the side-by-side measurement")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    args.test_data = None
    if args.train_per_class and args.hard:
        ap.error("--train-per-class and --hard are two different tasks: give one")
    if args.train_per_class:
        args.data, args.test_data = few_digits(Path(args.out), args.train_per_class)
    elif args.hard:
        args.data, args.test_data = hard_digits(Path(args.out), args.hard)
    results = [run_one(m, seed, args) for m in args.models for seed in args.seeds]
    for r in results:
        report(r)
    across_seeds(results)


if __name__ == "__main__":
    main()
