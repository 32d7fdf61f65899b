"""The noise floor of measured latency: the same networks measured twice, with the protocol and as hwnas
measured before it, on a quiet machine and beside a neighbour load.

For each phase (quiet: nothing else started; loaded: this bench keeps a numpy matmul loop running on the
cores the device does not time on, one thread, stopped at the end of the phase) the N networks of the
`mnasnet` space at 224x224 are measured in passes ordered A(previous), A(protocol), B(previous),
B(protocol), so both are measured in the same minutes of the machine. Printed per phase and protocol: the
fraction of networks whose two measurements (A and B) agree within ±2%, ±5% and ±10%, seconds per network
per measurement, and the segments re-run for interference.

"previous" is the definition hwnas used before the protocol (latency tables, validation): 4 interleaved
rounds of 5 warm-up + 15 runs, uncalibrated, minimum of the round medians. It is run through the same rounds
code (hwnas.latency.protocol, calibrate off, 4 rounds fixed) so that only the definition differs.

    .venv-test/bin/python bench/noise.py                      # 40 networks, both phases (~10 minutes)
    .venv-test/bin/python bench/noise.py --networks 10 --phases quiet
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

NEIGHBOUR = ("import numpy as np\n"
             "a = np.random.default_rng(0).random((300, 300))\n"
             "while True:\n"
             "    a = a @ a\n"
             "    a /= a.max()\n")


def start_neighbour(cores: list[int]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env)
    os.sched_setaffinity(proc.pid, set(cores))
    time.sleep(1.0)
    return proc


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    rel = np.abs(a - b) / np.minimum(a, b)
    return {f"within_{t}pct": float(np.mean(rel <= t / 100)) for t in (2, 5, 10)} | {
        "median_abs_pct": float(100 * np.median(rel)), "max_abs_pct": float(100 * rel.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--networks", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--phases", default="quiet,loaded")
    ap.add_argument("--min-rounds", type=int, default=None, help="the protocol's minimum rounds (default: its own)")
    ap.add_argument("--max-rounds", type=int, default=None)
    ap.add_argument("--json", default=None, help="write every figure (and each network's values) here")
    args = ap.parse_args()
    os.environ.setdefault("HWNAS_NO_PROGRESS", "1")

    from hwnas.latency.devices import get_device
    from hwnas.latency.lut.build import NETWORK_PROTOCOL, seeded_network
    from hwnas.latency.protocol import Protocol, measure_latency
    from hwnas.search.spaces import get_space

    dev = get_device(args.device)
    space = get_space("mnasnet", input_size=args.input_size)
    rng = np.random.default_rng([args.seed, 0x4015E])
    archs: list = []
    while len(archs) < args.networks:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    shape = (1, 3, space.input_size, space.input_size)
    t0 = time.time()
    arts = {i: dev.prepare(seeded_network(space, a), shape) for i, a in enumerate(archs)}
    fp = dev.fingerprint()
    print(f"{len(arts)} mnasnet networks at {space.input_size}x{space.input_size} exported ({time.time() - t0:.0f} s); "
          f"device {dev.name}: {fp.get('runtime')} {fp.get('runtime_version')}, {fp.get('threads')} thread(s), "
          f"cores {fp.get('cores')}, {fp.get('cpu_model')}")
    protocols = {
        "previous (min of 4 round medians)": (Protocol(calibrate=False, warmup=5, runs=15, min_rounds=4, max_rounds=4),
                                              lambda lat: min(lat.segments_ms)),
        "protocol (calibrated median)": (NETWORK_PROTOCOL.but(**{k: v for k, v in (
            ("min_rounds", args.min_rounds), ("max_rounds", args.max_rounds)) if v is not None}), lambda lat: lat.ms),
    }
    timed = set(dev.backend.cores or [])
    others = sorted(set(os.sched_getaffinity(0)) - timed) or sorted(os.sched_getaffinity(0))
    report: dict = {"device": dev.name, "fingerprint": fp, "networks": len(arts), "phases": {}}
    for phase in args.phases.split(","):
        neighbour = start_neighbour(others) if phase == "loaded" else None
        values: dict = {name: [] for name in protocols}
        seconds: dict = {name: 0.0 for name in protocols}
        reruns: dict = {name: 0 for name in protocols}
        try:
            for _pass in ("A", "B"):
                for name, (proto, value) in protocols.items():
                    t = time.time()
                    lat = measure_latency(dev, arts, proto)
                    seconds[name] += time.time() - t
                    values[name].append(np.array([value(lat[i]) for i in arts]))
                    reruns[name] += sum(sum(lat[i].reruns.values()) for i in arts)
                    print(f"  {phase} pass {_pass} {name}: {seconds[name]:.0f} s so far", flush=True)
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        rows = {}
        for name in protocols:
            a, b = values[name]
            rows[name] = {**agreement(a, b), "seconds_per_network": seconds[name] / (2 * len(arts)),
                          "reruns": reruns[name], "a_ms": a.tolist(), "b_ms": b.tolist()}
        report["phases"][phase] = {"neighbour": f"numpy matmul loop on core(s) {others}" if neighbour else "none",
                                   "rows": rows}
    print()
    print(f"{'phase':8} {'protocol':36} {'±2%':>6} {'±5%':>6} {'±10%':>6} {'median|d|':>9} {'max|d|':>7} "
          f"{'s/net':>6} {'re-run':>6}")
    for phase, ph in report["phases"].items():
        for name, r in ph["rows"].items():
            print(f"{phase:8} {name:36} {r['within_2pct']:6.1%} {r['within_5pct']:6.1%} {r['within_10pct']:6.1%} "
                  f"{r['median_abs_pct']:8.2f}% {r['max_abs_pct']:6.1f}% {r['seconds_per_network']:6.2f} "
                  f"{r['reruns']:6d}")
        base, new = (ph["rows"][n]["seconds_per_network"] for n in protocols)
        print(f"{phase:8} cost of the protocol: {new / base:.2f}x the previous definition's; neighbour: {ph['neighbour']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=float)


if __name__ == "__main__":
    main()
