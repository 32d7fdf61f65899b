"""EfficientNet compound scaling under a latency target (Tan & Le 2019), as `hwnas scale` runs it.

Step 1 (phi = 1): grid-search depth/width/resolution coefficients (alpha, beta, gamma), all >= 1, with
alpha * beta^2 * gamma^2 ~= 2 (each candidate about doubles the FLOPs); every candidate is trained a few
hundred steps on the data and its latency measured on the device; the most accurate one wins (ties: the
faster).
Step 2: with (alpha, beta, gamma) fixed, choose the compound coefficient phi (depth alpha^phi, width
beta^phi, resolution gamma^phi x the base resolution) as the largest phi whose *measured* latency meets
the target: phi = 0, +-1, +-2, ... until the target is crossed, then bisection between the last phi that
meets it and the first that does not. Latency grows with phi, but is measured (noisy), so the search
only ever keeps phi values it measured within the target.

Run directory (the same kind `hwnas search` writes):
  config.json          what was asked (a resume must ask the same)
  samples.jsonl        one line per grid candidate (i, arch = [alpha, beta, gamma], accuracy, latency_ms
                       at phi = 1, reward against the target), appended and fsynced: a killed run resumes
                       after the last finished candidate
  phi.jsonl            one line per measured phi (depth/width coefficients, resolution, latency)
  grid.json            the grid with its results and the chosen (alpha, beta, gamma)
  pareto.json / pareto.png   the grid's accuracy/latency front
  summary.json         the chosen (alpha, beta, gamma, phi), the scaled network, its accuracy and measured
                       latency; best.onnx: the final network (trained like the grid candidates)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.verdict import against_target, noise_pct
from hwnas.search.pareto import hypervolume, pareto_front, plot_pareto
from hwnas.search.reward import Reward
from hwnas.rundir import RunLock, append_jsonl, atomic_write_json, check_same_config, prepare_dir, read_json, read_jsonl
from hwnas.search.config import ScaleConfig
from hwnas.search.run import CONFIG, SAMPLES, read_samples
from hwnas.settings import SettingError, literal

PHI_FILE = "phi.jsonl"
MIN_RESOLUTION = 16


def _quiet(_msg: str) -> None:
    pass


# -- step 1: the (alpha, beta, gamma) grid ------------------------------------------------------------
def compound_grid(step: float = 0.1, flops_ratio: float = 2.0, tolerance: float = 0.05,
                  max_alpha: float = 2.0, max_beta: float = 1.5, max_gamma: float = 1.5,
                  max_candidates: int | None = None) -> list[tuple[float, float, float]]:
    """(alpha, beta, gamma) on a grid of `step`, each >= 1, with |alpha beta^2 gamma^2 / flops_ratio - 1|
    <= tolerance. With `max_candidates`, an evenly spread subset of them (always including the ends)."""
    if step <= 0 or tolerance < 0 or flops_ratio <= 1:
        raise HwnasError(f"the grid needs step > 0, tolerance >= 0 and a FLOPs ratio > 1 "
                         f"(got {step}, {tolerance}, {flops_ratio})")

    def axis(hi):
        return [round(1.0 + i * step, 6) for i in range(int(math.floor((hi - 1.0) / step + 1e-9)) + 1)]

    out = [(a, b, g) for a in axis(max_alpha) for b in axis(max_beta) for g in axis(max_gamma)
           if abs(a * b * b * g * g / flops_ratio - 1.0) <= tolerance + 1e-12]
    if not out:
        raise HwnasError(f"no (alpha, beta, gamma) on a {step:g} grid has alpha*beta^2*gamma^2 within "
                         f"{100 * tolerance:g}% of {flops_ratio:g}; use a finer step or a larger tolerance")
    if max_candidates is not None:
        if max_candidates < 1:
            raise HwnasError(f"the grid needs at least one candidate, got max {max_candidates}")
        if len(out) > max_candidates:
            idx = np.unique(np.round(np.linspace(0, len(out) - 1, max_candidates)).astype(int))
            out = [out[i] for i in idx]
    return out


@dataclass(frozen=True)
class Scaled:
    """One compound-scaled network: coefficients raised to phi, and the resolution it trains at (`resolution`) and
    is measured and deployed at (`input_size`: the deployment base scaled alike; the training one by default)."""
    alpha: float
    beta: float
    gamma: float
    phi: float
    base_resolution: int
    deploy_resolution: int | None = None

    @property
    def depth(self) -> float:
        return self.alpha ** self.phi

    @property
    def width(self) -> float:
        return self.beta ** self.phi

    @property
    def resolution(self) -> int:
        return max(MIN_RESOLUTION, int(round(self.base_resolution * self.gamma ** self.phi)))

    @property
    def input_size(self) -> int:
        if self.deploy_resolution is None:
            return self.resolution
        return max(MIN_RESOLUTION, int(round(self.deploy_resolution * self.gamma ** self.phi)))

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "phi": self.phi,
                "depth_coefficient": self.depth, "width_coefficient": self.width, "resolution": self.resolution,
                "input_size": self.input_size}


# -- step 2: phi under the latency target -------------------------------------------------------------
def find_phi(latency_of: Callable[[float], float], target_ms: float, phi_min: float = -4.0, phi_max: float = 8.0,
             bisect_steps: int = 4, log: Callable[[str], None] = _quiet) -> tuple[float, dict[float, float]]:
    """The largest phi in [phi_min, phi_max] whose latency (`latency_of(phi)`, ms) meets `target_ms`,
    searched by unit steps from 0 then bisection. Returns (phi, {phi: latency} of every probe)."""
    if not phi_min <= 0.0 <= phi_max:
        raise HwnasError(f"the phi range must contain 0, got [{phi_min:g}, {phi_max:g}]")
    probes: dict[float, float] = {}

    def lat(phi):
        phi = round(float(phi), 4)
        if phi not in probes:
            probes[phi] = float(latency_of(phi))
            log(f"  phi {phi:+.4g}: {probes[phi]:.3f} ms {'<=' if probes[phi] <= target_ms else '>'} "
                f"target {target_ms:g} ms")
        return probes[phi]

    if lat(0.0) <= target_ms:
        ok, over = 0.0, None
        phi = 0.0
        while phi < phi_max:
            phi = min(phi + 1.0, phi_max)
            if lat(phi) <= target_ms:
                ok = phi
            else:
                over = phi
                break
    else:
        ok, over = None, 0.0
        phi = 0.0
        while phi > phi_min:
            phi = max(phi - 1.0, phi_min)
            if lat(phi) <= target_ms:
                ok = phi
                break
            over = phi
        if ok is None:
            raise HwnasError(f"target {target_ms:g} ms is unreachable: even phi = {phi_min:g} (the smallest "
                             f"scaling allowed) measures {probes[round(phi_min, 4)]:.3g} ms")
    if over is not None:
        for _ in range(bisect_steps):
            mid = round((ok + over) / 2.0, 4)
            if mid in (ok, over):
                break
            if lat(mid) <= target_ms:
                ok = mid
            else:
                over = mid
    return ok, probes


# -- the runner ---------------------------------------------------------------------------------------
class CompoundScaling:
    """Compound scaling of a model of the zoo that takes `width_mult` and `depth_mult` (EfficientNet)."""

    def __init__(self, config: ScaleConfig, device, *, protocol=None, log: Callable[[str], None] = _quiet):
        from hwnas.models import get_info
        c = self.cfg = config
        info = get_info(c.base)  # an unknown name is a HwnasError listing the zoo
        if info.family != "efficientnet":
            raise SettingError(f"model {c.base!r} cannot be compound-scaled (it needs width and depth multipliers; "
                               f"use an EfficientNet, e.g. efficientnet_b0, as {{}})", "base")
        self.out, self.device, self.base = Path(c.out), device, c.base
        self.reward = Reward.soft(c.target_ms)
        self.target_ms = c.target_ms
        self.data, self.resolution, self.steps, self.final_steps = c.data, c.resolution, c.steps, c.final_steps
        self.input_size = c.input_size  # the deployment base resolution (None: the training one)
        self.batch_size, self.lr, self.seed = c.batch_size, float(c.lr), c.seed
        from hwnas.train import resolve_train_device
        self.train_device = resolve_train_device(c.train_device)
        self.grid = c.grid
        self.phi_min, self.phi_max, self.bisect_steps = float(c.phi_min), float(c.phi_max), c.bisect_steps
        from hwnas.latency.protocol import NETWORK
        protocol = protocol or (NETWORK.but(runs=c.runs) if c.runs else NETWORK)
        self.protocol, self.resume, self.log = protocol, c.resume, log
        self.config = {**c.record(), "device": getattr(device, "name", c.device), "protocol": protocol.to_dict()}
        if device is not None:
            self.config["fingerprint"] = device.fingerprint_key()
        self._splits: dict[int, object] = {}
        self.trained = 0  # networks trained by this process (tests check a resume trains no grid point twice)

    # -- pieces ---------------------------------------------------------------------------------------
    def build(self, s: Scaled, num_classes: int):
        import torch
        from hwnas.models import create
        torch.manual_seed(self.seed)
        return create(self.base, num_classes=num_classes, width_mult=s.width, depth_mult=s.depth)

    def split(self, resolution: int):
        if resolution not in self._splits:
            from hwnas.data import load_dataset
            self._splits[resolution] = load_dataset(self.data, image_size=resolution, channels=3, seed=self.seed)
        return self._splits[resolution]

    def train_eval(self, s: Scaled, steps: int):
        """(trained model, validation top-1) of the scaled network after `steps` SGD steps."""
        from hwnas.data import make_loaders
        from hwnas.train import evaluate, seed_everything, train
        split = self.split(s.resolution)
        seed_everything(self.seed)
        model = self.build(s, split.num_classes)
        train_loader, val_loader = make_loaders(split, self.batch_size, self.seed)
        if steps > 0:
            train(model, train_loader, steps=steps, lr=self.lr, progress_bar=False, device=self.train_device)
            self.trained += 1
        return model.eval(), float(evaluate(model, val_loader, device=self.train_device))

    def latency(self, s: Scaled, num_classes: int = 10) -> float:
        """The scaled network's measured latency (the measurement protocol), ms."""
        model = self.build(s, num_classes).eval()
        return self.device.latency(model, (1, 3, s.input_size, s.input_size), self.protocol).ms

    # -- the run --------------------------------------------------------------------------------------
    def _prepare_dir(self) -> list[dict]:
        cfg_path, samples_path = self.out / CONFIG, self.out / SAMPLES
        if samples_path.exists() and samples_path.stat().st_size > 0 and not self.resume:
            raise SettingError(f"{literal(self.out)} already holds a scaling run ({SAMPLES}); pass {{}} to continue "
                               f"it or choose another {{}}", "resume", "out")
        if self.resume and cfg_path.exists():
            check_same_config(read_json(cfg_path, "scaling config"), self.config, self.out, "scaling settings",
                              ignore=("resume",))
        atomic_write_json(cfg_path, self.config)
        return read_samples(samples_path, repair=True)

    def run_grid(self) -> list[dict]:
        records = self._prepare_dir()
        if records:
            self.log(f"resumed {self.out}: {len(records)} of {len(self.grid)} grid candidates done")
        for i in range(len(records), len(self.grid)):
            a, b, g = self.grid[i]
            s = Scaled(a, b, g, 1.0, self.resolution, self.input_size)
            _, acc = self.train_eval(s, self.steps)
            lat = self.latency(s, self.split(s.resolution).num_classes)
            rec = {"i": i, "arch": [a, b, g], "describe": s.to_dict(), "flops_ratio": a * b * b * g * g,
                   "accuracy": acc, "latency_ms": lat, "reward": self.reward(acc, lat)}
            append_jsonl(self.out / SAMPLES, rec)
            records.append(rec)
            self.log(f"grid {i + 1}/{len(self.grid)}: alpha {a:g} beta {b:g} gamma {g:g} "
                     f"(x{rec['flops_ratio']:.2f} FLOPs): accuracy {acc:.4f}, {lat:.3f} ms")
        return records

    def _phi_cache(self, abg) -> dict[float, dict]:
        path = self.out / PHI_FILE
        cache = {}
        for row in read_jsonl(path, repair=True):
            if isinstance(row, dict) and row.get("abg") == list(abg):
                cache[round(float(row["phi"]), 4)] = row
        return cache

    def run(self):
        prepare_dir(self.out)
        with RunLock(self.out, "scaling run"):  # one writer: a second run on this --out is refused, not mixed in
            return self._run()

    def _run(self):
        records = self.run_grid()
        best = max(records, key=lambda r: (r["accuracy"], -r["latency_ms"], -r["i"]))
        a, b, g = best["arch"]
        grid = {"flops_ratio": 2.0, "candidates": records,
                "chosen": {"alpha": a, "beta": b, "gamma": g, "accuracy": best["accuracy"],
                           "latency_ms_at_phi_1": best["latency_ms"], "rule": "most accurate at phi = 1 "
                           "(ties: the faster)"}}
        atomic_write_json(self.out / "grid.json", grid)
        self.log(f"chosen alpha {a:g}, beta {b:g}, gamma {g:g}; searching phi for {self.target_ms:g} ms")

        cache = self._phi_cache((a, b, g))
        num_classes = self.split(self.resolution).num_classes

        def latency_of(phi):
            if phi in cache:
                return cache[phi]["latency_ms"]
            s = Scaled(a, b, g, phi, self.resolution, self.input_size)
            lat = self.latency(s, num_classes)
            row = {"abg": [a, b, g], **s.to_dict(), "latency_ms": lat}
            append_jsonl(self.out / PHI_FILE, row)
            cache[phi] = row
            return lat

        phi, probes = find_phi(latency_of, self.target_ms, self.phi_min, self.phi_max, self.bisect_steps,
                               log=self.log)
        chosen = Scaled(a, b, g, phi, self.resolution, self.input_size)
        model, acc = self.train_eval(chosen, self.final_steps)
        shape = (1, 3, chosen.input_size, chosen.input_size)
        exported = self.device.export_final(model, shape, self.out, "best")
        meas = self.device.latency(model.eval(), shape, self.protocol)
        measured = meas.ms

        front = pareto_front(records)
        lat = [r["latency_ms"] for r in records]
        ref = 2 * max(lat)
        atomic_write_json(self.out / "pareto.json", {
            "what": "grid candidates at phi = 1 (latency measured on the device)", "samples": len(records),
            "hypervolume": hypervolume(lat, [r["accuracy"] for r in records], ref_latency_ms=ref),
            "hypervolume_reference": {"latency_ms": ref, "accuracy": 0.0},
            "front": [{k: r[k] for k in ("i", "arch", "describe", "accuracy", "latency_ms")} for r in front]})
        plot_pareto(records, self.out / "pareto.png", title=f"{self.base} compound-scaling grid (phi = 1) on "
                                                             f"{self.device.name}",
                    value_label=f"validation top-1 (trained {self.steps} steps on {self.data})",
                    latency_source="measured", latency_statistic=meas.statistic, samples_label="grid candidates")
        summary = {
            "config": self.config, "base": self.base, "target_ms": self.target_ms,
            "chosen": {**chosen.to_dict(), "input_shape": list(shape)},
            "input_sizes": {"latency": chosen.input_size, "accuracy": chosen.resolution},
            "grid_best": grid["chosen"], "phi_probes": [{"phi": p, "latency_ms": probes[p]} for p in sorted(probes)],
            "accuracy": acc, "accuracy_steps": self.final_steps,
            "measured_latency_ms": measured, "measurement": meas.to_dict(),
            "meets_target": measured <= self.target_ms, "reward": self.reward(acc, measured),
            "target_verdict": against_target(measured, self.target_ms, noise_pct(meas.spread_pct)),
            "noise_pct": noise_pct(meas.spread_pct),
            "exported": {**exported, "input_shape": list(shape),
                         "weights": f"trained {self.final_steps} steps on {self.data}"},
            "device": {"name": self.device.name, "fingerprint": self.device.fingerprint()},
        }
        atomic_write_json(self.out / "summary.json", summary)
        return summary


def scale(config: ScaleConfig | None = None, *, log: Callable[[str], None] = _quiet, **settings) -> dict:
    """Compound scaling by names, as `hwnas scale` does: `scale(ScaleConfig(target="20ms", ...))` or
    `scale(target="20ms", steps=50, ...)` with the settings of ScaleConfig (search/config.py); returns the summary
    (also in out/summary.json)."""
    from hwnas.latency.devices import get_device
    from hwnas.settings import from_settings
    if config is None:
        config = from_settings(ScaleConfig, settings, "scale")
    elif settings:
        raise HwnasError(f"give scale() a config or settings, not both (got {', '.join(sorted(settings))})")
    c = config
    dev = get_device(c.device, c.devices_file)
    dev.check()
    log(f"scale: {c.base} on {c.device}, target {c.target_ms:g} ms, {len(c.grid)} grid candidates x {c.steps} steps "
        f"at {c.resolution} px on {c.data}"
        + (f" (latency at {c.input_size} px)" if c.input_size and c.input_size != c.resolution else "")
        + f" -> {c.out}")
    return CompoundScaling(c, dev, log=log).run()
