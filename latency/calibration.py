"""Paired calibration: a fixed reference network timed between the runs of whatever is measured.

On a shared machine (a virtual machine, a board that throttles) the same network's latency moves by tens of
percent from one minute to the next: measured here, mnasnet networks at 224x224 ran 1.0x to 2x their
fastest time, in spells of seconds, whether or not anything else ran on the machine, and the slow spells
slowed every kernel alike (correlation 0.9 between a network's round time and a reference network's). So
each timed run is followed by one run of a fixed reference network on the same cores (or, for artifacts
much shorter than it, one reference run every few runs): the ratio artifact / reference cancels the
machine's speed of the moment, and `ratio x reference_ms` is the artifact's latency at the machine's
nominal speed (see hwnas.latency.protocol, bench/noise.py for the figures).

`reference_ms` is the reference network's nominal time on a device fingerprint: measured once (a low
quantile of runs spread over seconds) the first time the fingerprint is calibrated and then kept in
$HWNAS_HOME/calibration.json, so that every table, validation, search and NetAdapt run on that fingerprint
shares one scale. Delete the entry to calibrate again (tables built before then are on the old scale).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.rundir import atomic_write_bytes

REFERENCE_ID = "hwnas-reference-mbconv-128/1"
REFERENCE_SHAPE = (1, 3, 128, 128)
_SEED = 20261201


def reference_module():
    """A small, fixed MobileNetV2-style network (stem, four inverted residual blocks, head): the kind of
    work the networks hwnas times are made of. Weights from a fixed seed, so every machine times the same."""
    import torch
    from torch import nn

    from hwnas.models.layers import conv_bn

    class Block(nn.Module):
        def __init__(self, cin, cout, k, s, e):
            super().__init__()
            h = cin * e
            self.body = nn.Sequential(conv_bn(cin, h, 1), conv_bn(h, h, k, s, groups=h), conv_bn(h, cout, 1, act=None))
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    state = torch.random.get_rng_state()
    torch.manual_seed(_SEED)
    try:
        net = nn.Sequential(conv_bn(3, 24, 3, 2), Block(24, 32, 3, 2, 4), Block(32, 32, 3, 1, 4),
                            Block(32, 64, 5, 2, 4), Block(64, 64, 5, 1, 4), conv_bn(64, 256, 1),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    finally:
        torch.random.set_rng_state(state)
    return net.eval()


@dataclass
class Reference:
    artifact: object   # the reference network in the backend's format
    ms: float          # its nominal time on this fingerprint
    fingerprint: str
    established: str   # when `ms` was measured


def calibration_file() -> Path:
    home = os.environ.get("HWNAS_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "hwnas") / "calibration.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_entry(path: Path, key: str, entry: dict) -> dict:
    """Add `entry` under `key` unless another process did first; return the entry that is stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(path)
        if key in data:
            return data[key]
        data[key] = entry
        atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        return entry


def establish(backend, artifact, segments: int = 30, runs: int = 10, pause_s: float = 0.1) -> dict:
    """The reference's nominal time: the 5th percentile of `segments` x `runs` runs spread over about three
    seconds (a fast-state reading even when most of it fell in a slow spell)."""
    samples = []
    for i in range(segments):
        m = backend.measure(artifact, warmup=5 if i == 0 else 2, runs=runs)
        samples += m.samples_ms
        time.sleep(pause_s)
    a = np.asarray(samples)
    return {"reference": REFERENCE_ID, "ms": float(np.percentile(a, 5)), "median_ms": float(np.median(a)),
            "runs": int(a.size), "established": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def reference(backend) -> Reference:
    """The calibration reference of a host backend (prepared once per backend instance)."""
    cached = getattr(backend, "_reference", None)
    if cached is not None:
        return cached
    from hwnas.latency.artifacts import prepare_artifact
    from hwnas.latency.devices.base import fingerprint_key
    art = prepare_artifact(reference_module(), backend.artifact_format, REFERENCE_SHAPE,
                           device_name=backend.device_name)
    art.name = "calibration-reference"
    fp = fingerprint_key(backend.fingerprint())
    key = f"{fp}/{REFERENCE_ID}"
    path = calibration_file()
    entry = _read(path).get(key)
    if entry is None:
        entry = _write_entry(path, key, establish(backend, art))
    backend._reference = Reference(art, float(entry["ms"]), fp, entry.get("established", "?"))
    return backend._reference
