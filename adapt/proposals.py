"""NetAdapt proposals: one per prunable group, evaluated independently (in a process pool when asked).

A proposal = (the current network, one group, how many channels to remove). Evaluating it prunes the
weakest channels of that group (by its importance criterion, hwnas.adapt.importance: L2 by default),
fine-tunes briefly (short-term; with the unpruned network as a distillation teacher unless turned off),
measures validation accuracy and writes the fine-tuned network to a file;
the parent keeps the best one and deletes the rest.
A worker that dies (segfault, OOM kill) surfaces as an HwnasError naming the proposal — never a hang.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from hwnas.settings import SettingError


@dataclass
class Proposal:
    group: str            # root conv of the group
    channels: int         # channel count before
    new_channels: int     # channel count after
    predicted_ms: float   # LUT-predicted latency of the pruned network
    model_in: str         # path of the current network (hwnas.adapt.modelfile: weights + layer record)
    model_out: str        # where the fine-tuned proposal is written
    input_shape: tuple
    data: dict            # load_dataset arguments
    short_steps: int
    batch_size: int
    lr: float
    seed: int
    threads: int = 0
    base: dict | None = None   # the zoo network the files are pruned from (modelfile.zoo_base)
    template: object = None    # or the unpruned module itself (a network handed in from Python)
    criterion: str = "l2"      # which channels go first (a name of hwnas.adapt.importance)
    train_device: str = "cpu"  # where the short-term fine-tuning runs
    teacher: str | None = None  # the unpruned network file to distil from (None: labels only)


@dataclass
class ProposalResult:
    group: str
    channels: int
    new_channels: int
    predicted_ms: float
    accuracy: float
    model_out: str

    def to_dict(self) -> dict:
        return asdict(self)


_DATA_CACHE: dict = {}


def load_split(data: dict):
    key = tuple(sorted(data.items()))
    if key not in _DATA_CACHE:
        from hwnas.data import load_dataset
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_dataset(**data)
    return _DATA_CACHE[key]


def load_model(path, template=None):
    from hwnas.adapt.modelfile import load_network
    return load_network(path, template)


_TEACHER_CACHE: dict = {}


def load_teacher(path, template=None):
    """The distillation teacher in `path`, read once per process while the file stays the same (every proposal
    of a run distils from the one unpruned network: rebuilding it per proposal only repeats the same I/O)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _TEACHER_CACHE:
        _TEACHER_CACHE.clear()
        _TEACHER_CACHE[key] = load_model(path, template).eval()
    return _TEACHER_CACHE[key]


def save_model(model, path, base: dict | None) -> None:
    """Atomic (a unique temporary name beside it, fsync, rename); no pickle."""
    from hwnas.adapt.modelfile import save_network
    save_network(model, path, base)


def fine_tune(model, data: dict, steps: int, batch_size: int, lr: float, seed: int, description: str,
              show_progress: bool = False, device: str = "cpu", teacher=None):
    """Train `steps` steps (0: evaluate only) on `data`'s training split, distilling from `teacher` (a module)
    when given; returns top-1 on the validation split."""
    from hwnas.data import make_loaders
    from hwnas.train import evaluate, seed_everything, train
    split = load_split(data)
    seed_everything(seed)
    train_loader, val_loader = make_loaders(split, batch_size=batch_size, seed=seed)
    if steps > 0:
        train(model, train_loader, steps=steps, lr=lr, progress_bar=show_progress, description=description,
              device=device, teacher=teacher)
    return evaluate(model, val_loader, device=device)


def evaluate_proposal(p: Proposal) -> ProposalResult:
    import torch
    from hwnas.adapt.groups import build_graph, prune_group
    if p.threads:
        torch.set_num_threads(p.threads)
    model = load_model(p.model_in, p.template)
    graph = build_graph(model, p.input_shape)
    prune_group(model, graph, p.group, p.channels - p.new_channels, p.criterion)
    teacher = load_teacher(p.teacher, p.template) if p.teacher and p.short_steps else None
    acc = fine_tune(model, p.data, p.short_steps, p.batch_size, p.lr, p.seed, f"short-term {p.group}",
                    device=p.train_device, teacher=teacher)
    save_model(model, p.model_out, p.base)
    return ProposalResult(p.group, p.channels, p.new_channels, p.predicted_ms, float(acc), p.model_out)


class ProposalPool:
    """Runs `fn(proposal)` for a batch of proposals: in-process for workers=1, else as free tasks of an
    executor (hwnas.executor: a spawned local process pool of `workers`, or the one given, e.g. Ray).
    A worker that dies is retried `retries` times, then is an HwnasError naming the proposal."""

    def __init__(self, workers: int = 1, fn=evaluate_proposal, executor=None, retries: int = 1):
        if workers < 1:
            raise SettingError(f"{{}} must be >= 1, got {workers}", "workers")
        self.workers, self.fn, self.retries = workers, fn, retries
        self._given = executor
        self._own = None

    def map(self, proposals: list[Proposal], on_done=None) -> list[ProposalResult]:
        """The results in the order of `proposals`; `on_done(result)` is called as each one finishes (in
        whatever order they finish: a progress bar)."""
        from hwnas.executor import LocalExecutor, map_tasks
        done = on_done or (lambda _result: None)
        if self._given is None and (self.workers == 1 or len(proposals) <= 1):
            out = []
            for p in proposals:
                out.append(self.fn(p))
                done(out[-1])
            return out
        if self._given is None and self._own is None:
            self._own = LocalExecutor(self.workers)
        ex = self._given or self._own
        for p in proposals:
            p.threads = max(1, (os.cpu_count() or 1) // max(1, ex.capacity))
        results = {}
        for i, r in map_tasks(ex, self.fn, proposals, retries=self.retries, label=lambda p: p.group):
            results[i] = r
            done(r)
        return [results[i] for i in range(len(proposals))]

    def close(self, broken: bool = False) -> None:
        if self._own is not None:
            self._own.close(cancel=broken)
            self._own = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(broken=exc[0] is not None)
