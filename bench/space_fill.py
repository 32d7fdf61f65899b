"""How well the kernel table stands in for a search space's latency table (`hwnas search --missing-ops kernels`).

    python bench/space_fill.py --db runs/bench-fill.db                    # mnasnet at 224 on cpu
    python bench/space_fill.py --db runs/bench-fill.db --drop 0.1 0.25 1.0 --samples 30

Builds (or reuses, in --db) the space's op table and the device's kernel table, then measures `--samples` held-out
networks of the space twice (hwnas.latency.validate: the table's own accuracy and the noise floor). Then, on a
copy of the database, a seeded random share of the op rows is deleted (nested: the 25% include the 10%; 1.0: no
timed op left, as for a space never timed) and the missing ops are predicted from the kernel table; printed: each
predicted op against its timed value, and the held-out networks predicted by the completed table against their
measurement. Last, the table with every op but no correction: the correction fitted on networks predicted from
kernels, against the measured one.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a (WAL) SQLite database."""
    dst.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def op_errors(pred: np.ndarray, timed: np.ndarray) -> dict:
    rel = (pred - timed) / timed
    return {"n": int(len(rel)), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "within_25pct": float(np.mean(np.abs(rel) <= 0.25)), "median_abs_pct": float(100 * np.median(np.abs(rel))),
            "mean_pct": float(100 * np.mean(rel))}


def row(label: str, m: dict) -> str:
    return (f"{label:<44}{m['within_5pct']:>7.1%}{m['within_10pct']:>8.1%}{m['mean_abs_pct']:>11.2f}"
            f"{m['max_abs_pct']:>10.1f}{m['spearman']:>10.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--db", default="bench-fill.db")
    ap.add_argument("--drop", type=float, nargs="+", default=[0.1, 0.25], help="shares of the op rows deleted")
    ap.add_argument("--samples", type=int, default=30, help="held-out networks measured (twice)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from hwnas.latency.devices import get_device
    from hwnas.latency.lut import build_lut
    from hwnas.latency.lut.kernel_table import build_kernels
    from hwnas.latency.lut.store import LutStore, space_id
    from hwnas.latency.predict import LatencyPredictor
    from hwnas.latency.space_fill import kernel_filled
    from hwnas.latency.validate import agreement, validate
    from hwnas.search.spaces import get_space

    space, dev = get_space(args.space), get_device(args.device)
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rep = build_lut(space, dev, db)
    print(f"space table: {rep.ops} ops, {rep.measured} timed now ({rep.seconds / 60:.1f} min)", flush=True)
    krep = build_kernels(dev, db, fit_space=space)
    print(f"kernel table: {krep.models} models, {krep.samples} samples, {krep.measured} timed now "
          f"({krep.seconds / 60:.1f} min)", flush=True)
    v = validate(space, dev, db, samples=args.samples, seed=args.seed)
    archs = [tuple(n["arch"]) for n in v["networks"]]
    measured = np.array([n["measured_ms"] for n in v["networks"]])
    full = LatencyPredictor.for_space(space, dev, db)
    keys = [s.key for s in space.all_ops()]
    report = {"space": args.space, "device": args.device, "ops": len(keys), "held_out": len(archs),
              "table": v["predictor"], "noise_floor": v["noise_floor"], "drops": [], "setup_min": 0.0}
    report["setup_min"] = round((time.perf_counter() - t0) / 60, 1)

    work = copy_db(db, db.with_name(db.stem + "-fill.db"))
    order = np.random.default_rng(args.seed).permutation(len(keys))
    for frac in sorted(args.drop):
        gone = [keys[i] for i in order[:round(frac * len(keys))]]
        store = LutStore(work)
        store.db.executemany("DELETE FROM measurements WHERE fingerprint=? AND key=?",
                             [(dev.fingerprint_key(), k) for k in gone])
        t1 = time.perf_counter()
        p = kernel_filled(space, dev, work, log=print)
        secs = time.perf_counter() - t1
        idx = np.array([keys.index(k) for k in gone])
        nets = agreement(p.predict_batch(archs), measured)
        share = float(np.mean(p.kernel_ops(archs) / [len(space.ops(a)) for a in archs]))
        report["drops"].append({"share": frac, "ops": len(gone), "seconds": round(secs, 1),
                                "ops_vs_timed": op_errors(p.table[idx], full.table[idx]),
                                "networks": nets, "networks_ops_from_kernels": share,
                                "calibration": p.sources["calibration"], "correction": p.sources["correction"]})
    nocorr = copy_db(db, db.with_name(db.stem + "-nocorr.db"))
    LutStore(nocorr).db.execute("DELETE FROM corrections WHERE fingerprint=? AND space=?",
                                (dev.fingerprint_key(), space_id(space)))
    t1 = time.perf_counter()
    p = kernel_filled(space, dev, nocorr, log=print)
    report["correction_from_kernels"] = {"correction": p.correction, "seconds": round(time.perf_counter() - t1, 1),
                                         "networks": agreement(p.predict_batch(archs), measured)}

    print(f"\n{args.space} on {args.device}: {len(keys)} ops; {len(archs)} held-out networks measured twice")
    print(f"{'':<44}{'±5%':>7}{'±10%':>8}{'mean|e|%':>11}{'max|e|%':>10}{'Spearman':>10}")
    print(row("timed table (every op)", v["predictor"]))
    for d in report["drops"]:
        print(row(f"{d['share']:.0%} of ops from kernels ({d['networks_ops_from_kernels']:.0%} of a net's)",
                  d["networks"]))
    print(row("every op timed, correction from kernels", report["correction_from_kernels"]["networks"]))
    print(row("noise floor (2nd measurement vs 1st)", v["noise_floor"]))
    print("\nthe predicted ops against their timed values:")
    for d in report["drops"]:
        o = d["ops_vs_timed"]
        print(f"  {d['ops']:>5} ops ({d['share']:.0%}): {o['within_10pct']:.1%} within ±10%, {o['within_25pct']:.1%} "
              f"within ±25%, median |error| {o['median_abs_pct']:.1f}%, mean error {o['mean_pct']:+.1f}%; "
              f"{d['seconds']:.0f} s to predict\n      calibration: {d['calibration']}; correction: {d['correction']}")
    c = report["correction_from_kernels"]["correction"]
    print(f"correction: measured {full.correction['model']} a={full.correction['a']:.4g} b={full.correction['b']:.4g} "
          f"c={full.correction['c']:.4g}; from kernels {c['model']} a={c['a']:.4g} b={c['b']:.4g} c={c['c']:.4g}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
