"""Weight sharing (the ENAS / SMASH idea, trained single-path as in SPOS): one supernet holds a module for
every op a position of the network can take; it is trained once, each step on a random architecture of
the space, and afterwards any architecture's accuracy is read off it without training: its path through
the supernet is assembled from the shared modules, the BatchNorm statistics are recalibrated on a few
training batches (shared BN statistics belong to no single path), and the validation top-1 is measured.

Positions: the network of a space whose model is the sequence of its ops (the MnasNet family) is op 0,
op 1, ...; two architectures share the module at position i when their i-th ops have the same canonical
key. Modules are created when a path first uses them (and join the optimizer then).

The trained supernet is saved (atomically, every `checkpoint_every` steps) under
<cache root>/supernet/<config key>.safetensors (hwnas.cache; or `checkpoint`; tensors + JSON, no pickle): training resumes after a kill, and later searches
with the same settings reuse it. `info()` reports the Spearman rank correlation between supernet accuracy
and stand-alone short-training accuracy on `validate` random architectures (0 turns it off), computed once
and kept beside the checkpoint.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas import cache
from hwnas.cache import cache_dir
from hwnas.errors import HwnasError
from hwnas.progress import progress
from hwnas.rundir import atomic_write_json, read_json
from hwnas.search.estimators.base import Estimator, register_estimator
from hwnas.search.estimators.short_train import load_split
from hwnas.tensorfile import load_tree, save_tree


def _cache_root() -> Path:
    return cache_dir("supernet")


class SuperNet(nn.Module):
    """Shared modules by (position, op key); `path(arch)` is the network of `arch` made of them. A module's
    initial weights come from its name and `seed` alone, so they do not depend on which paths were built
    before it (an estimate through a module no training step used reads the same weights every time)."""

    def __init__(self, space, num_classes: int, seed: int = 0):
        super().__init__()
        self.space, self.num_classes, self.seed = space, num_classes, int(seed)
        self.cells = nn.ModuleDict()

    @staticmethod
    def _name(pos: int, key: str) -> str:
        return f"p{pos}_" + "".join(c if c.isalnum() else "_" for c in key)

    def path(self, arch) -> tuple[nn.Sequential, list[nn.Module]]:
        """(the path network, the modules it created now)."""
        mods, new = [], []
        for pos, op in enumerate(self.space.ops(arch, num_classes=self.num_classes)):
            name = self._name(pos, op.key)
            if name not in self.cells:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
                    self.cells[name] = op.builder()
                new.append(self.cells[name])
            mods.append(self.cells[name])
        return nn.Sequential(*mods), new

    def names_for(self, arch) -> list[str]:
        return [self._name(p, op.key) for p, op in enumerate(self.space.ops(arch, num_classes=self.num_classes))]


@register_estimator("supernet")
class SupernetEstimator(Estimator):
    def __init__(self, space, data="digits", seed: int = 0, steps: int = 400, batch_size: int = 64,
                 lr: float = 0.1, bn_batches: int = 4, validate: int = 6, validate_steps: int = 60,
                 checkpoint: str | None = None, checkpoint_every: int = 50):
        super().__init__(space, data=data or "digits", seed=seed)
        if steps < 1 or batch_size < 1 or lr <= 0 or bn_batches < 0 or validate < 0 or validate_steps < 1:
            raise HwnasError("supernet needs steps >= 1, batch_size >= 1, lr > 0, bn_batches >= 0, "
                             f"validate >= 0, validate_steps >= 1 (got {steps}, {batch_size}, {lr}, {bn_batches}, "
                             f"{validate}, {validate_steps})")
        if not space.ops_are_network:
            raise HwnasError(f"the supernet estimator needs a space whose network is the sequence of its ops "
                             f"(the mnasnet family); {getattr(space, 'name', space)!r} is not")
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)
        self.bn_batches, self.validate = int(bn_batches), int(validate)
        self.validate_steps, self.checkpoint_every = int(validate_steps), max(1, int(checkpoint_every))
        self._checkpoint = Path(checkpoint) if checkpoint else None
        self._split = None
        self._net: SuperNet | None = None
        self._report: dict | None = None
        self.trained_steps_now = 0  # steps trained by this process (a resume trains only the rest)

    def options(self):
        # what the supernet's weights depend on (not the checkpoint's location, not the validation size)
        # (checkpoint_every too: the batch order is reseeded at every checkpoint, so the weights depend on it)
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "bn_batches": self.bn_batches,
                "checkpoint_every": self.checkpoint_every}

    @property
    def split(self):
        if self._split is None:
            self._split = load_split(self.space, self.data, self.seed)
        return self._split

    @property
    def checkpoint_path(self) -> Path:
        return self._checkpoint or (_cache_root() / f"{self.space.name}-{self.config_key()}.safetensors")

    # -- training once ------------------------------------------------------------------------------
    def _batches(self, rng: torch.Generator):
        x, y = self.split.train.tensors
        n = len(y)
        while True:
            perm = torch.randperm(n, generator=rng)
            for i in range(0, n - self.batch_size + 1, self.batch_size):
                idx = perm[i:i + self.batch_size]
                yield x[idx], y[idx]

    def supernet(self) -> SuperNet:
        if self._net is not None:
            return self._net
        path = self.checkpoint_path
        state = None
        if path.exists():
            state = load_tree(path, "supernet", what="supernet checkpoint")
            cache.touch(path)  # a reused checkpoint is the last to be evicted
            if state.get("config") != self.config_key():
                state = None
        net = SuperNet(self.space, self.split.num_classes, self.seed)
        dev = torch.device(self.train_device)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        step = 0
        archs, opt = [], None

        def add_group(params):
            nonlocal opt
            if not params:
                return
            if opt is None:
                opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=4e-5, nesterov=True)
            else:
                opt.add_param_group({"params": params})

        if state is not None:  # recreate the modules and optimizer groups in the order they were made
            for arch in state["archs"]:
                _, new = net.path(tuple(arch))
                archs.append(list(arch))
                add_group([p for m in new for p in m.parameters()])
            net.load_state_dict(state["weights"])
            net.to(dev)  # before the optimizer's state: load_state_dict puts that where its parameters are
            opt.load_state_dict(state["opt"])
            step = state["step"]
            rng.bit_generator.state = state["rng"]
        net.to(dev)
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        batches = self._batches(gen)
        loss_fn = nn.CrossEntropyLoss()
        net.train()
        with progress(self.steps, "supernet training", completed=step,  # from a resumed step on
                      enabled=None if step < self.steps else False) as bar:
            while step < self.steps:
                arch = self.space.sample(rng)
                model, new = net.path(arch)
                if new:
                    archs.append(list(arch))
                    for m in new:
                        m.to(dev)
                    add_group([p for m in new for p in m.parameters()])
                for g in opt.param_groups:
                    g["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
                xb, yb = (t.to(dev) for t in next(batches))
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                step += 1
                self.trained_steps_now += 1
                value = self._finite(loss)
                bar.advance(1, description=f"supernet training: loss {value:.3f}")
                if step % self.checkpoint_every == 0 or step == self.steps:
                    self._save(path, {"config": self.config_key(), "step": step, "archs": archs,
                                      "weights": net.state_dict(), "opt": opt.state_dict(),
                                      "rng": rng.bit_generator.state}, "supernet")
                    # after a resume the batch order restarts from a seed of the step: deterministic per step
                    gen.manual_seed(self.seed * 7919 + step)
                    batches = self._batches(gen)
        net.to("cpu").eval()  # read off on the CPU, where the modules a new path adds are made
        self._net = net
        return net

    def _finite(self, loss) -> float:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise HwnasError(f"supernet training diverged (loss {value}); lower lr (now {self.lr})")
        return value

    @staticmethod
    def _save(path: Path, state: dict, kind: str) -> None:
        """A training checkpoint into the cache (atomically), which is then kept within its bound."""
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tree(path, state, kind)
        cache.evict(keep=path)

    def warm_up(self, log=None) -> None:
        """Train the supernet now (or finish a checkpoint's training), saying so first."""
        left = self.steps_to_train()
        if left and log is not None:
            done = self.steps - left
            log(f"training the supernet first: {left} steps"
                + (f" (resuming at step {done} of {self.steps})" if done else ""))
        self.supernet()

    def steps_to_train(self) -> int:
        """The training steps `supernet()` still has to run: all of them, the rest after a checkpoint's step,
        or 0 once trained."""
        if self._net is not None:
            return 0
        if self.checkpoint_path.exists():
            state = load_tree(self.checkpoint_path, "supernet", what="supernet checkpoint")
            if state.get("config") == self.config_key():
                return max(0, self.steps - int(state["step"]))
        return self.steps

    # -- reading an architecture off it -------------------------------------------------------------
    def estimate(self, arch) -> float:
        from hwnas.data import make_loaders
        from hwnas.train import evaluate
        net = self.supernet()
        model, new = net.path(tuple(arch))
        if new:  # a path through modules no training step used: untrained weights, say so by value
            for m in new:
                del net.cells[[k for k, v in net.cells.items() if v is m][0]]
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            if self.bn_batches:
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.reset_running_stats()
                        m.momentum = None  # cumulative average over the recalibration batches
                model.train()
                gen = torch.Generator().manual_seed(self.seed)
                batches = self._batches(gen)
                with torch.no_grad():
                    for _ in range(self.bn_batches):
                        model(next(batches)[0])
            _, val = make_loaders(self.split, self.batch_size, self.seed)
            return float(evaluate(model, val))
        finally:  # the supernet's own statistics are left as they were
            model.load_state_dict(saved)
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.1

    # -- how far to trust it ------------------------------------------------------------------------
    def spearman(self, n: int | None = None, steps: int | None = None) -> dict:
        """Spearman rank correlation between supernet accuracy and stand-alone short-training accuracy
        on `n` random architectures (seeded)."""
        from scipy.stats import spearmanr
        from hwnas.search.estimators.short_train import ShortTrain
        n = self.validate if n is None else n
        steps = self.validate_steps if steps is None else steps
        if n < 3:
            raise HwnasError(f"a rank correlation needs at least 3 architectures, got {n}")
        rng = np.random.default_rng(self.seed + 1)
        archs, seen = [], set()
        while len(archs) < n:
            a = self.space.sample(rng)
            if a not in seen:
                seen.add(a)
                archs.append(a)
        short = ShortTrain(self.space, data=self.data, seed=self.seed, steps=steps, batch_size=self.batch_size)
        short._split, short.train_device = self.split, self.train_device
        sup = [self.estimate(a) for a in archs]
        alone = [short.estimate(a) for a in archs]
        rho, p = spearmanr(sup, alone)
        rho = float(rho) if np.isfinite(rho) else 0.0
        return {"spearman": rho, "p_value": float(p) if np.isfinite(p) else None, "architectures": n,
                "short_train_steps": steps, "supernet_steps": self.steps,
                "pairs": [{"arch": list(a), "supernet": s, "short_train": t} for a, s, t in zip(archs, sup, alone)]}

    def num_classes(self) -> int:
        return self.split.num_classes

    def info(self) -> dict:
        """The supernet's checkpoint and (computed once, kept beside it) its Spearman report."""
        out = {"checkpoint": str(self.checkpoint_path), "steps": self.steps}
        if self.validate:
            if self._report is None:
                rp = self.checkpoint_path.with_suffix(f".spearman-{self.validate}x{self.validate_steps}.json")
                if rp.exists():
                    self._report = read_json(rp, "supernet rank-correlation report")
                    cache.touch(rp)
                else:
                    self.supernet()
                    self._report = self.spearman()
                    rp.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(rp, self._report)  # a shared cache: another search may read it meanwhile
                    cache.evict(keep=rp)
            out["rank_correlation"] = self._report
        return out
