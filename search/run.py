"""The search runner: ask the strategy, estimate accuracy, predict latency from the table, compute the
MnasNet reward, tell the strategy - and record every step so that a run killed at any point (kill -9)
resumes with no sample lost or repeated.

Run directory:
  config.json            what was asked (a resume must ask the same)
  samples.jsonl          one line per evaluated architecture: i, arch, describe, accuracy, latency_ms, reward
                         (appended and fsynced before the strategy learns from it)
  accuracy_cache.jsonl   estimator values per architecture (a resumed run never re-estimates)
  strategy.ckpt          the strategy's state (controller, optimizer, RNGs, population) after sample n-1,
                         written atomically; on resume it is loaded and the samples after it replayed
  pareto.json / pareto.png, summary.json (top-k measured on the device next to predicted), best.onnx
  (and best.tflite on TFLite devices)

Exactly once: sample i is appended (one write, fsync) only after its evaluation; the checkpoint records
how many samples it covers. On resume a torn last line is cut off, the checkpoint restored, and the
strategy replays the recorded samples after it (ask must reproduce each recorded architecture; its
recorded reward is told back), then the search continues at sample n.

This module is the loop; the results (Pareto front, re-measured top-k, export, summary) are
search/results.py, the assembly by names (`search()`, as the CLI calls it) search/api.py.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from hwnas.errors import HwnasError
from hwnas.settings import SettingError, literal
from hwnas.rundir import (RunLock, append_jsonl, atomic_write_bytes, atomic_write_json, check_same_config,
                          prepare_dir, read_json, read_jsonl)
from hwnas.search.results import Results, SearchResult
from hwnas.search.reward import Reward
from hwnas.tensorfile import dumps_tree, load_tree

SAMPLES = "samples.jsonl"
CKPT = "strategy.ckpt"
CONFIG = "config.json"
CACHE = "accuracy_cache.jsonl"
# settings a resume may change: how many samples in all, how many are re-measured at the end
RESUMABLE = ("samples", "top_k", "out", "resume")


def _quiet(_msg: str) -> None:
    pass


def read_samples(path: Path, repair: bool = False) -> list[dict]:
    """The complete lines of samples.jsonl, numbered 0, 1, ... in order. A torn last line (a kill mid-write) is
    ignored and, with repair=True, cut off the file so the next append starts on a clean line; damage anywhere
    else is an error naming the line (hwnas.rundir.read_jsonl)."""
    records = read_jsonl(path, repair=repair)
    for n, rec in enumerate(records):
        if not isinstance(rec, dict) or rec.get("i") != n:
            got = rec.get("i") if isinstance(rec, dict) else type(rec).__name__
            raise HwnasError(f"{path}: record {n + 1} is sample {got}, expected {n}; the file was edited or "
                             f"mixed with another run")
    return records


class SearchRun(Results):
    """One search over objects (space, latency predictor, strategy, estimator, reward, device). The
    name-based entry point is `search()`; tests and scripts may build a SearchRun directly."""

    def __init__(self, out, space, predictor, strategy, estimator, reward: Reward, samples: int,
                 device=None, top_k: int = 5, config: dict | None = None, resume: bool = False,
                 protocol=None, log: Callable[[str], None] = _quiet, progress=None,
                 after_sample: Callable[[int], None] | None = None, checkpoint_every: int = 1, executor=None):
        if samples < 1:
            raise HwnasError(f"the number of samples must be at least 1, got {samples}")
        if top_k < 1:
            raise HwnasError(f"top-k must be at least 1, got {top_k}")
        self.out = Path(out)
        self.space, self.predictor, self.strategy = space, predictor, strategy
        self.estimator, self.reward = estimator, reward
        self.samples, self.device, self.top_k = int(samples), device, int(top_k)
        self.config = dict(config or {})
        self.resume = resume
        from hwnas.latency.protocol import NETWORK
        self.protocol = protocol or NETWORK  # how the top-k are measured on the device
        self.log = log
        self.progress = progress
        self.after_sample = after_sample
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.replay_mismatches = 0
        self.executor = executor  # hwnas.executor: accuracy estimates of a batch run there in parallel
        # strategies that rank candidates by predicted reward
        strategy.bind(latency=predictor, reward=reward, estimator=estimator)

    # -- set-up -------------------------------------------------------------------------------------
    def check_target(self) -> None:
        fastest = float(self.predictor.min_latency())
        if fastest > self.reward.target_ms:
            raise HwnasError(
                f"target {self.reward.target_ms:g} ms is unreachable: the fastest network the space "
                f"{getattr(self.space, 'name', '?')!r} can build takes {fastest:.3g} ms by the latency table; "
                f"choose a target of at least {fastest:.3g} ms")

    def _prepare_dir(self) -> list[dict]:
        cfg_path, samples_path = self.out / CONFIG, self.out / SAMPLES
        has_samples = samples_path.exists() and samples_path.stat().st_size > 0
        if has_samples and not self.resume:
            raise SettingError(f"{literal(self.out)} already holds a search ({SAMPLES}); pass {{}} to continue it "
                               f"or choose another {{}}", "resume", "out")
        if self.resume and cfg_path.exists():
            check_same_config(read_json(cfg_path, "search config"), self.config, self.out, "search settings",
                              ignore=RESUMABLE)
        atomic_write_json(cfg_path, self.config)
        return read_samples(samples_path, repair=True)

    def _restore(self, records: list[dict]) -> None:
        start = 0
        ckpt = self.out / CKPT
        if records and ckpt.exists():
            state = load_tree(ckpt, "search-strategy", what="strategy checkpoint")
            if state["n"] <= len(records):
                self.strategy.load_state_dict(state["strategy"])
                start = state["n"]
        for rec in records[start:]:
            arch = self.strategy.ask()
            if tuple(arch) != tuple(rec["arch"]):
                self.replay_mismatches += 1
            self.strategy.tell(tuple(rec["arch"]), rec["reward"], accuracy=rec.get("accuracy"),
                               latency_ms=rec.get("latency_ms"))
        if records:
            self.log(f"resumed {self.out}: {len(records)} samples recorded "
                     f"({len(records) - start} replayed after the checkpoint)")
            self._checkpoint(len(records))

    def _checkpoint(self, n: int) -> None:
        atomic_write_bytes(self.out / CKPT, dumps_tree({"n": n, "strategy": self.strategy.state_dict()},
                                                       "search-strategy"))

    # -- the loop -----------------------------------------------------------------------------------
    def evaluate(self, arch, acc: float | None = None) -> dict:
        acc = float(self.estimator.estimate(arch)) if acc is None else acc
        lat = float(self.predictor.predict(arch))
        rec = {"arch": list(arch), "describe": self.space.describe(arch), "accuracy": acc,
               "latency_ms": lat, "reward": self.reward(acc, lat)}
        if getattr(self.predictor, "from_kernels", None) is not None:  # some ops predicted, not timed: say how many
            rec["kernel_ops"] = int(self.predictor.kernel_ops([arch])[0])
        return rec

    def run(self) -> SearchResult:
        self.check_target()
        prepare_dir(self.out)
        with RunLock(self.out, "search"):  # one writer: a second search on this --out is refused, not mixed in
            return self._run()

    def _run(self) -> SearchResult:
        records = self._prepare_dir()
        self._restore(records)
        if len(records) < self.samples:
            # an estimator's one-off work (the supernet's training) before the bar, whose ETA then counts search
            # steps only
            self.estimator.warm_up(self.log)
        samples_path = self.out / SAMPLES
        ctx = (self.progress(self.samples, len(records)) if self.progress and len(records) < self.samples
               else contextlib.nullcontext(None))
        batch = self.executor.capacity if self.executor is not None else 1
        with ctx as bar:
            i = len(records)
            while i < self.samples:
                # With an executor of capacity k: ask k architectures, estimate them in parallel, then
                # record and tell them in order (samples.jsonl stays in order, each sample once).
                archs = [tuple(self.space.validate(self.strategy.ask())) for _ in range(min(batch, self.samples - i))]
                accs = (self.estimator.estimate_many(archs, self.executor, self.log) if len(archs) > 1
                        else [None])
                for arch, acc in zip(archs, accs):
                    self._record(i, arch, acc, records, samples_path, bar)
                    i += 1
        return self.finish(records)

    def _record(self, i, arch, acc, records, samples_path, bar) -> None:
        """Sample i: append it to samples.jsonl, tell the strategy, checkpoint."""
        rec = {"i": i, **self.evaluate(arch, acc)}
        append_jsonl(samples_path, rec)
        records.append(rec)
        self.strategy.tell(arch, rec["reward"], accuracy=rec["accuracy"], latency_ms=rec["latency_ms"])
        if (i + 1) % self.checkpoint_every == 0 or i + 1 == self.samples:
            self._checkpoint(i + 1)
        if bar is not None:
            bar.advance(1, description=f"search: best reward {max(r['reward'] for r in records):.4f}")
        if self.after_sample:
            self.after_sample(i)
