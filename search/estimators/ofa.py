"""A once-for-all supernet as an accuracy estimator (Cai et al. 2020): one elastic network (search/elastic.py) of
which every architecture of a MnasNet space is a slice, trained once; an architecture's accuracy is then read off
its slice. Two training schedules (`schedule`):

sandwich (Yu et al. 2020, BigNAS), each step on one batch:
  1. the largest architecture, on the labels (cross-entropy);
  2. the smallest and `random_paths` random architectures, each on the largest's softened output of the same
     batch (in-place distillation; `distill=False` trains them on the labels too).
blockwise (see `Blockwise`): the largest alone for a `teacher` share of the steps, then frozen as the teacher;
  then random architectures learn, block by block, to give the teacher's features (block-wise distillation,
  DNA / DONNA); then whole, on the labels plus the teacher's output.
Either way the gradients of a step's paths are summed, clipped to norm 5, one SGD step (cosine learning rate
from `lr`, no weight decay on BN and biases). The default learning rate is the schedule's (LR): 0.02 for sandwich
(at 0.1, the SPOS supernet's, the mnasnet space's largest network alone diverged at 32x32; at 0.02 its loss fell
from 2.3 to 0.27 in 60 steps), 0.05 for blockwise (with the clipping it trains the largest: loss 1.0 after 40
steps; on mnasnet-tiny 0.02 left the teacher and the random architectures far weaker).

Reading an architecture: its slice is copied out into the network `space.build(arch)` makes (the very network
a table times and a search exports), its BatchNorm statistics recalibrated on `bn_batches` training batches, and
its top-1 measured on the validation split. `trained_model(arch)` is that network, so a search exports the
supernet's weights for its best architecture. With `finetune=K` the slice is first trained K steps on the labels
(OFA's and few-shot NAS's remedy for a supernet that ranks poorly); measured on distorted digits
(bench/supernet.py, README) it made the ranking worse, not better (Spearman 0.23 read as is, 0.05 / -0.07 / 0.02
after 25 / 50 / 150 steps, where the same steps from scratch rank at 0.49 / 0.86 / 0.93).

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
from hwnas.search.estimators.base import key_of, register_estimator
from hwnas.search.estimators.supernet import SupernetEstimator, _cache_root
from hwnas.tensorfile import load_tree

KIND = "ofa-supernet"
CLIP = 5.0  # the summed gradient of a step's paths, clipped to this norm
SCHEDULES = ("sandwich", "blockwise")
LR = {"sandwich": 0.02, "blockwise": 0.05}  # each schedule's default learning rate, as measured (module doc)
# what an estimate reads off the validation split: top-1, or exp(-mean cross-entropy), the geometric mean of the
# probability given to the right class (finer than top-1 on a small split: 359 digits, one image is 0.28 points)
METRICS = ("top1", "likelihood")
BLOCKWISE_SHARE = 0.5  # of the steps after the teacher's, block-wise; the rest end-to-end


def flag(name: str, value) -> bool:
    """A yes/no option, given as a bool or as `-E name=true|false|1|0` (text or a number)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise HwnasError(f"ofa's {name} is true or false, got {value!r}")


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


class Blockwise:
    """The `blockwise` schedule, for spaces whose layers choose between ops with weights of their own:
      1. teacher: the largest architecture alone, on the labels, for the first `teacher_steps`; then frozen
         (a copy, `teacher`);
      2. block-wise distillation (DNA, Li et al. 2020; DONNA, Moons et al. 2021): each step, `random_paths`
         random architectures; each of their blocks gets the teacher's features at the block's input (its
         first channels) and learns to give the teacher's features at its output (mean squared error);
      3. end-to-end: `random_paths` random architectures whole, on the labels plus the teacher's output (KD).
    Why: in the sandwich rule a block's next block sees the output of whichever op the path chose there;
    ops with weights of their own (a regular conv, expansion 1 against 3/6) give unrelated features, and a
    shared next block cannot serve them all. Measured on mnasnet-tiny at 32x32 (3 random paths a step, 100
    steps): paths using one op throughout fall from loss 2.32 to 0.76, paths drawing dwconv or mbconv6 per
    block stay at 2.20. Block-wise distillation makes every op of a block give the same (the teacher's)
    features, so any combination composes; 150 such steps (then 100 end-to-end) lifted 10 random
    architectures from chance (0.11-0.21 under the sandwich rule) to 0.53-0.80."""

    stages = ("teacher", "block-wise", "end-to-end")

    def __init__(self, net, teacher_steps: int, steps: int, random_paths: int, normalise: bool = False):
        self.net, self.space, self.normalise = net, net.space, bool(normalise)
        self.big = net.largest()
        self.teacher_steps, self.steps = int(teacher_steps), int(steps)
        self.random_paths = max(1, int(random_paths))
        self.blockwise_end = self.teacher_steps + round(BLOCKWISE_SHARE * (self.steps - self.teacher_steps))
        self.teacher = None

    def stage(self, step: int) -> int:
        return 0 if step < self.teacher_steps else (1 if step < self.blockwise_end else 2)

    def describe(self, step: int) -> str:
        return self.stages[self.stage(min(step, self.steps - 1))]

    def freeze_teacher(self, weights=None):
        """The teacher: a frozen copy of the supernet now (or of `weights`, a saved teacher)."""
        from hwnas.search.elastic import ElasticMnasNet
        teacher = ElasticMnasNet(self.space, self.net.num_classes)
        teacher.load_state_dict(weights if weights is not None else self.net.state_dict())
        teacher.to(next(self.net.parameters()).device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher

    def step(self, step: int, xb, yb, rng):
        """Backward of this step's paths; (their mean loss, the last path's)."""
        stage = self.stage(step)
        if stage == 0:
            loss = F.cross_entropy(self.net(xb, self.big), yb)
            loss.backward()
            return loss, float(loss.detach())
        with torch.no_grad():
            if stage == 1:
                feats = self.teacher.features(xb, self.big)
            else:
                soft = torch.log_softmax(self.teacher(xb, self.big), dim=1)
        total = 0.0
        for _ in range(self.random_paths):
            arch = self.space.sample(rng)
            if stage == 1:
                loss = self.blockwise_loss(arch, feats)
            else:
                out = self.net(xb, arch)
                loss = F.cross_entropy(out, yb) + F.kl_div(torch.log_softmax(out, dim=1), soft,
                                                           reduction="batchmean", log_target=True)
            loss.backward()
            total = total + loss.detach()
        return total / self.random_paths, float(loss.detach())

    def blockwise_loss(self, arch, feats):
        """Sum over blocks of the squared error between the block of `arch` fed the teacher's input features
        and the teacher's output features (both their first channels, as a narrower width is); with
        `normalise`, each block's error is divided by the variance of the teacher's features there (DNA's
        normalisation: later blocks, sums of residuals, do not outweigh the first)."""
        loss = 0.0
        settings = self.net.settings(arch)
        cin = feats[0].shape[1]
        for b, setting in enumerate(settings):
            out = self.net.run_block(b, feats[b][:, :cin], setting)
            want = feats[b + 1][:, :out.shape[1]]
            err = F.mse_loss(out, want)
            loss = loss + (err / want.var().clamp_min(1e-6) if self.normalise else err)
            cin = out.shape[1]
        return loss


@register_estimator("ofa")
class OfaEstimator(SupernetEstimator):
    weights_note = "the supernet's slice for this architecture (BN recalibrated); train it stand-alone for more"

    def __init__(self, space, data="digits", seed: int = 0, steps: int = 1500, batch_size: int = 64,
                 lr: float | None = None, bn_batches: int = 8, random_paths: int = 2, distill: bool = True,
                 schedule: str = "blockwise", teacher: float = 0.15, metric: str = "top1", normalise: bool = False,
                 validate: int = 0, validate_steps: int = 300, checkpoint: str | None = None,
                 checkpoint_every: int = 25, finetune: int = 0, finetune_lr: float = 0.01):
        if not hasattr(space, "config") or not hasattr(space.config, "blocks"):
            raise HwnasError(f"the ofa estimator needs a MnasNet-family space; {getattr(space, 'name', space)!r} "
                             f"is not one")
        if random_paths < 0:
            raise HwnasError(f"ofa needs random_paths >= 0, got {random_paths}")
        if schedule not in SCHEDULES:
            raise HwnasError(f"ofa's schedule is one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if metric not in METRICS:
            raise HwnasError(f"ofa's metric is one of {', '.join(METRICS)}, got {metric!r}")
        lr = LR[schedule] if lr is None else lr
        super().__init__(space, data=data, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
                         bn_batches=bn_batches, validate=validate, validate_steps=validate_steps,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        if not 0 < teacher < 1:
            raise HwnasError(f"ofa's teacher share of the steps is between 0 and 1, got {teacher}")
        self.random_paths, self.distill = int(random_paths), flag("distill", distill)
        self.schedule, self.teacher, self.metric = schedule, float(teacher), metric
        self.normalise = flag("normalise", normalise)
        self.is_accuracy = metric == "top1"  # the likelihood is not a top-1: plots and summaries say "score"
        self.teacher_steps = max(1, round(self.teacher * self.steps)) if schedule == "blockwise" else 0
        if int(finetune) < 0 or float(finetune_lr) <= 0:
            raise HwnasError(f"ofa needs finetune >= 0 steps and finetune_lr > 0 (got {finetune}, {finetune_lr})")
        self.finetune, self.finetune_lr = int(finetune), float(finetune_lr)

    def options(self):
        extra = {"schedule": self.schedule, "teacher": self.teacher} if self.schedule != "sandwich" else {}
        if self.normalise and self.schedule == "blockwise":
            extra["normalise"] = True
        # how an architecture is read: in the estimates' key, not in the weights' (weights_key)
        extra.update(finetune=self.finetune, **({"finetune_lr": self.finetune_lr} if self.finetune else {}))
        return {**super().options(), "random_paths": self.random_paths, "distill": self.distill, **extra}

    @property
    def checkpoint_path(self) -> Path:
        return self._checkpoint or (_cache_root() / f"ofa-{self.space.name}-{self.weights_key()}.safetensors")

    def config(self):
        extra = {"metric": self.metric} if self.metric != "top1" else {}
        config = {**super().config(), **extra}
        if not self.finetune:  # read as before fine-tuning existed: earlier estimates keep their key
            config.pop("finetune")
        return config

    def weights_key(self) -> str:
        """What the supernet's weights depend on: the config without how an architecture is read off it (the
        metric, the fine-tune)."""
        config = super().config()
        for k in ("finetune", "finetune_lr"):
            config.pop(k, None)
        return key_of(config)

    def _saved_state(self):
        path = self.checkpoint_path
        if not path.exists():
            return None
        state = load_tree(path, KIND, what="once-for-all supernet checkpoint")
        return state if state.get("config") == self.weights_key() else None

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
        step, teacher = 0, None
        state = self._saved_state()
        if state is not None:
            cache.touch(path)  # a reused checkpoint is the last to be evicted
            net.load_state_dict(state["weights"])
            step = int(state["step"])
            rng.bit_generator.state = state["rng"]
            teacher = state.get("teacher")
        dev = torch.device(self.train_device)
        net.to(dev)
        if state is not None:  # the optimizer's state follows its parameters
            opt.load_state_dict(state["opt"])
        plan = (Blockwise(net, self.teacher_steps, self.steps, self.random_paths, self.normalise)
                if self.schedule == "blockwise" else None)
        if plan is not None and teacher is not None:
            plan.freeze_teacher(teacher)
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        batches = self._batches(gen)
        net.train()
        with progress(self.steps, "once-for-all supernet training", completed=step,
                      enabled=None if step < self.steps else False) as bar:
            while step < self.steps:
                lr = self._lr(step)
                for g in opt.param_groups:
                    g["lr"] = lr
                xb, yb = (t.to(dev) for t in next(batches))
                opt.zero_grad(set_to_none=True)
                if plan is None:
                    loss_big, loss_small = self._sandwich_step(net, xb, yb, rng)
                else:
                    loss_big, loss_small = plan.step(step, xb, yb, rng)
                nn.utils.clip_grad_norm_(net.parameters(), CLIP)
                opt.step()
                step += 1
                self.trained_steps_now += 1
                value = self._finite(loss_big)
                bar.advance(1, description=f"ofa supernet: {plan.describe(step) if plan else 'largest'} loss "
                                           f"{value:.3f}, last path {loss_small:.3f}")
                if plan is not None and step == self.teacher_steps:
                    plan.freeze_teacher()
                    teacher = plan.teacher.state_dict()
                if step % self.checkpoint_every == 0 or step == self.steps:
                    saved = {"config": self.weights_key(), "step": step, "weights": net.state_dict(),
                             "opt": opt.state_dict(), "rng": rng.bit_generator.state}
                    if teacher is not None:
                        saved["teacher"] = teacher
                    self._save(path, saved, KIND)
                    gen.manual_seed(self.seed * 7919 + step)  # the batch order after a resume is that of the step
                    batches = self._batches(gen)
        net.to("cpu").eval()
        self._net = net
        return net

    def _lr(self, step: int) -> float:
        """Cosine from `lr`: over all steps (sandwich); over the teacher's steps, then again over the rest
        (blockwise)."""
        if self.schedule == "blockwise":
            lo, hi = (0, self.teacher_steps) if step < self.teacher_steps else (self.teacher_steps, self.steps)
        else:
            lo, hi = 0, self.steps
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - lo) / max(1, hi - lo)))

    def _sandwich_step(self, net, xb, yb, rng):
        """Backward of the largest on the labels, then of the smallest and the random paths on its output;
        (the largest's loss, the last path's)."""
        largest, smallest = net.largest(), net.smallest()
        big = net(xb, largest)
        loss_big = F.cross_entropy(big, yb)
        loss_big.backward()
        soft = torch.log_softmax(big.detach(), dim=1)
        loss_small = 0.0
        for arch in [smallest] + [self.space.sample(rng) for _ in range(self.random_paths)]:
            out = net(xb, arch)
            loss = (F.kl_div(torch.log_softmax(out, dim=1), soft, reduction="batchmean", log_target=True)
                    if self.distill else F.cross_entropy(out, yb))
            loss.backward()
            loss_small = float(loss.detach())
        return loss_big, loss_small

    # -- reading an architecture off it -------------------------------------------------------------
    def trained_model(self, arch):
        """The network of `arch` with the supernet's weights (then `finetune` steps on the labels, from the
        seed's batch order, cosine from `finetune_lr`), BatchNorm recalibrated on training batches."""
        model = self.supernet().extract(tuple(arch))
        if self.finetune:
            from hwnas.data import make_loaders
            from hwnas.train import seed_everything, train
            seed_everything(self.seed)
            loader, _ = make_loaders(self.split, self.batch_size, self.seed)
            train(model, loader, steps=self.finetune, lr=self.finetune_lr, progress=False, device=self.train_device)
        if self.bn_batches:
            recalibrate_bn(model, self._batches(torch.Generator().manual_seed(self.seed)), self.bn_batches)
        return model.eval()

    trains = True

    def estimate(self, arch) -> float:
        from hwnas.data import make_loaders
        from hwnas.train import evaluate
        _, val = make_loaders(self.split, 256, self.seed)
        model = self.trained_model(arch)
        if self.metric == "top1":
            return float(evaluate(model, val))
        with torch.no_grad():
            losses = [F.cross_entropy(model(x), y, reduction="sum") for x, y in val]
        return float(math.exp(-float(sum(losses)) / len(self.split.val.tensors[1])))
