"""Kernel-table prediction of the whole zoo against measurement, beside the noise floor of the measurement.

For each device: the kernel table is built (or completed) first (`hwnas lut kernels`; its cost is printed:
models timed, samples, minutes). Then every zoo network at each input size (its own and `--scales` of it, rounded
to 8) is predicted from the table (the wall time of each prediction is kept) and measured twice with the one
protocol (whole-network settings: interleaved, calibrated rounds), in two passes over all pairs in the same run.
Printed: the fraction of pairs within ±5% and ±10% of the first measurement, RMSE, mean |error|, Spearman, per
family; and the noise floor: the second measurement against the first, with the same figures. No predictor can
beat its own ground truth: the noise floor is the bar the prediction is read against.

    .venv-test/bin/python bench/predict.py                          # every zoo network at 2 sizes on cpu
    .venv-test/bin/python bench/predict.py --models resnet18 mobilenet_v2 --scales 1.0 --samples 200
    .venv-test/bin/python bench/predict.py --devices litert-cpu --samples 600 --adaptive-samples 150

On litert-cpu the networks are converted to .tflite (litert-torch, cached: ~5-15 s each the first time) and the
kernel table times copies of single TFLite operators (hwnas.latency.tflite_kernels). A network whose prediction
is incomplete (an operator no kernel kind covers, listed) is reported as such, and its figure is a lower bound.
Nothing else should run while this does (it times).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np


def pairs(models: list[str], scales: list[float]) -> list[tuple[str, int]]:
    from hwnas.models import get_info
    out = []
    for m in models:
        native = get_info(m).input_size
        for s in scales:
            size = max(16, int(round(native * s / 8)) * 8) if s != 1.0 else native
            if (m, size) not in out:
                out.append((m, size))
    return out


def build(device, db: str, args) -> dict:
    from hwnas.latency.lut.kernel_table import KernelTable, build_kernels
    from hwnas.search.spaces import get_space
    rep = build_kernels(device, db, samples=args.samples, adaptive_rounds=args.adaptive_rounds,
                        adaptive_samples=args.adaptive_samples, show_progress=False,
                        fit_space=get_space(args.fit_space), fit_networks=args.fit_networks)
    table = KernelTable(db)
    stamps = [m["created_at"] for m in table.models(rep.fingerprint)]
    from datetime import datetime
    span = (datetime.fromisoformat(max(stamps).rstrip("Z")) - datetime.fromisoformat(min(stamps).rstrip("Z"))
            ).total_seconds() if stamps else 0.0
    return {"models": rep.models, "measured_now": rep.measured, "samples": rep.samples, "by_kind": rep.by_kind,
            "fit_networks": rep.fit_networks,
            "rounds": rep.rounds, "seconds_this_call": rep.seconds, "minutes_first_to_last_model": span / 60,
            "rules": rep.rules}


def measure_pass(device, arts: dict, chunk: int) -> dict:
    from hwnas.latency.protocol import NETWORK, measure_latency
    out = {}
    keys = list(arts)
    for i in range(0, len(keys), chunk):
        part = {k: arts[k] for k in keys[i:i + chunk]}
        for k, lat in measure_latency(device, part, NETWORK).items():
            out[k] = lat.ms
        print(f"  measured {min(i + chunk, len(keys))}/{len(keys)}", file=sys.stderr, flush=True)
    return out


def figures(pred: np.ndarray, meas: np.ndarray) -> dict:
    from hwnas.latency.validate import agreement
    return agreement(pred, meas)


def row(label: str, f: dict) -> str:
    return (f"{label:<22} {f['n']:>4} {100 * f['within_5pct']:>7.1f}% {100 * f['within_10pct']:>7.1f}% "
            f"{f['rmse_ms']:>9.3f} {f['mean_abs_pct']:>8.2f}% {f['spearman']:>8.3f}")


def run_device(name: str, args) -> dict:
    from hwnas.errors import HwnasError
    from hwnas.latency.devices import get_device
    from hwnas.latency.kernel_predict import predict_latency
    from hwnas.models import get_info
    device = get_device(name)
    print(f"\n{name}: building (or completing) the kernel table in {args.db}", flush=True)
    cost = build(device, args.db, args)
    print(f"  kernel table: {cost['models']} models timed ({cost['measured_now']} by this run), {cost['samples']} "
          f"kernel samples, {cost['fit_networks']} fit networks; first to last model "
          f"{cost['minutes_first_to_last_model']:.1f} min; this call {cost['seconds_this_call'] / 60:.1f} min",
          flush=True)
    from hwnas.latency.kernel_predict import KernelPredictor
    kp = KernelPredictor.load(device, args.db)
    print(f"  correction: {kp.correction['model']} a={kp.correction['a']:.4f} b={kp.correction['b']:.4g} "
          f"c={kp.correction['c']:.4g} (leave-one-out mean |error| on the fit networks: "
          f"{kp.correction.get('loo_mean_abs_pct')})", flush=True)
    todo = pairs(args.models, args.scales)
    preds, arts, secs, skipped, fams, incomplete = {}, {}, {}, {}, {}, {}
    for m, size in todo:
        shape = (1, 3, size, size)
        try:
            p = predict_latency(device, m, shape, db=args.db)
            arts[(m, size)] = device.prepare(m, shape)
        except HwnasError as e:
            skipped[f"{m}@{size}"] = str(e)
            continue
        preds[(m, size)], secs[(m, size)] = p.ms, p.seconds
        fams[(m, size)] = get_info(m).family or m
        if not p.complete:
            incomplete[f"{m}@{size}"] = [u["name"] for u in p.unpredictable]
    print(f"  predicted {len(preds)} (model, size) pairs ({len(skipped)} skipped); measuring each twice", flush=True)
    t0 = time.perf_counter()
    first = measure_pass(device, arts, args.chunk)
    second = measure_pass(device, arts, args.chunk)
    measure_min = (time.perf_counter() - t0) / 60
    keys = list(arts)
    p = np.array([preds[k] for k in keys])
    a = np.array([first[k] for k in keys])
    b = np.array([second[k] for k in keys])
    whole = np.array([f"{m}@{s}" not in incomplete for m, s in keys])  # every kernel predicted
    result = {"device": name, "build": cost, "pairs": len(keys), "skipped": skipped,
              "incomplete": incomplete, "measure_minutes": measure_min,
              "predict_seconds": {"median": float(np.median(list(secs.values()))),
                                  "max": float(max(secs.values()))},
              "prediction_vs_first": figures(p, a), "prediction_vs_second": figures(p, b),
              "noise_floor": figures(b, a), "per_family": {},
              "complete_vs_first": figures(p[whole], a[whole]) if whole.sum() >= 2 else None,
              "networks": [{"model": m, "size": s, "family": fams[(m, s)], "predicted_ms": preds[(m, s)],
                            "measured_ms": [first[(m, s)], second[(m, s)]], "predict_seconds": secs[(m, s)]}
                           for m, s in keys]}
    by_fam = defaultdict(list)
    for i, k in enumerate(keys):
        by_fam[fams[k]].append(i)
    for fam, idx in sorted(by_fam.items()):
        result["per_family"][fam] = figures(p[idx], a[idx]) | {"noise_within_10pct": float(np.mean(
            np.abs(b[idx] - a[idx]) / a[idx] <= 0.10))}
    print(f"\n{name}: {len(keys)} (model, size) pairs, sizes {args.scales} x each network's own")
    print(f"{'':<22} {'n':>4} {'±5%':>8} {'±10%':>8} {'RMSE ms':>9} {'mean|e|':>9} {'Spearman':>8}")
    print(row("prediction vs meas. 1", result["prediction_vs_first"]))
    print(row("prediction vs meas. 2", result["prediction_vs_second"]))
    print(row("noise floor (2 vs 1)", result["noise_floor"]))
    if result["complete_vs_first"]:
        print(row("complete only vs 1", result["complete_vs_first"]) + "  (no op listed as unpredictable)")
    print("per family (prediction vs measurement 1; last column: noise floor within ±10%)")
    for fam, f in result["per_family"].items():
        print(row(f"  {fam}", f) + f" {100 * f['noise_within_10pct']:>7.0f}%")
    print(f"prediction wall time per network (decomposition included): median {result['predict_seconds']['median']:.2f}"
          f" s, max {result['predict_seconds']['max']:.2f} s; measuring both passes took {measure_min:.1f} min")
    worst = sorted(zip(keys, (p - a) / a), key=lambda kv: -abs(kv[1]))[:8]
    print("largest errors: " + ", ".join(f"{m}@{s} {100 * e:+.1f}%" for (m, s), e in worst))
    if incomplete:
        print(f"incomplete predictions (ops listed as unpredictable): {incomplete}")
    if skipped:
        print(f"skipped: {skipped}")
    return result


def main() -> None:
    from hwnas.models import list_models
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", nargs="+", default=["cpu"])
    ap.add_argument("--models", nargs="+", default=None, help="default: every zoo network")
    ap.add_argument("--scales", nargs="+", type=float, default=[1.0, 0.714],
                    help="input sizes as fractions of each network's own (rounded to 8)")
    ap.add_argument("--db", default="bench-kernels.db", help="latency-table database holding the kernel tables")
    ap.add_argument("--samples", type=int, default=1200)
    ap.add_argument("--adaptive-rounds", type=int, default=2)
    ap.add_argument("--adaptive-samples", type=int, default=300)
    ap.add_argument("--fit-space", default="mnasnet", help="search space whose networks fit the correction")
    ap.add_argument("--fit-networks", type=int, default=24)
    ap.add_argument("--chunk", type=int, default=8, help="networks measured together (interleaved)")
    ap.add_argument("--json", default=None, help="write every figure and each network's values here")
    args = ap.parse_args()
    args.models = args.models or list_models()
    results = [run_device(d, args) for d in args.devices]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
