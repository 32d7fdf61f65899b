"""Speed is not FLOPs: multiply-accumulates versus measured latency for the zoo, on this machine.

For every registry network (or a subset), counts MACs (convs + linears, hwnas.models.stats) and times
it with the measurement protocol (`get_device(name).latency(model, shape, warmup=, runs=)`: runs per round)
on each device (default `cpu` = onnxruntime 1 thread, and `litert-cpu` = LiteRT/XNNPACK 1 thread). Prints a
table, the Spearman rank correlation between MACs and measured latency per device, the networks furthest from the MACs trend
(latency per GMAC, highest and lowest) and writes a log-log scatter plot (PNG).

Results are appended to a JSON-lines checkpoint as each (model, device) finishes; a rerun with the same
--out directory reuses them (kill it any time; nothing is timed twice, nothing is lost).

usage: python bench/flops_vs_latency.py [--models 'mobilenet*,resnet50,...'] [--devices cpu,litert-cpu]
           [--size 224] [--warmup 3] [--runs 10] [--out runs/flops_vs_latency]
  --size: one input size for every network (default: each network's paper input size; FaceBoxes 1024).
  A few minutes on 2 cores:  --models 'mobilenet_v2,mobilenet_v3_*,shufflenet_v2_x1_0,squeezenet1_1,
      resnet18,resnet50,googlenet,densenet121,efficientnet_b0,mnasnet_a1,res2net50' --size 160 --runs 5
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path


def select_models(patterns: str | None) -> list[str]:
    import hwnas.models as zoo
    from hwnas.errors import HwnasError
    names = zoo.list_models()
    if not patterns:
        return names
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    unmatched = [p for p in pats if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched or not chosen:
        raise HwnasError(f"no model matches {', '.join(unmatched or pats)}; `hwnas models` lists them")
    return chosen


def build(name: str):
    """The network as profiled: 1000 classes, except detectors, which keep their own head (FaceBoxes: 2)."""
    import torch

    import hwnas.models as zoo
    info = zoo.get_info(name)
    torch.manual_seed(0)
    if "detector" in info.tags:
        return info.builder().eval()
    return zoo.create(name).eval()


def load_done(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: measured again
                continue
            done[(r["model"], r["device"], r["size"], r["runs"])] = r
    return done


def spearman(x, y) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(x, y).statistic) if len(x) > 2 else float("nan")


def plot(rows: list[dict], devices: list[str], path: Path, rhos: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    for dev, marker in zip(devices, "os^Dv"):
        pts = [r for r in rows if r["device"] == dev and r.get("median_ms")]
        if not pts:
            continue
        ax.scatter([r["macs"] / 1e9 for r in pts], [r["median_ms"] for r in pts], marker=marker, alpha=0.75,
                   label=f"{dev} (Spearman {rhos.get(dev, float('nan')):.2f}, n={len(pts)})")
        if dev == devices[0]:
            for r in pts:
                ax.annotate(r["model"], (r["macs"] / 1e9, r["median_ms"]), fontsize=6, alpha=0.8,
                            xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-accumulates (G, convs + linears)")
    ax.set_ylabel("median latency (ms, batch 1)")
    ax.set_title("Latency is not FLOPs: the hwnas zoo measured on this machine")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated names or shell patterns (default: all)")
    ap.add_argument("--devices", default="cpu,litert-cpu")
    ap.add_argument("--size", type=int, default=None, help="input size for all (default: each paper's)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default="runs/flops_vs_latency", help="directory for results.jsonl and the PNG")
    args = ap.parse_args(argv)

    import torch

    import hwnas.models as zoo
    from hwnas.errors import HwnasError
    from hwnas.latency.devices import get_device

    torch.set_num_threads(1)
    names = select_models(args.models)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "results.jsonl"
    done = load_done(ckpt)

    rows = []
    for dev_name in devices:
        try:
            dev = get_device(dev_name)
            dev.backend.check()
        except HwnasError as e:
            print(f"[skip device] {dev_name}: {e}", file=sys.stderr)
            continue
        for name in names:
            size = args.size or zoo.get_info(name).input_size
            key = (name, dev_name, size, args.runs)
            if key in done:
                rows.append(done[key])
                continue
            model = build(name)
            shape = (1, 3, size, size)
            row = {"model": name, "device": dev_name, "size": size, "runs": args.runs,
                   "macs": zoo.count_macs(model, shape), "params": zoo.count_params(model)}
            try:
                lat = dev.latency(model, shape, warmup=args.warmup, runs=args.runs)  # the measurement protocol
                row.update(median_ms=lat.ms, statistic=lat.statistic, spread_pct=lat.spread_pct,
                           raw_p10_ms=lat.raw.p10, raw_p90_ms=lat.raw.p90)
            except Exception as e:  # noqa: BLE001 - one network that cannot run there must not stop the study
                row.update(median_ms=None, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
            with ckpt.open("a") as f:  # one line per finished measurement: the checkpoint
                f.write(json.dumps(row) + "\n")
            done[key] = row
            rows.append(row)
            lat = f"{row['median_ms']:9.2f} ms" if row.get("median_ms") else f"  failed: {row['error']}"
            print(f"{dev_name:>11s} {name:24s} {size:5d}px {row['macs'] / 1e9:8.3f} GMACs {lat}", flush=True)

    rhos = {}
    print(f"\n{'device':>11s} {'n':>3s}  Spearman(MACs, latency)  Spearman(params, latency)")
    for dev_name in devices:
        pts = [r for r in rows if r["device"] == dev_name and r.get("median_ms")]
        if len(pts) < 3:
            continue
        lat = [r["median_ms"] for r in pts]
        rhos[dev_name] = spearman([r["macs"] for r in pts], lat)
        print(f"{dev_name:>11s} {len(pts):3d}  {rhos[dev_name]:23.3f}  "
              f"{spearman([r['params'] for r in pts], lat):25.3f}")
    for dev_name in devices:
        pts = [r for r in rows if r["device"] == dev_name and r.get("median_ms")]
        if len(pts) < 3:
            continue
        per = sorted(pts, key=lambda r: r["median_ms"] / (r["macs"] / 1e9))
        fmt = lambda r: f"{r['model']} {r['median_ms'] / (r['macs'] / 1e9):.1f}"  # noqa: E731
        print(f"\n{dev_name}: ms per GMAC, most efficient: {', '.join(fmt(r) for r in per[:4])}")
        print(f"{dev_name}: ms per GMAC, least efficient: {', '.join(fmt(r) for r in per[::-1][:4])}")
        spread = per[-1]["median_ms"] / (per[-1]["macs"] / 1e9) / (per[0]["median_ms"] / (per[0]["macs"] / 1e9))
        print(f"{dev_name}: the same MACs cost up to {spread:.1f}x more time depending on the network")
        # inversions: pairs where more MACs ran faster
        inv = sum(1 for i, a in enumerate(pts) for b in pts[i + 1:]
                  if (a["macs"] - b["macs"]) * (a["median_ms"] - b["median_ms"]) < 0)
        total = len(pts) * (len(pts) - 1) // 2
        print(f"{dev_name}: {inv} of {total} pairs ({inv / total:.0%}) have the network with more MACs "
              f"running faster")
    failed = [r for r in rows if not r.get("median_ms")]
    for r in failed:
        print(f"[failed] {r['device']} {r['model']}: {r['error']}", file=sys.stderr)
    if rhos:
        png = out / "flops_vs_latency.png"
        plot(rows, devices, png, rhos)
        print(f"\nplot: {png}\nresults: {ckpt}")
    return 0 if rhos else 1


if __name__ == "__main__":
    from hwnas.errors import HwnasError
    try:
        sys.exit(main())
    except HwnasError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
