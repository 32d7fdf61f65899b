"""Search strategies head to head: random vs regularized evolution vs REINFORCE vs PPO (and, on the cell
spaces, progressive = PNAS) at an equal number of evaluated architectures, several seeds each, on a real
space with latency from the device's table.

    .venv/bin/python bench/search.py --space mnasnet-tiny --device cpu --target 3ms --hard \
        --samples 200 --seeds 0 1 2 --estimator naswot
    .venv/bin/python bench/search.py --space pnas --device cpu --target 0.5ms \
        --strategies progressive evolution random --samples 60 --seeds 0 1 2 --estimator naswot
    .venv/bin/python bench/search.py --space mnasnet --device cpu --target 3ms --hard --samples 1000 \
        --seeds 0 1 2 3 4 --estimator ofa-mlp --train-size 32     # + predictor-evolution; latency at 224

Prints, per strategy, the best reward and the hypervolume of the (accuracy, predicted latency) Pareto front
(reference point: 2 x target, accuracy 0) as mean +- std over the seeds, and the spread (min..max).
predictor-evolution (OFA's evolution on the ofa-mlp predictor) is sized to the same number of scored
architectures (population samples/10, generations to match), not its default 23,000.
Accuracy values are cached per architecture in one file shared by all runs (the estimator does not depend
on the strategy), so a second invocation with the same settings re-uses them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hwnas.latency.devices import get_device
from hwnas.search.estimators import CachedEstimator, get_estimator
from hwnas.search.pareto import hypervolume
from hwnas.search.reward import Reward
from hwnas.search.api import load_predictor
from hwnas.search.run import SearchRun
from hwnas.search.spaces import get_space
from hwnas.search.strategies import get_strategy
from hwnas.units import parse_latency_ms


def equal(strategy: str, samples: int) -> dict:
    """predictor-evolution scores population + generations x (population - parents) architectures by its
    predictor (23,000 by default): sized here to the `samples` the other strategies evaluate."""
    if strategy != "predictor-evolution":
        return {}
    population = max(4, samples // 10)
    children = population - max(2, round(0.25 * population))
    return {"population": population, "generations": max(0, round((samples - population) / children))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mnasnet-tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--db", default=None)
    ap.add_argument("--target", default="3ms")
    ap.add_argument("--hard", action="store_true")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="default: random evolution rl ppo, and progressive on a cell space (nasnet, pnas)")
    ap.add_argument("--estimator", default="naswot")
    ap.add_argument("--steps", type=int, default=None, help="short-train steps")
    ap.add_argument("--estimator-option", "-E", action="append", default=[], metavar="KEY=VALUE",
                    help="an estimator setting, as hwnas search -E takes it")
    ap.add_argument("--train-size", type=int, default=None,
                    help="input size the accuracy is estimated at (default: the space's, at most 32; the table "
                         "stays at the space's)")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--work", default=None, help="directory for the runs and the shared cache")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    target = parse_latency_ms(args.target)
    reward = Reward.hard(target) if args.hard else Reward.soft(target)
    space = get_space(args.space)
    if args.strategies is None:
        args.strategies = (["random", "evolution", "rl", "ppo"] + (["progressive"] if hasattr(space, "expand") else [])
                           + (["predictor-evolution"] if args.estimator == "ofa-mlp" else []))
    device = get_device(args.device)
    predictor = load_predictor(space, device, args.db, log=print)
    work = Path(args.work or tempfile.mkdtemp(prefix="hwnas-bench-search-"))
    from hwnas.commands.search import parse_options
    est_opts = {**({"steps": args.steps} if args.steps else {}),
                **parse_options(args.estimator_option, "--estimator-option")}
    train_size = args.train_size or min(space.input_size, 32)
    est_space = space if train_size == space.input_size else get_space(args.space, input_size=train_size)
    est = CachedEstimator(get_estimator(args.estimator, est_space, data=args.data, seed=0, **est_opts),
                          work / "accuracy_cache.jsonl")
    est.warm_up(print)  # a supernet's training, before any strategy's clock
    print(f"space {args.space} ({len(space.decisions())} decisions), device {args.device}, target {target:g} ms "
          f"({reward.mode}), {args.samples} samples x seeds {args.seeds}, estimator {args.estimator} at "
          f"{train_size}x{train_size} (latency at {space.input_size}); "
          f"fastest network by the table {predictor.min_latency():.3f} ms; runs in {work}")
    results = {}
    for name in args.strategies:
        for seed in args.seeds:
            out = work / f"{name}-s{seed}"
            t0 = time.monotonic()  # wall time of the whole search, not a latency measurement
            strategy = get_strategy(name, space, seed=seed, **equal(name, args.samples))
            run = SearchRun(out, space, predictor, strategy, est, reward, samples=args.samples, device=None, top_k=1,
                            config={"space": args.space, "strategy": name, "seed": seed}, resume=True)
            res = run.run()
            lat = [r["latency_ms"] for r in res.samples]
            acc = [r["accuracy"] for r in res.samples]
            best = max(r["reward"] for r in res.samples)
            hv = hypervolume(lat, acc, ref_latency_ms=2 * target)
            feasible = sum(l <= target for l in lat) / len(lat)
            results.setdefault(name, []).append({"seed": seed, "best_reward": best, "hypervolume": hv,
                                                 "feasible_fraction": feasible,
                                                 "unique": res.summary["unique_architectures"],
                                                 "seconds": time.monotonic() - t0})
            info = res.summary["strategy_info"]
            stages = info.get("stages")
            if "architectures_per_s" in info:
                results[name][-1].update({k: info[k] for k in ("evaluated", "architectures_per_s")})
            rho = [s["spearman"] for s in stages or [] if s.get("spearman") is not None]
            print(f"  {name:9s} seed {seed}: best reward {best:.4f}, hypervolume {hv:.4f}, "
                  f"{feasible:.0%} under target, {res.summary['unique_architectures']} distinct, "
                  f"{time.monotonic() - t0:.1f} s"
                  + (f", predictor Spearman per stage {[round(r, 2) for r in rho]}" if stages else "")
                  + (f", its evolution {info['evaluated']} architectures at {info['architectures_per_s']}/s"
                     if "architectures_per_s" in info else ""), flush=True)
    print()
    print(f"{'strategy':10s} {'best reward (mean +- std, min..max)':40s} {'hypervolume (mean +- std, min..max)':40s}")
    for name, rows in results.items():
        br = [r["best_reward"] for r in rows]
        hv = [r["hypervolume"] for r in rows]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        print(f"{name:10s} {statistics.mean(br):.4f} +- {sd(br):.4f} ({min(br):.4f}..{max(br):.4f})"
              f"{'':8s}{statistics.mean(hv):.4f} +- {sd(hv):.4f} ({min(hv):.4f}..{max(hv):.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
