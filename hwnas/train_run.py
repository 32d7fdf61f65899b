"""`hwnas train`: train one network stand-alone on the user's data at the training size, export it at the
deployment size, and measure it on the device - the last step of search-then-train.

The network is one of
  - a search's result: `run=DIR` (its summary's best; `sample=I` for another sample), in the run's space;
  - an architecture of a space: `space=NAME, arch=[...]`;
  - a zoo model, optionally narrower: `model=NAME, width=M` (a uniformly scaled baseline).

Run directory (`out`):
  config.json       what was asked (a resume must ask the same)
  train.ckpt        weights + optimizer + step, every `checkpoint_every` steps (safetensors + JSON, no pickle):
                    a kill -9 loses at most those steps, and `resume` goes on from the step with the very batches
                    the uninterrupted run would have seen
  model.safetensors the trained weights;  model.onnx (and the device's format) at the deployment size
  summary.json      top-1 on the validation split, the measured latency (the one protocol), sizes, time
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hwnas.settings import SettingError, literal, require

CKPT, CONFIG, SUMMARY = "train.ckpt", "config.json", "summary.json"


@dataclass
class TrainConfig:
    run: str | None = None           # a search run directory: train its best (or `sample`)
    sample: int | None = None
    space: str | None = None         # or a space and an architecture of it
    arch: Any = None
    model: str | None = None         # or a zoo model at a width multiplier
    width: float = 1.0
    data: str | None = None          # default: the search's data, else digits
    train_size: int | None = None    # default: the search's, else min(input size, 32)
    input_size: int | None = None    # deployment size: the space's, else the model's default (224)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 0.1
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    resume: bool = False
    checkpoint_every: int = 100
    train_device: str = "auto"
    devices_file: str | None = None
    measure: bool = True             # False: train and score only (no export, no timing), e.g. trainings run in
                                     # parallel, whose timings would be loaded (bench/versus.py times them apart)

    def __post_init__(self):
        given = [name for name in ("run", "space", "model") if getattr(self, name)]
        require(len(given) == 1, "give one network to train: {}, {} with {}, or {}", "run", "space", "arch",
                "model")
        require(not self.space or self.arch is not None, "{} needs {}", "space", "arch")
        require(self.sample is None or self.run, "{} picks a sample of a search: give {} too", "sample", "run")
        require(self.width > 0, "{} must be above 0", "width")
        for name in ("steps", "batch_size", "checkpoint_every"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "{} must be at least 1", name)
        require(self.lr > 0, "{} must be above 0", "lr")
        for name in ("train_size", "input_size"):
            v = getattr(self, name)
            require(v is None or (isinstance(v, int) and v >= 8), "{} must be at least 8 px", name)
        if isinstance(self.arch, str):
            try:
                self.arch = json.loads(self.arch)
            except ValueError:
                raise SettingError("{} is a JSON list of choice indices, e.g. [0, 1, 2], not "
                                   + literal(repr(self.arch)), "arch") from None


def _search_source(c: TrainConfig) -> dict:
    """The network of a search run: its space, architecture, data and sizes."""
    run = Path(c.run)
    try:
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        raise SettingError(literal(run) + " is not a finished search run (no readable summary.json and "
                           "config.json); give the directory `hwnas search --out` wrote", "run") from None
    if c.sample is None:
        best = summary.get("best") or {}
        arch, which = best.get("arch"), f"its best (sample {best.get('i')})"
    else:
        rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines() if x.strip()]
        if not 0 <= c.sample < len(rows):
            raise SettingError("{} " + str(c.sample) + f" is not a sample of {literal(run)} (0..{len(rows) - 1})",
                               "sample")
        arch, which = rows[c.sample]["arch"], f"sample {c.sample}"
    if arch is None:
        raise SettingError(literal(run) + " has no best network in its summary", "run")
    return {"space": config["space"], "arch": arch, "data": config.get("data"),
            "train_size": config.get("train_size"), "input_size": config.get("input_size"),
            "what": f"{config['space']} architecture from {run} ({which})"}


def resolve(c: TrainConfig) -> dict:
    """What is trained: {"build": num_classes -> nn.Module, "data", "train_size", "input_size", "what"}."""
    if c.run:
        src = _search_source(c)
        space_name, arch = src["space"], src["arch"]
    elif c.space:
        src, space_name, arch = {}, c.space, c.arch
    else:
        src, space_name, arch = {}, None, None
    if space_name:
        from hwnas.search.spaces import get_space
        space = get_space(space_name)
        arch = space.validate(arch)
        deploy = c.input_size or src.get("input_size") or space.input_size
        return {"build": lambda n: space.build(arch, num_classes=n), "data": c.data or src.get("data") or "digits",
                "train_size": c.train_size or src.get("train_size") or min(deploy, 32), "input_size": deploy,
                "what": src.get("what", f"{space_name} architecture {list(arch)}"),
                "source": {"space": space_name, "arch": list(arch)}}
    from hwnas.models import registry
    info = registry.get_info(c.model)  # an unknown name is one line, before any work
    if c.width != 1.0 and not info.width_mult:
        raise SettingError("model " + literal(repr(c.model)) + " has no width multiplier: leave out {}", "width")
    deploy = c.input_size or getattr(info, "input_size", None) or 224
    return {"build": lambda n: registry.create(c.model, num_classes=n, width_mult=c.width),
            "data": c.data or "digits", "train_size": c.train_size or min(deploy, 32), "input_size": deploy,
            "what": f"{c.model} at width {c.width:g}", "source": {"model": c.model, "width": c.width}}


def train_network(c: TrainConfig, log: Callable[[str], None] = print, show_progress: bool = True) -> dict:
    """Train, export and measure as `c` says; returns the summary (also written to OUT/summary.json)."""
    from torch.utils.data import DataLoader

    from hwnas.data import load_dataset, make_loaders
    from hwnas.latency.devices import get_device
    from hwnas.latency.protocol import NETWORK, measure_latency
    from hwnas.models.stats import count_macs, count_params
    from hwnas.rundir import RunLock, atomic_write_json, check_same_config, prepare_dir, read_json
    from hwnas.tensorfile import load_tree, save_tree
    from hwnas.train import EpochSampler, evaluate, resolve_train_device, seed_everything, train

    what = resolve(c)
    out = Path(c.out or f"runs/train-{what['source'].get('model') or what['source']['space']}")
    device = get_device(c.device, c.devices_file)
    device.check()
    record = {"source": what["source"], "data": what["data"], "train_size": what["train_size"],
              "input_size": what["input_size"], "steps": c.steps, "batch_size": c.batch_size, "lr": c.lr,
              "seed": c.seed, "device": c.device}
    prepare_dir(out)
    with RunLock(out, "train"):
        ckpt = out / CKPT
        if ckpt.exists() and not c.resume:
            raise SettingError(literal(out) + " already holds a training run; pass {} to continue it or choose "
                               "another {}", "resume", "out")
        if c.resume and (out / CONFIG).exists():
            check_same_config(read_json(out / CONFIG, "training config"), record, out, "training settings")
        atomic_write_json(out / CONFIG, record)
        split = load_dataset(what["data"], image_size=what["train_size"], channels=3, seed=c.seed)
        seed_everything(c.seed)
        model = what["build"](split.num_classes)
        start, opt_state = 0, None
        if ckpt.exists():
            state = load_tree(ckpt, "train-run", what="training checkpoint")
            model.load_state_dict(state["weights"])
            start, opt_state = int(state["step"]), state["opt"]
            log(f"resumed {out} at step {start} of {c.steps}")
        loader = DataLoader(split.train, batch_size=c.batch_size, sampler=EpochSampler(len(split.train), c.seed),
                            drop_last=len(split.train) > c.batch_size)
        log(f"training {what['what']} on {split.source} at {what['train_size']}x{what['train_size']} for "
            f"{c.steps} steps -> {out}")

        def checkpoint(step, opt):
            save_tree(ckpt, {"step": step, "weights": model.state_dict(), "opt": opt}, "train-run")

        t0 = time.perf_counter()
        if start < c.steps:
            train(model, loader, steps=c.steps, lr=c.lr, device=resolve_train_device(c.train_device),
                  progress=show_progress, description="train", start_step=start, opt_state=opt_state,
                  on_checkpoint=checkpoint, checkpoint_every=c.checkpoint_every)
        train_s = time.perf_counter() - t0
        model.eval()
        _, val = make_loaders(split, 256, c.seed)
        top1 = float(evaluate(model, val))
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
        shape = (1, 3, what["input_size"], what["input_size"])
        summary = {"network": what["what"], **record, "top1": top1, "val_images": len(split.val),
                   "params": count_params(model), "macs": count_macs(model, shape),
                   "train_seconds_now": round(train_s, 1), "files": {"weights": str(out / "model.safetensors")}}
        if c.measure:
            summary["files"].update(device.export_final(model, shape, out, "model"))
            log(f"top-1 {top1:.4f} on the validation split ({len(split.val)} images); measuring on {device.name} "
                f"at {what['input_size']}x{what['input_size']}")
            lat = measure_latency(device, {0: device.prepare(model, shape)}, NETWORK)[0]
            summary.update({"latency_ms": lat.ms, "latency_statistic": lat.statistic,
                            "latency_spread_pct": lat.spread_pct, "latency_rounds": lat.rounds})
        atomic_write_json(out / SUMMARY, summary)
        return summary
