"""What a GPU machine measures (scripts/gpu-check.sh runs this; it needs an NVIDIA GPU).

For every GPU device of devices.yaml that works here (cuda = onnxruntime CUDA with I/O binding, tensorrt,
torch-cuda) and the CPU device beside them: mobilenet_v2 (width 1.0 and 0.75: does a thinner network get faster on
a GPU?) and resnet50 at 224x224, batch 1 and batch 32, measured with the one protocol (interleaved rounds), as ms
per batch and images/s. Then onnxruntime CUDA without I/O binding (host copies timed every call) against with,
and a short digits training on the GPU against the CPU (steps/s, top-1, same seed).

usage: python bench/gpu.py [--devices cuda,tensorrt,torch-cuda,cpu] [--models mobilenet_v2,mobilenet_v2@0.75,resnet50]
                           [--batches 1,32] [--train-steps 200] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import time


def model(spec: str):
    from hwnas.models import create
    name, _, width = spec.partition("@")
    kw = {"width_mult": float(width)} if width else {}
    return create(name, num_classes=1000, **kw).eval()


def latency_table(devices, specs, batches, size: int) -> tuple[list[dict], list[str]]:
    from hwnas.latency.devices import get_device
    from hwnas.latency.protocol import NETWORK
    rows, skipped = [], []
    for name in devices:
        dev = get_device(name)
        try:
            dev.check()
        except Exception as e:  # a device this machine cannot run: said, not hidden
            skipped.append(f"{name}: {e}")
            continue
        fp = dev.fingerprint()
        for batch in batches:
            shape = (batch, 3, size, size)
            nets = {spec: (model(spec), shape) for spec in specs}
            from hwnas.latency.protocol import measure_latency
            t0 = time.perf_counter()
            lats = measure_latency(dev, nets, NETWORK)
            for spec, lat in lats.items():
                rows.append({"device": name, "model": spec, "batch": batch, "ms": lat.ms,
                             "images_per_s": batch * 1000.0 / lat.ms, "spread_pct": lat.spread_pct,
                             "gpu": fp.get("gpu", fp.get("cpu_model")), "provider": fp.get("provider"),
                             "precision": fp.get("precision", "fp32"), "seconds": time.perf_counter() - t0})
            dev.close()
    return rows, skipped


def copies_vs_bound(size: int) -> dict | None:
    """onnxruntime CUDA, mobilenet_v2 batch 1: the same network with host copies timed (plain session.run on
    numpy inputs) and with I/O binding."""
    from dataclasses import replace

    from hwnas.latency.devices import Device
    from hwnas.latency.devices.config import load_devices
    from hwnas.latency.protocol import NETWORK, measure_latency
    entries = load_devices()
    out = {}
    for io in (True, False):
        e = entries["cuda"]
        dev = Device(replace(e, options=e.options.model_copy(update={"io_binding": io})))
        try:
            dev.check()
        except Exception:
            return None
        out["bound" if io else "copies"] = measure_latency(dev, {"m": (model("mobilenet_v2"), (1, 3, size, size))},
                                                           NETWORK)["m"].ms
        dev.close()
    return out


def training(steps: int) -> list[dict]:
    import torch
    from hwnas.data import load_dataset, make_loaders
    from hwnas.models import create
    from hwnas.train import evaluate, seed_everything, train
    split = load_dataset("digits", image_size=32, channels=3, seed=0)
    rows = []
    for device in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
        seed_everything(0)
        net = create("mobilenet_v2", num_classes=split.num_classes, width_mult=0.5)
        tl, vl = make_loaders(split, 64, 0)
        res = train(net, tl, steps=steps, lr=0.05, device=device, progress=False)
        rows.append({"train_device": device, "steps": res.steps, "seconds": res.seconds,
                     "steps_per_s": res.steps / res.seconds, "top1": evaluate(net, vl, device=device)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cuda,tensorrt,torch-cuda,cpu")
    ap.add_argument("--models", default="mobilenet_v2,mobilenet_v2@0.75,resnet50")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows, skipped = latency_table(a.devices.split(","), a.models.split(","), [int(b) for b in a.batches.split(",")],
                                  a.size)
    print("| device | model | batch | ms per batch | images/s | spread % | provider | precision |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['model']} | {r['batch']} | {r['ms']:.3f} | {r['images_per_s']:.0f} | "
              f"{r['spread_pct']:.1f} | {r['provider']} | {r['precision']} |")
    for s in skipped:
        print(f"not run: {s}")
    io = copies_vs_bound(a.size)
    if io:
        print(f"\nonnxruntime CUDA, mobilenet_v2 batch 1: {io['bound']:.3f} ms I/O bound, {io['copies']:.3f} ms with "
              f"host copies every call ({io['copies'] / io['bound']:.2f}x)")
    train_rows = training(a.train_steps)
    print("\n| train device | steps | seconds | steps/s | top-1 |\n|---|---:|---:|---:|---:|")
    for r in train_rows:
        print(f"| {r['train_device']} | {r['steps']} | {r['seconds']:.1f} | {r['steps_per_s']:.1f} | {r['top1']:.4f} |")
    if a.json:
        from pathlib import Path
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"latency": rows, "not_run": skipped, "io_binding": io,
                                            "training": train_rows}, indent=1))


if __name__ == "__main__":
    main()
