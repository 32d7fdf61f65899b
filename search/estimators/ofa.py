"""A once-for-all supernet as an accuracy estimator (Cai et al. 2020, trained by the sandwich rule with in-place
distillation of Yu et al. 2020, BigNAS): one elastic network (search/elastic.py) of which every architecture of a
MnasNet space is a slice, trained once; an architecture's accuracy is then read off its slice.

Each training step, on one batch:
  1. the largest architecture, on the labels (cross-entropy);
  2. the smallest and `random_paths` random architectures, each on the largest's softened output of the same
     batch (in-place distillation; `distill=False` trains them on the labels too);
  gradients of all paths summed, clipped to norm 5, one SGD step (cosine learning rate from `lr`, no weight
  decay on BN and biases). The learning rate is 0.02: at 0.1 (the SPOS supernet's) the mnasnet space's largest
  network alone diverged at 32x32, in the supernet and trained stand-alone alike; at 0.02 its loss fell from 2.3 to
  0.27 in 60 steps.
The largest and smallest bound the space, so every width, kernel, expansion and depth is trained each step;
distillation from the largest gives the small paths a target they can follow (BigNAS found it needed for
sub-networks to rank as they do trained alone).

Reading an architecture: its slice is copied out into the network `space.build(arch)` makes (the very network
a table times and a search exports), its BatchNorm statistics recalibrated on `bn_batches` training batches, and
its top-1 measured on the validation split. `trained_model(arch)` is that network, so a search exports the
supernet's weights for its best architecture.

Training runs at the estimator space's input size: a search gives it the space at `--train-size` (32 for mnasnet
on this machine), while the latency table stays at the deployment size (224). The checkpoint is kept in the cache
(<cache root>/supernet/ofa-<space>-<config key>.safetensors), saved every `checkpoint_every` steps: a kill
loses at most those steps, and later searches with the same settings reuse it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas import cache
from hwnas.errors import HwnasError
from hwnas.progress import progress
from hwnas.search.estimators.base import register_estimator
from hwnas.search.estimators.supernet import SupernetEstimator, _cache_root
from hwnas.tensorfile import load_tree

KIND = "ofa-supernet"
CLIP = 5.0  # the summed gradient of the sandwich's paths, clipped to this norm


def recalibrate_bn(model: nn.Module, batches, count: int) -> None:
    """BatchNorm running statistics of `model` replaced by their average over `count` batches (train-mode
    forward passes without gradients); the model is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(count):
            model(next(batches)[0])
    for m in bns:
        m.momentum = 0.1
    model.eval()


@register_estimator("ofa")
class OfaEstimator(SupernetEstimator):
    weights_note = "the supernet's slice for this architecture (BN recalibrated); train it stand-alone for more"

    def __init__(self, space, data="digits", seed: int = 0, steps: int = 1200, batch_size: int = 64,
                 lr: float = 0.02, bn_batches: int = 8, random_paths: int = 2, distill: bool = True,
                 validate: int = 0, validate_steps: int = 300, checkpoint: str | None = None,
                 checkpoint_every: int = 25):
        if not hasattr(space, "config") or not hasattr(space.config, "blocks"):
            raise HwnasError(f"the ofa estimator needs a MnasNet-family space; {getattr(space, 'name', space)!r} "
                             f"is not one")
        if random_paths < 0:
            raise HwnasError(f"ofa needs random_paths >= 0, got {random_paths}")
        super().__init__(space, data=data, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
                         bn_batches=bn_batches, validate=validate, validate_steps=validate_steps,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        self.random_paths, self.distill = int(random_paths), bool(distill)

    def options(self):
        return {**super().options(), "random_paths": self.random_paths, "distill": self.distill}

    @property
    def checkpoint_path(self) -> Path:
        return self._checkpoint or (_cache_root() / f"ofa-{self.space.name}-{self.config_key()}.safetensors")

    def _saved_state(self):
        path = self.checkpoint_path
        if not path.exists():
            return None
        state = load_tree(path, KIND, what="once-for-all supernet checkpoint")
        return state if state.get("config") == self.config_key() else None

    def steps_to_train(self) -> int:
        if self._net is not None:
            return 0
        state = self._saved_state()
        return self.steps if state is None else max(0, self.steps - int(state["step"]))

    # -- training once ------------------------------------------------------------------------------
    def _optimizer(self, net):
        decay = [p for n, p in net.named_parameters() if p.ndim > 1]
        rest = [p for n, p in net.named_parameters() if p.ndim <= 1]
        return torch.optim.SGD([{"params": decay, "weight_decay": 4e-5}, {"params": rest, "weight_decay": 0.0}],
                               lr=self.lr, momentum=0.9, nesterov=True)

    def supernet(self):
        from hwnas.search.elastic import ElasticMnasNet
        if self._net is not None:
            return self._net
        path = self.checkpoint_path
        torch.manual_seed(self.seed)
        net = ElasticMnasNet(self.space, self.split.num_classes)
        opt = self._optimizer(net)
        rng = np.random.default_rng(self.seed)
        step = 0
        state = self._saved_state()
        if state is not None:
            cache.touch(path)  # a reused checkpoint is the last to be evicted
            net.load_state_dict(state["weights"])
            step = int(state["step"])
            rng.bit_generator.state = state["rng"]
        dev = torch.device(self.train_device)
        net.to(dev)
        if state is not None:  # the optimizer's state follows its parameters
            opt.load_state_dict(state["opt"])
        largest, smallest = net.largest(), net.smallest()
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        batches = self._batches(gen)
        net.train()
        with progress(self.steps, "once-for-all supernet training", completed=step,
                      enabled=None if step < self.steps else False) as bar:
            while step < self.steps:
                lr = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
                for g in opt.param_groups:
                    g["lr"] = lr
                xb, yb = (t.to(dev) for t in next(batches))
                opt.zero_grad(set_to_none=True)
                big = net(xb, largest)
                loss_big = F.cross_entropy(big, yb)
                loss_big.backward()
                soft = torch.log_softmax(big.detach(), dim=1)
                paths = [smallest] + [self.space.sample(rng) for _ in range(self.random_paths)]
                loss_small = 0.0
                for arch in paths:
                    out = net(xb, arch)
                    loss = (F.kl_div(torch.log_softmax(out, dim=1), soft, reduction="batchmean", log_target=True)
                            if self.distill else F.cross_entropy(out, yb))
                    loss.backward()
                    loss_small = float(loss.detach())
                nn.utils.clip_grad_norm_(net.parameters(), CLIP)
                opt.step()
                step += 1
                self.trained_steps_now += 1
                value = self._finite(loss_big)
                bar.advance(1, description=f"ofa supernet: largest loss {value:.3f}, last path {loss_small:.3f}")
                if step % self.checkpoint_every == 0 or step == self.steps:
                    self._save(path, {"config": self.config_key(), "step": step, "weights": net.state_dict(),
                                      "opt": opt.state_dict(), "rng": rng.bit_generator.state}, KIND)
                    gen.manual_seed(self.seed * 7919 + step)  # the batch order after a resume is that of the step
                    batches = self._batches(gen)
        net.to("cpu").eval()
        self._net = net
        return net

    # -- reading an architecture off it -------------------------------------------------------------
    def trained_model(self, arch):
        """The network of `arch` with the supernet's weights, BatchNorm recalibrated on training batches."""
        model = self.supernet().extract(tuple(arch))
        if self.bn_batches:
            recalibrate_bn(model, self._batches(torch.Generator().manual_seed(self.seed)), self.bn_batches)
        return model.eval()

    trains = True

    def estimate(self, arch) -> float:
        from hwnas.data import make_loaders
        from hwnas.train import evaluate
        _, val = make_loaders(self.split, 256, self.seed)
        return float(evaluate(self.trained_model(arch), val))
