"""Benchmark of the measurement protocol on device `cpu` (onnxruntime, 1 thread).

Prints, for mobilenet_v2 and resnet50 at 224x224:
  1. harness overhead: hwnas.latency.measure.measure around session.run versus a bare
     `for _ in range(n): session.run(...)` loop timed as a whole, in interleaved rounds (goal <= 1%);
     plus the harness's own per-iteration cost measured on an empty callable, as a fraction of the
     model's latency (the noise-free view of the same figure);
  2. spread of the median between two independent invocations (`hwnas profile --json -` run twice as
     separate processes; goal <= 2%).

usage: python bench/measure.py [--models mobilenet_v2,resnet50] [--rounds 7] [--runs 30]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def bare_loop_ms(run, n: int) -> float:
    """The reference the harness is compared with: n calls timed as a whole (no per-call clock)."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        run()
    return (time.perf_counter_ns() - t0) * 1e-6


def harness_ms(run, n: int) -> float:
    from hwnas.latency.measure import measure
    t0 = time.perf_counter_ns()
    measure(run, warmup=0, runs=n)
    return (time.perf_counter_ns() - t0) * 1e-6


def overhead(model: str, rounds: int, runs: int) -> dict:
    from hwnas.latency.devices import get_device
    from hwnas.latency.devices.ort import make_feeds
    from hwnas.latency.measure import measure

    dev = get_device("cpu")
    art = dev.prepare(model, (1, 3, 224, 224))
    sess = dev.backend.session(art)
    feeds = make_feeds(sess.get_inputs(), art.input_shapes)
    run = lambda: sess.run(None, feeds)  # noqa: E731
    for _ in range(5):
        run()
    bare, harn = [], []
    for r in range(rounds):  # interleaved, alternating which goes first
        pair = [(bare, bare_loop_ms), (harn, harness_ms)]
        for store, fn in (pair if r % 2 == 0 else pair[::-1]):
            store.append(fn(run, runs) / runs)
    empty = measure(lambda: None, warmup=100, runs=20000)
    per_call_ms = float(np.median(bare))
    return {
        "model": model,
        "bare_ms_per_call": per_call_ms,
        "harness_ms_per_call": float(np.median(harn)),
        "overhead_pct_measured": 100 * (float(np.median(harn)) - per_call_ms) / per_call_ms,
        "round_spread_pct": 100 * (max(bare) - min(bare)) / per_call_ms,
        "harness_cost_us_per_call": empty.median * 1000,
        "overhead_pct_intrinsic": 100 * empty.median / per_call_ms,
    }


def invocation_spread(model: str, runs: int) -> dict:
    medians = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-m", "hwnas", "profile", "--device", "cpu", "--model", model,
                              "--runs", str(runs), "--json", "-"], capture_output=True, text=True, check=True)
        medians.append(json.loads(out.stdout)["latency_ms"]["median"])
    return {"model": model, "median_ms_1": medians[0], "median_ms_2": medians[1],
            "spread_pct": 100 * abs(medians[0] - medians[1]) / np.mean(medians)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet50")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print("device cpu (onnxruntime, 1 thread), input 1x3x224x224")
    print(f"{'model':<14}{'bare ms':>10}{'harness ms':>12}{'overhead%':>11}{'round spread%':>15}"
          f"{'harness us/call':>17}{'intrinsic%':>12}")
    for model in args.models.split(","):
        o = overhead(model, args.rounds, args.runs)
        print(f"{model:<14}{o['bare_ms_per_call']:>10.3f}{o['harness_ms_per_call']:>12.3f}"
              f"{o['overhead_pct_measured']:>+11.2f}{o['round_spread_pct']:>15.2f}"
              f"{o['harness_cost_us_per_call']:>17.3f}{o['overhead_pct_intrinsic']:>12.4f}")
    print("\nmedian of two independent `hwnas profile` invocations (goal: spread <= 2%)")
    for model in args.models.split(","):
        s = invocation_spread(model, max(args.runs, 50))
        print(f"{model:<14}{s['median_ms_1']:>10.3f}{s['median_ms_2']:>10.3f}  spread {s['spread_pct']:.2f}%")
    print("\noverhead% compares medians of interleaved rounds and carries the machine's round-to-round noise "
          "(see 'round spread%'); intrinsic% is the harness's own cost per call over the model latency.")


if __name__ == "__main__":
    main()
