"""Benchmark of the latency tables on a device (default `cpu`: onnxruntime, 1 thread).

Prints: the time to build the whole table of a space (every op measured with the measurement protocol +
the correction's networks), the predictor's throughput, and validation on held-out networks measured end to
end: fraction within ±5% / ±10%, RMSE, Spearman, next to the bare op sum and the noise floor (the same
networks measured twice). Goal on `cpu` for `mnasnet`: >= 99.5% within ±10%, >= 95% within ±5%, build < 15 min
(nn-Meter reports 99.0% within ±10% on a Pixel 4 CPU).

usage: python bench/lut.py [--space mnasnet] [--device cpu] [--samples 100] [--seed 1] [--db FILE]
       (a rerun with the same --db reuses the table: the build then only reports what was already there)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", default="bench-lut.db")
    ap.add_argument("--json", default=None, help="also write every figure as JSON")
    args = ap.parse_args()

    from hwnas.latency.devices import get_device
    from hwnas.latency.lut import build_lut
    from hwnas.latency.predict import LatencyPredictor
    from hwnas.latency.validate import validate
    from hwnas.search.spaces import get_space

    space, dev = get_space(args.space), get_device(args.device)
    rep = build_lut(space, dev, args.db)
    print(f"\nbuild: {rep.ops} ops, {rep.statistic} ({rep.measured} measured now, {rep.skipped} reused) + "
          f"{rep.networks} networks: {rep.seconds / 60:.1f} min (goal < 15 min for a fresh build)")

    pred = LatencyPredictor.for_space(space, dev, db_path=args.db)
    rng = np.random.default_rng(0)
    archs = np.stack([space.sample(rng) for _ in range(100_000)])
    pred.predict_batch(archs[:1000])
    t0 = time.perf_counter()
    pred.predict_batch(archs)
    rate = len(archs) / (time.perf_counter() - t0)
    print(f"predictor: {rate:,.0f} architectures/s (goal >= 100,000/s); fastest network by the table "
          f"{pred.min_latency():.3f} ms")

    png = Path(args.db).with_name(f"{Path(args.db).stem}-{args.space}.png")  # next to the table, not in the cwd
    v = validate(space, dev, args.db, samples=args.samples, seed=args.seed, png=png)
    print(f"\nvalidation: {v['predictor']['n']} held-out networks (seed {args.seed}), statistic: {v['statistic']} "
          f"of {v['rounds']:.1f} interleaved rounds on average")
    print(f"{'':<14}{'±5%':>8}{'±10%':>8}{'RMSE ms':>10}{'mean|err|%':>12}{'max|err|%':>11}{'Spearman':>10}")
    for label, key in (("predictor", "predictor"), ("bare op sum", "raw_op_sum"), ("noise floor", "noise_floor")):
        r = v[key]
        print(f"{label:<14}{r['within_5pct']:>8.1%}{r['within_10pct']:>8.1%}{r['rmse_ms']:>10.3f}"
              f"{r['mean_abs_pct']:>12.2f}{r['max_abs_pct']:>11.1f}{r['spearman']:>10.3f}")
    lat = np.array([n["measured_ms"] for n in v["networks"]])
    print(f"held-out latency range {lat.min():.2f}-{lat.max():.2f} ms; correction {v['correction']}; "
          f"scatter plot {v['plot']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build": rep.__dict__, "predictor_per_s": rate, "validation": v}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
