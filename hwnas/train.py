"""Training and evaluation loops shared by search (short training) and NetAdapt (fine-tuning).

    seed_everything(0)
    result = train(model, train_loader, steps=300, lr=0.05)
    top1 = evaluate(model, val_loader)
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, TrainingDiverged
from hwnas.progress import progress as _progress


TRAIN_DEVICES = ("auto", "cpu", "cuda")  # and cuda:N for one GPU of several


def check_train_device(spec: str) -> str:
    """`spec` if it names a training device (auto, cpu, cuda or cuda:N), else a SettingError of `train_device`."""
    from hwnas.settings import SettingError, literal
    ok = isinstance(spec, str) and (spec in TRAIN_DEVICES or (spec.startswith("cuda:") and spec[5:].isdigit()))
    if not ok:
        raise SettingError("{} is auto, cpu, cuda or cuda:N, not " + literal(repr(spec)), "train_device")
    return spec


def resolve_train_device(spec: str = "auto") -> str:
    """Where training runs: "auto" is the first GPU torch sees, else the CPU; "cuda"/"cuda:N" where there is no
    such GPU is one SettingError (never a quiet fall back to the CPU: the user asked for the GPU)."""
    from hwnas.settings import SettingError
    spec = check_train_device(spec)
    if spec == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        raise SettingError("{} " + spec + ": " + why + " (use auto or cpu)", "train_device")
    index = int(spec[5:]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise SettingError("{} " + spec + f": this machine has {torch.cuda.device_count()} CUDA device(s)",
                           "train_device")
    return spec


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    if p is None:
        p = next(iter(model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; ask cuDNN for deterministic kernels (cheap; CPU kernels used here
    already are). The global `torch.use_deterministic_algorithms` is left alone: it turns some ops into
    errors for every other caller in the process."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def adaptive_gradient_clip_(parameters, clip: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021, NFNets): scale each unit's gradient so that
    ||G_i|| <= clip * max(||W_i||, eps), where a unit is one output row (dim 0) of the weight
    (a conv filter, a Linear row); 1-D parameters (biases, norms) count as one unit."""
    for p in parameters:
        if p.grad is None:
            continue
        w, g = p.detach(), p.grad.detach()
        dims = tuple(range(1, w.ndim)) if w.ndim > 1 else None
        w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True).clamp_min(eps)
        g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True).clamp_min(1e-6)
        max_norm = clip * w_norm
        g.mul_(torch.where(g_norm > max_norm, max_norm / g_norm, torch.ones_like(g_norm)))


def _classifier_params(model: nn.Module) -> set[int]:
    """Parameters of the last Linear layer (AGC leaves the classifier unclipped, as the paper does)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return {id(p) for p in last.parameters()} if last is not None else set()


def train(model: nn.Module, loader, *, steps: int | None = None, epochs: int | None = None, lr: float = 0.05,
          momentum: float = 0.9, weight_decay: float = 4e-5, optimizer: str = "sgd", schedule: str = "cosine",
          label_smoothing: float = 0.0, agc_clip: float | None = None, device: str = "cpu",
          threads: int | None = None, progress: bool = True, description: str = "train",
          progress_bar: bool | None = None, teacher: nn.Module | None = None, distill_weight: float = 0.5,
          temperature: float = 4.0, start_step: int = 0, opt_state: dict | None = None,
          on_checkpoint=None, checkpoint_every: int = 0) -> TrainResult:
    """Train `model` for exactly `steps` optimizer steps (cycling over `loader` as often as needed), or
    `epochs` passes over `loader`; give exactly one of the two. `agc_clip` turns on adaptive gradient
    clipping for every parameter but the last Linear layer's. `threads` calls torch.set_num_threads.
    `progress=False` (or the older `progress_bar=False`) keeps the bar off even on a terminal.
    `device` ("cpu", "cuda", "cuda:N"; see resolve_train_device for "auto") is where the steps run; the model is
    moved there and back to where it was, so a caller exporting or timing it afterwards finds it unchanged.
    With a `teacher` (knowledge distillation, Hinton et al. 2015) the loss is
    (1 − distill_weight)·CE(labels) + distill_weight·T²·KL(teacher ‖ student) of the logits softened by
    T = `temperature`; the teacher runs in eval mode without gradients, on the same device, and goes back too.

    Resuming (hwnas train): `on_checkpoint(step, optimizer_state)` is called every `checkpoint_every` steps and at
    the end; a run restarted with that `start_step` and `opt_state` (and the model's weights of that step) goes on
    where it stopped: the schedule continues from the step, and if the loader's sampler has `set_epoch` (an
    EpochSampler) the batches are those the uninterrupted run would have seen."""
    if progress_bar is not None:
        progress = progress_bar
    if (steps is None) == (epochs is None):
        raise HwnasError("give exactly one of steps and epochs for training")
    per_epoch = len(loader)
    if per_epoch == 0:
        raise HwnasError("the training data loader is empty")
    total = steps if steps is not None else epochs * per_epoch
    if total < 1:
        raise HwnasError(f"training needs at least one step, got {total}")
    if threads is not None:
        torch.set_num_threads(threads)
    if device == "auto":
        device = resolve_train_device(device)
    home = _device_of(model)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        raise HwnasError(f"unknown optimizer {optimizer!r} (sgd or adam)")
    if opt_state is not None:  # a resumed run: the optimizer's state (and base learning rates) of its step
        opt.load_state_dict(opt_state)
    if schedule == "cosine":  # from the step it starts at (0, or a resumed run's)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * (s + start_step) / total)))
    elif schedule == "constant":
        sched = None
    else:
        raise HwnasError(f"unknown schedule {schedule!r} (cosine or constant)")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    clipped = [p for p in params if id(p) not in _classifier_params(model)] if agc_clip else []
    if teacher is not None:
        teacher_home = _device_of(teacher)
        teacher.to(device).eval()
    start = time.perf_counter()
    step, loss_value = start_step, float("nan")
    set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
    epoch, skip = divmod(step, per_epoch)
    with _progress(total, description, completed=step, enabled=None if progress else False) as bar:
        while step < total:
            if set_epoch is not None:
                set_epoch(epoch)
            epoch += 1
            for x, y in loader:
                if skip:  # a resumed run: the batches of this epoch before its step were trained on already
                    skip -= 1
                    continue
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                loss = loss_fn(logits, y)
                if teacher is not None:
                    loss = (1 - distill_weight) * loss + distill_weight * distillation_loss(logits, teacher, x,
                                                                                            temperature)
                loss.backward()
                if agc_clip:
                    adaptive_gradient_clip_(clipped, agc_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                loss_value = float(loss.detach())
                bar.advance()
                if on_checkpoint is not None and checkpoint_every and (step % checkpoint_every == 0 or step == total):
                    on_checkpoint(step, opt.state_dict())
                if step >= total:
                    break
    model.to(home)
    if teacher is not None:
        teacher.to(teacher_home)
    if not math.isfinite(loss_value):
        raise TrainingDiverged(f"training diverged (loss {loss_value}); lower the learning rate (now {lr})")
    return TrainResult(steps=step - start_step, final_loss=loss_value, seconds=time.perf_counter() - start)


class EpochSampler(torch.utils.data.Sampler):
    """A shuffling sampler whose order in epoch e is a function of (seed, e) alone, so a resumed training run can
    see the very batches the uninterrupted one would have (train() calls set_epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def distillation_loss(logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(teacher(x)/T) ‖ softmax(logits/T)), batch mean: the soft-label term of distillation (the T²
    keeps its gradient on the scale of the hard-label term's as T changes)."""
    with torch.no_grad():
        target = torch.log_softmax(teacher(x) / temperature, dim=1)
    student = torch.log_softmax(logits / temperature, dim=1)
    return nn.functional.kl_div(student, target, reduction="batchmean", log_target=True) * temperature ** 2


def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(dim=1) == y).sum())


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: str = "cpu") -> float:
    """Top-1 accuracy in [0, 1], computed on `device` (the model is moved back to where it was after)."""
    if device == "auto":
        device = resolve_train_device(device)
    was_training = model.training
    home = _device_of(model)
    model.to(device).eval()
    correct = total = 0
    for x, y in loader:
        correct += count_correct(model(x.to(device)), y.to(device))
        total += len(y)
    model.to(home)
    model.train(was_training)
    if total == 0:
        raise HwnasError("the evaluation data loader is empty")
    return correct / total
