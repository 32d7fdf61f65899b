"""How far a once-for-all supernet's accuracies can be trusted: its ranking of random architectures of a space
against the same architectures trained stand-alone, next to the ranking's own noise (two stand-alone seeds).

    .venv/bin/python bench/supernet.py --out /tmp/bench-ofa                 # mnasnet at 32x32 on digits
    .venv/bin/python bench/supernet.py --out /tmp/bench-ofa --archs 24 --standalone-steps 300 --seeds 0 1
    .venv/bin/python bench/supernet.py --out /tmp/bench-hard --hard 4 --standalone-steps 500 --standalone-lr 0.02
    .venv/bin/python bench/supernet.py --out /tmp/bench-hard --hard 4 --standalone-steps 500 --standalone-lr 0.02 \
        --fit 200 --finetune 25 50 150 --train-mlp 50        # + fine-tuned reads, their control, train-mlp

Stages, each cached under --out (a rerun continues where a kill left it):
  1. the supernet (estimator `ofa`, its checkpoint in --out), `--steps` sandwich steps;
  2. `--archs` random architectures (seeded, distinct), read off the supernet;
  3. the same architectures trained alone (`short-train`, `--standalone-steps`, on the supernet's split), once
     per seed of `--seeds`;
  4. `--fit` more random architectures read off the supernet, the accuracy predictor (estimator `ofa-mlp`)
     fitted on them, and its ranking of stage 2's architectures;
  5. with `--finetune K ...`: stage 2's architectures read off the supernet after K fine-tune steps each (the
     supernet's weights as the start), and, as the control at equal cost, trained alone from scratch for the same
     K steps (`short-train`, --standalone-lr, first seed);
  6. with `--train-mlp K`: the accuracy predictor `train-mlp` fitted on --fit other architectures each trained
     alone for K steps (--standalone-lr), and its ranking of stage 2's architectures.
Printed: Spearman and Kendall of supernet vs stand-alone (each seed and their mean; the supernet read as top-1,
and for the blockwise schedule also as likelihood, exp(-mean cross-entropy)), of the two stand-alone seeds
(the noise ceiling: no estimator can rank better than training itself repeats), and of two trivial predictors
(parameter count, MACs) vs stand-alone; then the predictor's. --json writes everything.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def estimate_in_chunks(cached, archs, chunk: int = 2) -> list[float]:
    """cached.estimate_many(archs), recorded every `chunk` architectures (a kill loses at most those)."""
    for i in range(0, len(archs), chunk):
        cached.estimate_many(archs[i:i + chunk])
    return cached.estimate_many(archs)


def ranks(x, y) -> dict:
    from scipy.stats import kendalltau, spearmanr
    rho, tau = spearmanr(x, y)[0], kendalltau(x, y)[0]
    return {"spearman": float(rho) if np.isfinite(rho) else 0.0, "kendall": float(tau) if np.isfinite(tau) else 0.0}


def size_of(space, arch, input_size: int) -> tuple[float, float]:
    """(parameters in millions, MACs in millions) of the network at `input_size`."""
    from hwnas.models.stats import count_macs, count_params
    model = space.build(arch, num_classes=10)
    return count_params(model) / 1e6, count_macs(model, (1, 3, input_size, input_size)) / 1e6


def trained_alone(args, space, ofa, archs, seed: int, steps: int, what: str) -> list[float]:
    """Top-1 of `archs` each trained alone for `steps` steps (short-train, --standalone-lr, `seed`), on the
    supernet's validation split (one split for every figure: seeds differ in training only); cached under --out,
    one file per seed, keyed by the settings inside."""
    from hwnas.search.estimators import CachedEstimator, get_estimator
    short = get_estimator("short-train", space, data=args.data, seed=seed, train_device="cpu", steps=steps,
                          lr=args.standalone_lr)
    short._split = ofa.split
    cached = CachedEstimator(short, Path(args.out) / f"standalone-seed{seed}.jsonl")
    t0 = time.perf_counter()
    values = estimate_in_chunks(cached, archs)
    print(f"{what}: {cached.misses} trained now, {time.perf_counter() - t0:.0f} s", flush=True)
    return values


def standalone(args, space, ofa, archs) -> dict:
    """Stand-alone top-1 of `archs` per seed of --seeds (--standalone-steps)."""
    return {s: trained_alone(args, space, ofa, archs, s, args.standalone_steps, f"stand-alone seed {s}")
            for s in args.seeds}


def scratch(args, space, ofa, archs) -> dict:
    """The control for --finetune: each K of --finetune, stage 2's architectures trained alone for K steps (the
    first seed)."""
    return {k: trained_alone(args, space, ofa, archs, args.seeds[0], k, f"from scratch, {k} steps")
            for k in args.finetune}


def finetuned(args, space, sup_opts, archs) -> dict:
    """Each K of --finetune: stage 2's architectures read off the supernet after K fine-tune steps."""
    from hwnas.search.estimators import CachedEstimator, get_estimator
    out = {}
    for k in args.finetune:
        est = get_estimator("ofa", space, **sup_opts, finetune=k, finetune_lr=args.finetune_lr)
        t0 = time.perf_counter()
        out[k] = estimate_in_chunks(CachedEstimator(est, Path(args.out) / "supernet.jsonl"), archs)
        print(f"supernet + {k} fine-tune steps: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def train_mlp(args, space):
    """The `train-mlp` predictor of --train-mlp K (its estimates cached under --out)."""
    from hwnas.search.estimators import get_estimator
    return get_estimator("train-mlp", space, data=args.data, seed=0, train_device="cpu", fit=args.fit,
                         steps=args.train_mlp, lr=args.standalone_lr, evals=str(Path(args.out) / "train-mlp.jsonl"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("--train-size", type=int, default=32)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--hard", type=int, default=0, metavar="COPIES",
                    help="train and read on digits made harder (bench/netadapt.py's hard_digits: COPIES distorted, "
                         "noisy copies of each training image, 2 of each validation image), written under --out; "
                         "make them once before running --only processes side by side")
    ap.add_argument("--steps", type=int, default=1500, help="supernet training steps")
    ap.add_argument("--schedule", default="blockwise", help="the supernet's schedule (ofa's: sandwich, blockwise)")
    ap.add_argument("--lr", type=float, default=None, help="the supernet's learning rate (default: the schedule's)")
    ap.add_argument("--teacher", type=float, default=0.15, help="blockwise: the teacher's share of the steps")
    ap.add_argument("--random-paths", type=int, default=2, help="random architectures a supernet step")
    ap.add_argument("--normalise", action="store_true",
                    help="blockwise: each block's error divided by the variance of the teacher's features there")
    ap.add_argument("--metric", default="top1", choices=["top1", "likelihood"],
                    help="what the accuracy predictor is fitted on (the supernet read as top-1 or likelihood)")
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--standalone-steps", type=int, default=300)
    ap.add_argument("--standalone-lr", type=float, default=0.05)
    ap.add_argument("--only", choices=["standalone", "supernet", "train-mlp"], default=None,
                    help="only the stand-alone training, only the supernet's stages (training, estimates, the "
                         "predictor's fit), or only --train-mlp's estimates: processes side by side; a last run "
                         "without --only reports")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="stand-alone training seeds")
    ap.add_argument("--finetune", type=int, nargs="*", default=[], metavar="K",
                    help="also read the architectures after K fine-tune steps from the supernet's weights, against "
                         "K steps from scratch (stage 5)")
    ap.add_argument("--finetune-lr", type=float, default=0.01, help="the fine-tune's learning rate (cosine)")
    ap.add_argument("--train-mlp", type=int, default=0, metavar="K",
                    help="also fit the accuracy predictor `train-mlp` on --fit architectures each trained alone for K "
                         "steps (--standalone-lr), and rank stage 2's architectures with it")
    ap.add_argument("--fit", type=int, default=400, help="architectures the accuracy predictor is fitted on")
    ap.add_argument("--out", default="/tmp/bench-supernet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch
    from hwnas.search.estimators import CachedEstimator, get_estimator
    from hwnas.search.spaces import get_space
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.hard:
        from netadapt import hard_digits  # bench/netadapt.py, beside this file
        args.data, _ = hard_digits(out, args.hard)
    space = get_space(args.space, input_size=args.train_size)
    sup_opts = dict(data=args.data, seed=0, train_device="cpu", steps=args.steps, lr=args.lr,
                    schedule=args.schedule, random_paths=args.random_paths, checkpoint=str(out / "ofa.safetensors"))
    if args.schedule != "sandwich":
        sup_opts["teacher"] = args.teacher
    if args.normalise:
        sup_opts["normalise"] = True
    ofa = get_estimator("ofa", space, **sup_opts)
    from hwnas.search.estimators.ofa_mlp import fit_archs
    archs = fit_archs(space, args.archs, seed=12345)
    if args.only == "standalone":
        standalone(args, space, ofa, archs)
        scratch(args, space, ofa, archs)
        return 0
    if args.only == "train-mlp":
        train_mlp(args, space).warm_up(log=print)
        return 0

    t0 = time.perf_counter()
    ofa.supernet()
    train_s = time.perf_counter() - t0
    print(f"supernet: {args.steps} steps ({ofa.trained_steps_now} trained now, {train_s / 60:.1f} min)", flush=True)
    sup = CachedEstimator(ofa, out / "supernet.jsonl")
    t0 = time.perf_counter()
    sup_acc = sup.estimate_many(archs)
    print(f"supernet estimates of {len(archs)} architectures: {time.perf_counter() - t0:.1f} s", flush=True)
    likelihood = get_estimator("ofa", space, **sup_opts, metric="likelihood") if args.schedule != "sandwich" else None
    sup_like = CachedEstimator(likelihood, out / "supernet.jsonl").estimate_many(archs) if likelihood else None
    tuned = finetuned(args, space, sup_opts, archs)
    if args.only == "supernet":
        if args.fit:
            get_estimator("ofa-mlp", space, fit=args.fit, metric=args.metric, **sup_opts).warm_up(log=print)
        return 0
    alone = standalone(args, space, ofa, archs)
    control = scratch(args, space, ofa, archs)
    mean_alone = np.mean([alone[s] for s in args.seeds], axis=0)
    sizes = [size_of(space, a, args.train_size) for a in archs]

    report = {"space": args.space, "train_size": args.train_size, "data": args.data, "steps": args.steps,
              "schedule": args.schedule, "lr": ofa.lr, "random_paths": args.random_paths,
              "teacher": args.teacher if args.schedule != "sandwich" else None,
              "supernet_minutes_now": round(train_s / 60, 1), "standalone_steps": args.standalone_steps,
              "standalone_lr": args.standalone_lr, "seeds": args.seeds, "archs": [list(a) for a in archs],
              "supernet": sup_acc, "standalone": {str(s): v for s, v in alone.items()},
              "params_m": [p for p, _ in sizes], "macs_m": [m for _, m in sizes], "rank": {}}
    rank = report["rank"]
    for s in args.seeds:
        rank[f"supernet vs stand-alone seed {s}"] = ranks(sup_acc, alone[s])
    rank["supernet vs stand-alone mean"] = ranks(sup_acc, mean_alone)
    if sup_like is not None:
        report["supernet_likelihood"] = sup_like
        for s in args.seeds:
            rank[f"supernet likelihood vs stand-alone seed {s}"] = ranks(sup_like, alone[s])
        rank["supernet likelihood vs stand-alone mean"] = ranks(sup_like, mean_alone)
    if len(args.seeds) >= 2:
        rank[f"stand-alone seed {args.seeds[0]} vs seed {args.seeds[1]} (noise ceiling)"] = ranks(
            alone[args.seeds[0]], alone[args.seeds[1]])
    for k in args.finetune:
        report.setdefault("finetune", {})[str(k)] = {"supernet": tuned[k], "scratch": control[k]}
        for s in args.seeds:
            rank[f"supernet + {k} fine-tune steps vs stand-alone seed {s}"] = ranks(tuned[k], alone[s])
        rank[f"supernet + {k} fine-tune steps vs stand-alone mean"] = ranks(tuned[k], mean_alone)
        rank[f"scratch {k} steps vs stand-alone mean"] = ranks(control[k], mean_alone)
    report["finetune_lr"] = args.finetune_lr if args.finetune else None
    rank["params vs stand-alone mean"] = ranks(report["params_m"], mean_alone)
    rank["MACs vs stand-alone mean"] = ranks(report["macs_m"], mean_alone)

    if args.fit:
        mlp = get_estimator("ofa-mlp", space, fit=args.fit, metric=args.metric, **sup_opts)
        t0 = time.perf_counter()
        mlp.warm_up(log=print)
        print(f"accuracy predictor fitted on {args.fit} supernet estimates: {time.perf_counter() - t0:.0f} s",
              flush=True)
        fit_set, _ = mlp.evaluations()
        report["fit_overlap"] = len(set(fit_set) & set(archs))
        pred = mlp.estimate_many(archs)
        rank["predictor vs supernet"] = ranks(pred, sup_like if args.metric == "likelihood" else sup_acc)
        rank["predictor vs stand-alone mean"] = ranks(pred, mean_alone)
        report["predictor"] = {"metric": args.metric, "values": pred, **mlp.info()["predictor"]}

    if args.train_mlp:
        mlp = train_mlp(args, space)
        t0 = time.perf_counter()
        mlp.warm_up(log=print)
        print(f"train-mlp fitted on {args.fit} architectures trained {args.train_mlp} steps each: "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        fit_set, _ = mlp.evaluations()
        pred = mlp.estimate_many(archs)
        rank["train-mlp vs stand-alone mean"] = ranks(pred, mean_alone)
        report["train_mlp"] = {"steps": args.train_mlp, "fit_overlap": len(set(fit_set) & set(archs)),
                               "values": pred, **mlp.info()["predictor"]}

    print(f"\n{args.space} at {args.train_size}x{args.train_size} on {args.data}: {len(archs)} random architectures")
    print(f"  supernet top-1 {min(sup_acc):.3f}..{max(sup_acc):.3f}; stand-alone ({args.standalone_steps} steps) "
          f"{float(np.min(mean_alone)):.3f}..{float(np.max(mean_alone)):.3f}")
    print(f"  {'':48s} {'Spearman':>9s} {'Kendall':>8s}")
    for k, v in rank.items():
        print(f"  {k:48s} {v['spearman']:9.3f} {v['kendall']:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
