"""The demo behind `hwnas demo`: the main job of hwnas, small enough for a laptop, every figure measured in the run.

1. the device and its fingerprint;
2. speed is not FLOPs: four zoo networks at 224x224 measured together (MACs ratio vs latency ratio);
3. a latency table of the `mnasnet-tiny` space, built on the device, validated on held-out networks against the
   noise floor (the same networks measured twice);
4. a search under a latency target with that table, the best networks re-measured on the device;
5. NetAdapt: a small CNN (`demo_net`, trained on digits 32x32) pruned to a measured budget, against a uniform
   width multiplier at about the same measured latency;
6. one report, out/report.md, with the figures and the plots.

Everything is written under `out` (its own latency-table database included), so the demo never touches the tables
of your own runs. A rerun reuses what a previous one finished (the table, the search, NetAdapt's iterations).
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SPACE = "mnasnet-tiny"


def run_demo(device: str = "cpu", out: str = "runs/demo", steps: int = 300, devices_file=None,
             samples: int = 60, validate_samples: int = 20) -> dict:
    from hwnas.latency.devices import get_device
    from hwnas.rundir import atomic_write_json

    console = Console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = get_device(device, devices_file)
    dev.check()
    fp = dev.fingerprint()
    report: dict = {"device": device, "fingerprint": fp, "seconds": {}}
    console.rule(f"1. device {device!r}")
    console.print(f"{fp.get('runtime')} {fp.get('runtime_version')}, {fp.get('provider') or fp.get('delegate')}, "
                  f"threads {fp.get('threads')}, {fp.get('cpu_model')} (fingerprint {fp['key']})")

    steps_done = [("zoo", "2. speed is not FLOPs: zoo networks at 224x224, measured together", _zoo),
                  ("table", f"3. a latency table of the {SPACE} space, validated against the noise floor", _table),
                  ("search", "4. search under a latency target with the table; the best re-measured", _search),
                  ("adapt", "5. NetAdapt vs a uniform width multiplier, measured", _adapt)]
    for key, title, fn in steps_done:
        console.rule(title)
        t0 = time.time()
        report[key] = fn(console, dev, out_dir, report, steps=steps, samples=samples,
                         validate_samples=validate_samples)
        report["seconds"][key] = round(time.time() - t0, 1)
    atomic_write_json(out_dir / "demo.json", report)
    write_report(out_dir / "report.md", report)
    console.rule("done")
    total = sum(report["seconds"].values())
    console.print(f"report: {out_dir / 'report.md'} (figures in {out_dir / 'demo.json'}); {total:.0f} s in all")
    return report


# -- the steps ------------------------------------------------------------------------------------------------
def _zoo(console, dev, out_dir, report, **_):
    import hwnas.models as zoo
    from hwnas.latency.protocol import measure_latency
    names = ("mobilenet_v2", "shufflenet_v2_x1_0", "mnasnet_a1", "resnet18")
    models = {name: zoo.create(name).eval() for name in names}
    lat = measure_latency(dev, {name: (m, (1, 3, 224, 224)) for name, m in models.items()})
    rows = []
    for name, model in models.items():
        s = zoo.stats(model, (1, 3, 224, 224))
        rows.append({"model": name, "macs": s["macs"], "params": s["params"], "latency_ms": lat[name].ms,
                     "statistic": lat[name].statistic, "spread_pct": lat[name].spread_pct})
    base = rows[0]
    for r in rows:
        r["macs_ratio"] = r["macs"] / base["macs"]
        r["latency_ratio"] = r["latency_ms"] / base["latency_ms"]
    t = Table(caption="ratios against mobilenet_v2; halves: how far two halves of the rounds are apart")
    for col in ("model", "MACs", "params", "ms", "halves", "MACs ratio", "latency ratio"):
        t.add_column(col, justify="right" if col != "model" else "left")
    for r in rows:
        t.add_row(r["model"], f"{r['macs'] / 1e6:.0f}M", f"{r['params'] / 1e6:.2f}M", f"{r['latency_ms']:.2f}",
                  f"±{r['spread_pct'] / 2:.1f}%", f"{r['macs_ratio']:.2f}x", f"{r['latency_ratio']:.2f}x")
    console.print(t)
    console.print(f"latency: {base['statistic']} (hwnas.latency.protocol)")
    return {"rows": rows, "statistic": base["statistic"]}


def _table(console, dev, out_dir, report, validate_samples: int = 20, **_):
    from hwnas.latency.lut import build_lut
    from hwnas.latency.validate import validate
    from hwnas.search.spaces import get_space
    space = get_space(SPACE)
    db = out_dir / "lut.db"
    t0 = time.time()
    build = build_lut(space, dev, db_path=db, log=console.print)
    built_s = time.time() - t0
    rep = validate(space, dev, db, samples=validate_samples, seed=1, png=out_dir / "validation.png")
    p, n = rep["predictor"], rep["noise_floor"]
    console.print(f"held-out networks: predicted within ±10% {p['within_10pct']:.0%} (±5% {p['within_5pct']:.0%}), "
                  f"Spearman {p['spearman']:.2f}; noise floor (measured twice) within ±10% "
                  f"{n['within_10pct']:.0%} (±5% {n['within_5pct']:.0%}): no table can beat the floor")
    return {"space": SPACE, "ops": len(space.all_ops()), "db": str(db), "build_seconds": round(built_s, 1),
            "correction": getattr(build, "correction", None), "predictor": p, "noise_floor": n,
            "statistic": rep["statistic"], "plot": rep.get("plot")}


def _search(console, dev, out_dir, report, samples: int = 60, **_):
    import numpy as np
    from hwnas.latency.predict import LatencyPredictor
    from hwnas.search.api import search
    from hwnas.search.config import SearchConfig
    from hwnas.search.spaces import get_space
    space = get_space(SPACE)
    db = out_dir / "lut.db"
    pred = LatencyPredictor.for_space(space, dev, db_path=db)
    rng = np.random.default_rng(0)
    ms = pred.predict_batch(space.encode([space.sample(rng) for _ in range(2000)]))
    target = float(np.quantile(ms, 0.3))  # a target 30% of random networks of the space meet, by the table
    console.print(f"target {target:.3f} ms: 30% of 2000 random {SPACE} networks meet it by the table "
                  f"(table range {ms.min():.3f}..{ms.max():.3f} ms)")
    cfg = SearchConfig(target=target, device=dev.name, space=SPACE, strategy="evolution", samples=samples,
                       hard=True, estimator="naswot", top_k=3, db=str(db), out=str(out_dir / "search"), resume=True)
    res = search(cfg, log=console.print)
    s = res.summary
    best = s["best"]
    console.print(f"best of {s['samples']} samples: naswot score {_value(best):.3f} (a proxy, not an accuracy), "
                  f"predicted {best['latency_ms']:.3f} ms, measured {best.get('measured_ms', float('nan')):.3f} ms "
                  f"against the target {target:.3f} ms ({best.get('target_verdict', '?')})")
    return {"target_ms": target, "samples": s["samples"], "best": best, "top_k": s["top_k"], "hard": True,
            "pareto_size": s["pareto_size"], "out": str(res.out), "plot": str(res.out / "pareto.png")}


def demo_net(num_classes: int = 10):
    """The network the demo adapts: a plain CNN for 32x32 inputs whose latency is set by its channels, not by
    per-op overhead (four conv-BN-ReLU layers, 32-64-128-128 channels, a residual-free ResNet-like stem). Also an
    example of `package.module:factory`: `hwnas adapt hwnas.demo:demo_net --budget 0.3ms`."""
    from torch import nn

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 32, 2), *block(32, 64, 1), *block(64, 128, 2), *block(128, 128, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def _adapt(console, dev, out_dir, report, steps: int = 300, **_):
    from hwnas.adapt import AdaptConfig, adapt
    from hwnas.adapt.baseline import evaluate_width, match_latency
    from hwnas.adapt.modelfile import load_network
    from hwnas.latency.protocol import measure_latency
    import torch
    shape = (1, 3, 32, 32)
    torch.manual_seed(0)
    model = demo_net(10)
    start_ms = measure_latency(dev, {"start": (model.eval(), shape)})["start"].ms
    budget = 0.6 * start_ms  # 60% of what the untrained network measures here (NetAdapt measures it again)
    run = out_dir / "adapt"
    cfg = AdaptConfig("hwnas.demo:demo_net", budget_ms=budget, device=dev.name, out=str(run), pretrain_steps=steps,
                      input_size=32, min_proposals=1, max_cut=1.0,  # a 4-block net at 32: the paper's rule
                      short_steps=20, long_epochs=1, initial_step=0.15, db=str(out_dir / "lut.db"),
                      resume=(run / "state.json").exists())
    s = adapt(cfg, model=model)
    a, o = s["adapted"], s["original"]
    console.print(f"NetAdapt: {o['measured_ms']:.3f} -> {a['measured_ms']:.3f} ms (budget {budget:.3f} ms), "
                  f"top-1 {o['accuracy']:.1%} -> {a['accuracy']:.1%} in {s['iterations']} iterations")
    # the baseline NetAdapt must beat: the same trained start, uniformly narrower to the same measured latency,
    # fine-tuned for as many steps
    start = load_network(run / "checkpoints" / "iter_000.safetensors", template=model)
    mult, _ = match_latency(dev, start, shape, a["measured_ms"])
    uni = evaluate_width(dev, start, shape, mult, cfg.data_args(), s["fine_tune_steps"], seed=cfg.seed)
    console.print(f"uniform width x{mult:.3f}: {uni['measured_ms']:.3f} ms, top-1 {uni['accuracy']:.1%} after "
                  f"{uni['steps']} fine-tune steps (NetAdapt: {a['accuracy']:.1%} at {a['measured_ms']:.3f} ms)")
    keys = ("original", "adapted", "iterations", "speedup", "speedup_verdict", "budget_met", "budget_verdict",
            "noise_pct", "fine_tune_steps")
    return {"budget_ms": budget, "start_ms": start_ms, "summary": {k: s[k] for k in keys}, "uniform": uni,
            "out": cfg.out, "plot": str(run / "trajectory.png")}


_VERDICT = {"meets": "meets", "misses": "misses", "within noise": "within the measurement noise of"}


def _value(row: dict) -> float:
    """The estimator's value of a search result row: a top-1 accuracy, or a proxy's score."""
    return float(row["score"] if "score" in row else row["accuracy"])


# -- the report -----------------------------------------------------------------------------------------------
def write_report(path: Path, r: dict) -> None:
    from hwnas.rundir import atomic_write_bytes
    fp = r["fingerprint"]
    zoo, tab, srch, adp = r["zoo"], r["table"], r["search"], r["adapt"]
    lines = [f"# hwnas demo on `{r['device']}`", "",
             f"{fp.get('runtime')} {fp.get('runtime_version')}, threads {fp.get('threads')}, {fp.get('cpu_model')} "
             f"(fingerprint `{fp['key']}`). Every figure below was measured in this run; latency is the "
             f"{zoo['statistic']}.", "",
             "## Speed is not FLOPs (224x224)", "",
             "| model | MACs | params | ms | MACs ratio | latency ratio |", "|---|---:|---:|---:|---:|---:|"]
    for z in zoo["rows"]:
        lines.append(f"| {z['model']} | {z['macs'] / 1e6:.0f}M | {z['params'] / 1e6:.2f}M | {z['latency_ms']:.2f} | "
                     f"{z['macs_ratio']:.2f}x | {z['latency_ratio']:.2f}x |")
    p, n = tab["predictor"], tab["noise_floor"]
    lines += ["", f"## A latency table of `{tab['space']}` ({tab['ops']} ops, built in {tab['build_seconds']:.0f} s)", "",
              "| | within ±5% | within ±10% | Spearman |", "|---|---:|---:|---:|",
              f"| table vs measured (held-out networks) | {p['within_5pct']:.0%} | {p['within_10pct']:.0%} | "
              f"{p['spearman']:.2f} |",
              f"| noise floor (measured twice) | {n['within_5pct']:.0%} | {n['within_10pct']:.0%} | "
              f"{n['spearman']:.2f} |", "", _image(path, tab.get("plot"), "predicted vs measured"), ""]
    b = srch["best"]
    lines += [f"## Search under {srch['target_ms']:.3f} ms, hard constraint ({srch['samples']} samples, evolution, "
              f"naswot score)", "",
              f"Best: predicted {b['latency_ms']:.3f} ms, measured {b.get('measured_ms', float('nan')):.3f} ms "
              f"({_VERDICT.get(b.get('target_verdict'), '?')} the target); naswot score {_value(b):.3f} — a zero-cost proxy, not "
              f"an accuracy. Pareto front: {srch['pareto_size']} networks.", "",
              _image(path, srch.get("plot"), "search samples and front"), ""]
    s = adp["summary"]
    o, a = s["original"], s["adapted"]
    lines += [f"## NetAdapt: `hwnas.demo:demo_net` on digits 32x32 to {adp['budget_ms']:.3f} ms", "",
              "| | measured ms | top-1 | params | MACs |", "|---|---:|---:|---:|---:|",
              f"| original | {o['measured_ms']:.3f} | {o['accuracy']:.1%} | {o['params']:,} | {o['macs']:,} |",
              f"| adapted | {a['measured_ms']:.3f} | {a['accuracy']:.1%} | {a['params']:,} | {a['macs']:,} |", "",
              f"Speed-up {s['speedup']:.2f}x ({s['speedup_verdict']}), budget "
              f"{'met' if s['budget_met'] else 'missed'}"
              f"{' by less than the noise' if s['budget_verdict'] == 'within noise' else ''} "
              f"(noise ±{s['noise_pct']:.0f}%), {s['iterations']} iterations.", "",
              f"Uniform width x{adp['uniform']['width_mult']:.3f} from the same trained start, fine-tuned as many "
              f"steps ({adp['uniform']['steps']}): {adp['uniform']['measured_ms']:.3f} ms, top-1 "
              f"{adp['uniform']['accuracy']:.1%} — NetAdapt {a['accuracy'] - adp['uniform']['accuracy']:+.1%} "
              f"top-1 at {a['measured_ms'] / adp['uniform']['measured_ms']:.2f}x its latency. One seed, one short run: "
              f"a demonstration of the loop, not evidence either way (bench/netadapt.py compares properly).", "",
              _image(path, adp.get("plot"), "NetAdapt trajectory"), "",
              "## Time", "", ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items()), ""]
    atomic_write_bytes(path, "\n".join(lines).encode())


def _image(report_path: Path, png, alt: str) -> str:
    if not png or not Path(png).exists():
        return f"(no {alt} plot was written)"
    import os
    return f"![{alt}]({os.path.relpath(png, report_path.parent)})"
