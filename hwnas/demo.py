"""The demo behind `hwnas demo`: every figure it prints is measured in the run."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_demo(device: str = "cpu", out: str = "runs/demo", steps: int = 300, devices_file=None) -> dict:
    import hwnas.models as zoo
    from hwnas.data import load_dataset, make_loaders
    from hwnas.latency.devices import get_device
    from hwnas.latency.export import export_onnx
    from hwnas.latency.protocol import measure_latency
    from hwnas.train import evaluate, seed_everything, train

    console = Console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = get_device(device, devices_file)
    fp = dev.fingerprint()
    report: dict = {"device": device, "fingerprint": fp}
    console.rule(f"1. device {device!r}")
    console.print(f"{fp.get('runtime')} {fp.get('runtime_version')}, {fp.get('provider') or fp.get('delegate')}, "
                  f"threads {fp.get('threads')}, {fp.get('cpu_model')} (fingerprint {fp['key']})")

    console.rule("2. speed is not FLOPs: zoo models at 224x224, measured together")
    names = ("mobilenet_v2", "shufflenet_v2_x1_0", "mnasnet_a1", "resnet18")
    models = {name: zoo.create(name).eval() for name in names}
    lat = measure_latency(dev, {name: (m, (1, 3, 224, 224)) for name, m in models.items()})
    rows = []
    for name, model in models.items():
        s = zoo.stats(model, (1, 3, 224, 224))
        rows.append({"model": name, "macs": s["macs"], "params": s["params"], "latency_ms": lat[name].ms,
                     "statistic": lat[name].statistic, "spread_pct": lat[name].spread_pct})
    base = rows[0]
    t = Table(caption="ratios against mobilenet_v2; halves: how far two halves of the rounds are apart")
    for col in ("model", "MACs", "params", "ms", "halves", "MACs ratio", "latency ratio"):
        t.add_column(col, justify="right" if col != "model" else "left")
    for r in rows:
        t.add_row(r["model"], f"{r['macs'] / 1e6:.0f}M", f"{r['params'] / 1e6:.2f}M", f"{r['latency_ms']:.2f}",
                  f"±{r['spread_pct'] / 2:.1f}%", f"{r['macs'] / base['macs']:.2f}x",
                  f"{r['latency_ms'] / base['latency_ms']:.2f}x")
    console.print(t)
    console.print(f"latency: {base['statistic']} (hwnas.latency.protocol)")
    report["zoo"] = rows

    console.rule(f"3. train on digits ({steps} steps), export to ONNX, re-measure")
    seed_everything(0)
    split = load_dataset("digits", image_size=32)
    train_loader, val_loader = make_loaders(split, batch_size=64, seed=0)
    model = zoo.create("mobilenet_v2", num_classes=split.num_classes, width_mult=0.35)
    before = evaluate(model, val_loader)
    res = train(model, train_loader, steps=steps, lr=0.05, threads=1)
    acc = evaluate(model, val_loader)
    exp = export_onnx(model, (1, *split.input_shape), out_dir / "mobilenet_v2_035_digits.onnx")
    m = dev.latency(model.eval(), (1, *split.input_shape))
    console.print(f"mobilenet_v2 x0.35 on digits 32x32: top-1 {before:.1%} -> {acc:.1%} after {res.steps} steps "
                  f"({res.seconds:.0f} s); ONNX {exp.path} (max |ORT - torch| = {exp.max_abs_diff:.2e}); "
                  f"latency {m.describe()} on {device}")
    report["digits"] = {"top1_before": before, "top1": acc, "steps": res.steps, "onnx": str(exp.path),
                        "parity_max_abs_diff": exp.max_abs_diff, "latency_ms": m.ms, "statistic": m.statistic}
    (out_dir / "demo.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.rule("done")
    console.print(f"figures written to {out_dir / 'demo.json'}")
    return report
