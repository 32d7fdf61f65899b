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
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from hwnas.errors import HwnasError
from hwnas.latency.verdict import against_target, noise_pct
from hwnas.search.pareto import hypervolume, pareto_front, plot_pareto
from hwnas.search.reward import Reward
from hwnas.rundir import (RunLock, append_jsonl, atomic_write_bytes, atomic_write_json, check_same_config,
                           prepare_dir, read_json, read_jsonl)
from hwnas.tensorfile import dumps_tree, load_tree

SAMPLES = "samples.jsonl"
CKPT = "strategy.ckpt"
CONFIG = "config.json"
CACHE = "accuracy_cache.jsonl"
# settings a resume may change: how many samples in all, how many are re-measured at the end
RESUMABLE = ("samples", "top_k", "out", "resume")
WIDEN = 3  # a hard target none of the re-measured top-k meets: measure up to 3 more k by predicted reward


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


@dataclass
class SearchResult:
    out: Path
    samples: list[dict]
    pareto: list[dict]
    summary: dict = field(default_factory=dict)

    @property
    def best(self) -> dict | None:
        return self.summary.get("best")


class SearchRun:
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
        bind = getattr(strategy, "bind", None)
        if bind is not None:  # strategies that rank candidates by predicted reward (progressive)
            bind(latency=predictor, reward=reward)

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
            raise HwnasError(f"{self.out} already holds a search ({SAMPLES}); pass --resume to continue it "
                             f"or choose another --out")
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
        return {"arch": list(arch), "describe": self.space.describe(arch), "accuracy": acc,
                "latency_ms": lat, "reward": self.reward(acc, lat)}

    def run(self) -> SearchResult:
        self.check_target()
        prepare_dir(self.out)
        with RunLock(self.out, "search"):  # one writer: a second search on this --out is refused, not mixed in
            return self._run()

    def _run(self) -> SearchResult:
        records = self._prepare_dir()
        self._restore(records)
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
                accs = self._estimate_batch(archs) if len(archs) > 1 else [None]
                for arch, acc in zip(archs, accs):
                    self._record(i, arch, acc, records, samples_path, bar)
                    i += 1
        return self.finish(records)

    def _estimate_batch(self, archs: list[tuple]) -> list[float]:
        """Estimates of `archs` computed as free tasks of the executor; the estimator's cache (if any) is
        consulted first and filled here, in this process."""
        from hwnas.executor import map_tasks
        cache = getattr(self.estimator, "values", None)
        inner = getattr(self.estimator, "estimator", self.estimator)
        todo = sorted({a for a in archs if cache is None or a not in cache})
        values = {}
        threads = max(1, (os.cpu_count() or 1) // max(1, self.executor.capacity))
        for j, v in map_tasks(self.executor, partial(_estimate, inner, threads), todo, log=self.log):
            values[todo[j]] = v
        if cache is None:
            return [values[a] for a in archs]
        cached = self.estimator
        cached.estimator = _Known(values, inner)  # the cache records each computed value once, as usual
        try:
            return [float(cached.estimate(a)) for a in archs]
        finally:
            cached.estimator = inner

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

    # -- results ------------------------------------------------------------------------------------
    def finish(self, records: list[dict]) -> SearchResult:
        records = records[: self.samples] if len(records) > self.samples else records
        front = pareto_front(records)
        t = self.reward.target_ms
        lat = [r["latency_ms"] for r in records]
        acc = [r["accuracy"] for r in records]
        pareto = {"target_ms": t, "reward": self.reward.to_dict(), "samples": len(records),
                  "hypervolume": hypervolume(lat, acc, ref_latency_ms=2 * t),
                  "hypervolume_reference": {"latency_ms": 2 * t, "accuracy": 0.0},
                  "front": [{k: r[k] for k in ("i", "arch", "describe", "accuracy", "latency_ms", "reward")}
                            for r in front]}
        atomic_write_json(self.out / "pareto.json", pareto)
        top = self.top_records(records)
        measured = self.measure_top(top) if self.device is not None else []
        if measured and self.reward.alpha == 0.0:
            top, measured = self.widen_until_one_meets(records, top, measured)
        best = self.pick_best(top, measured)
        title = (f"{getattr(self.space, 'name', '')} on {getattr(self.device, 'name', 'table')}, "
                 f"{self.config.get('strategy', self.strategy.name)}, {len(records)} samples")
        plot_pareto(records, self.out / "pareto.png", target_ms=t, title=title, measured=measured)
        exported = self.export_best(best) if best is not None else {}
        uniq = len({tuple(r["arch"]) for r in records})
        summary = {
            "config": self.config, "samples": len(records), "unique_architectures": uniq,
            "reward": self.reward.to_dict(), "estimator": getattr(self.estimator, "name", None),
            "estimator_is_accuracy": bool(getattr(getattr(self.estimator, "estimator", self.estimator),
                                                  "is_accuracy", True)),
            "best_by_reward_predicted": top[0] if top else None,
            "top_k": measured or top, "best": best, "exported": exported,
            "pareto_size": len(front), "hypervolume": pareto["hypervolume"],
            "min_latency_ms_by_table": float(self.predictor.min_latency()),
            "replay_mismatches": self.replay_mismatches, "strategy_info": self.strategy.info(),
            "estimator_info": getattr(getattr(self.estimator, "estimator", self.estimator), "info", dict)(),
        }
        if self.device is not None:
            summary["device"] = {"name": self.device.name, "fingerprint": self.device.fingerprint()}
        if measured and self.reward.alpha == 0.0:
            summary["hard_target"] = self.hard_target_outcome(measured)
            if not summary["hard_target"]["met"]:
                self.log(summary["hard_target"]["message"])
        atomic_write_json(self.out / "summary.json", summary)
        return SearchResult(self.out, records, pareto["front"], summary)

    def widen_until_one_meets(self, records, top, measured):
        """A hard target: if none of the re-measured top-k meets it as measured, the next k by predicted
        reward are measured too, up to WIDEN times; the caller says plainly if none does even then."""
        for _ in range(WIDEN):
            if any(r["meets_target_measured"] for r in measured):
                break
            more = self.top_records(records, len(top) + self.top_k)[len(top):]
            if not more:
                break
            self.log(f"none of the {len(top)} re-measured networks meets the target {self.reward.target_ms:g} ms as "
                     f"measured; measuring the next {len(more)}")
            top, measured = top + more, measured + self.measure_top(more)
        return top, measured

    def hard_target_outcome(self, measured: list[dict]) -> dict:
        t = self.reward.target_ms
        meeting = [r for r in measured if r["meets_target_measured"]]
        closest = min(measured, key=lambda r: r["measured_ms"])
        reruns = sum(r.get("measured_reruns", 0) for r in measured)
        out = {"met": bool(meeting), "measured": len(measured), "meeting": len(meeting),
               "closest": {"i": closest["i"], "measured_ms": closest["measured_ms"],
                           "over_pct": 100.0 * (closest["measured_ms"] / t - 1)},
               "rounds_re_run_for_interference": reruns}
        if not meeting:
            out["message"] = (f"no measured network meets the target {t:g} ms: of the {len(measured)} measured, the "
                              f"fastest (#{closest['i']}) measures {closest['measured_ms']:.3f} ms, "
                              f"{out['closest']['over_pct']:+.1f}% over (the table predicted {closest['predicted_ms']:.3f}"
                              f" ms); the measurement re-ran {reruns} rounds spoiled by interference")
        return out

    def top_records(self, records: list[dict], count: int | None = None) -> list[dict]:
        """The `count` (default k) best distinct architectures by predicted reward; with a hard constraint
        (alpha = 0), those the table predicts within the target come first."""
        count = count or self.top_k
        seen, top = set(), []
        hard = self.reward.alpha == 0.0
        t = self.reward.target_ms
        for r in sorted(records, key=lambda r: (hard and r["latency_ms"] > t, -r["reward"], r["i"])):
            if tuple(r["arch"]) in seen:
                continue
            seen.add(tuple(r["arch"]))
            top.append({k: r[k] for k in ("i", "arch", "describe", "accuracy", "latency_ms", "reward")})
            if len(top) == count:
                break
        return top

    def _num_classes(self):
        """The class count of the data the estimator uses (the head then matches the exported model)."""
        est = getattr(self.estimator, "estimator", self.estimator)
        split = getattr(est, "_split", None)
        return getattr(split, "num_classes", None)

    def _input_shape(self) -> tuple[int, ...]:
        return (1, 3, self.space.input_size, self.space.input_size)

    def measure_top(self, top: list[dict]) -> list[dict]:
        """Measure the top-k on the device (the judge), together, with the measurement protocol (the
        definition the latency table is built with, so predicted and measured compare like with like)."""
        from hwnas.latency.protocol import measure_latency
        artifacts = {}
        for j, r in enumerate(top):
            torch.manual_seed(0)
            model = self.space.build(tuple(r["arch"]), num_classes=self._num_classes()).eval()
            artifacts[j] = self.device.prepare(model, self._input_shape())
        lat = measure_latency(self.device, artifacts, self.protocol)
        out = []
        for j, r in enumerate(top):
            measured = lat[j].ms
            out.append({**r, "predicted_ms": r["latency_ms"], "measured_ms": measured,
                        "measured_statistic": lat[j].statistic, "measured_rounds": lat[j].rounds,
                        "measured_spread_pct": lat[j].spread_pct,
                        "prediction_error_pct": 100.0 * (r["latency_ms"] - measured) / measured,
                        "measured_reward": self.reward(r["accuracy"], measured),
                        "measured_reruns": sum(lat[j].reruns.values()),
                        "meets_target_measured": measured <= self.reward.target_ms,
                        "target_verdict": against_target(measured, self.reward.target_ms,
                                                         noise_pct(lat[j].spread_pct))})
            self.log(f"  measured #{r['i']}: predicted {r['latency_ms']:.3f} ms, measured {lat[j].describe()}, "
                     f"accuracy {r['accuracy']:.3f}")
        return out

    def pick_best(self, top: list[dict], measured: list[dict]) -> dict | None:
        """The best of the top-k by the reward computed with the *measured* latency (the device is the
        judge), preferring networks that meet the target as measured; without a device, the best by
        predicted reward."""
        if measured:
            return max(measured, key=lambda r: (r["meets_target_measured"], r["measured_reward"], -r["i"]))
        return top[0] if top else None

    def export_best(self, best: dict) -> dict:
        torch.manual_seed(0)
        model = self.space.build(tuple(best["arch"]), num_classes=self._num_classes()).eval()
        weights = "untrained (the architecture; train it on your data)"
        trainer = getattr(getattr(self.estimator, "estimator", self.estimator), "trained_model", None)
        if trainer is not None:
            model, weights = trainer(tuple(best["arch"])), "short-trained like the accuracy estimate"
        shape = self._input_shape()
        if self.device is not None:
            files = self.device.export_final(model, shape, self.out, "best")
        else:
            from hwnas.latency.export import export_onnx
            files = {"onnx": str(export_onnx(model.eval(), shape, self.out / "best.onnx").path)}
        return {**files, "weights": weights, "input_shape": list(shape)}


# -- the name-based entry point (the CLI and the Python API) -------------------------------------------
def load_predictor(space, device, db=None, build_missing: bool = True, log: Callable[[str], None] = _quiet):
    """The latency table's predictor for (space, device). If the table lacks ops of the space and
    `build_missing`, they are timed on the device first (resumable), with a message saying so."""
    from hwnas.latency.predict import LatencyPredictor
    try:
        return LatencyPredictor.for_space(space, device, db_path=db)
    except HwnasError as first:
        if not build_missing:
            raise
        from hwnas.latency.lut import build_lut
        log(f"the latency table of space {space.name!r} on device {device.name!r} is incomplete ({first}); "
            f"building it now (timing {len(space.all_ops())} ops; interrupting is safe, a rerun continues)")
        build_lut(space, device, db_path=db)
        return LatencyPredictor.for_space(space, device, db_path=db)


def _estimate(estimator, threads: int, arch) -> float:
    """A free task: one accuracy estimate (runs in a worker of the executor)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return float(estimator.estimate(arch))


class _Known:
    """Stands in for an estimator whose values were just computed elsewhere."""

    def __init__(self, values: dict, fallback):
        self.values, self.fallback = values, fallback

    def estimate(self, arch):
        arch = tuple(arch)
        return self.values[arch] if arch in self.values else self.fallback.estimate(arch)


def _progress_factory(description: str):
    from hwnas.progress import progress
    return lambda total, done: progress(total, description, completed=done)


def search(*, target, device: str = "cpu", space: str = "mnasnet", strategy: str = "evolution",
           samples: int = 200, w: float | None = None, hard: bool = False, alpha: float | None = None,
           beta: float | None = None, data: str | None = "digits", estimator: str = "naswot",
           estimator_options: dict | None = None, strategy_options: dict | None = None,
           out: str | os.PathLike = "runs/search", resume: bool = False, seed: int = 0, top_k: int = 5,
           db: str | os.PathLike | None = None, devices_file=None, protocol=None,
           build_lut: bool = True, log: Callable[[str], None] = _quiet, show_progress: bool = True,
           executor=None, ray_address: str | None = None) -> SearchResult:
    """Platform-aware search by names, as `hwnas search` does. `target` is "20ms"/"0.02s"/20.0 (ms).
    Reward: soft with exponent `w` (default -0.07), `hard=True` (alpha=0, beta=-1), or explicit alpha/beta.
    `executor`: None (this process), "local", "ray" (with `ray_address`) or an hwnas.executor.Executor: the
    accuracy estimates of each batch of samples run there in parallel."""
    from hwnas.search.estimators import CachedEstimator, estimator_class, get_estimator
    from hwnas.search.strategies import get_strategy, strategy_class
    from hwnas.units import parse_latency_ms

    target_ms = parse_latency_ms(target)
    if hard and (w is not None or alpha is not None or beta is not None):
        raise HwnasError("--hard sets alpha=0, beta=-1: do not combine it with --w, --alpha or --beta")
    if w is not None and (alpha is not None or beta is not None):
        raise HwnasError("give either --w (soft reward) or --alpha/--beta, not both")
    if hard:
        reward = Reward.hard(target_ms)
    elif alpha is not None or beta is not None:
        reward = Reward(target_ms, -0.07 if alpha is None else alpha, -0.07 if beta is None else beta)
    else:
        reward = Reward.soft(target_ms, -0.07 if w is None else w)
    strategy_class(strategy)  # unknown names fail before anything slow happens
    estimator_class(estimator)
    from hwnas.latency.devices import get_device
    from hwnas.search.spaces import get_space
    space_obj = get_space(space)
    out = Path(out)
    est_opts = dict(estimator_options or {})
    strat_opts = dict(strategy_options or {})
    # strategy and estimator first: a wrong option or a space they cannot serve fails before the table is built
    strat = get_strategy(strategy, space_obj, seed=seed, **strat_opts)
    est = get_estimator(estimator, space_obj, data=data, seed=seed, **est_opts)
    dev = get_device(device, devices_file)
    dev.check()
    predictor = load_predictor(space_obj, dev, db, build_missing=build_lut, log=log)
    config = {"device": device, "fingerprint": dev.fingerprint_key(), "space": space, "target_ms": target_ms,
              "reward": reward.to_dict(), "strategy": strategy, "strategy_options": strat_opts,
              "estimator": estimator, "estimator_options": est_opts, "data": data, "seed": seed,
              "samples": samples, "top_k": top_k}
    cached = CachedEstimator(est, out / CACHE)
    owned = isinstance(executor, str)
    if owned:
        from hwnas.executor import get_executor
        executor = get_executor(executor, address=ray_address)
    try:
        run = SearchRun(out, space_obj, predictor, strat, cached, reward, samples, device=dev, top_k=top_k,
                        config=config, resume=resume, protocol=protocol, log=log,
                        progress=_progress_factory(f"search {strategy}") if show_progress else None,
                        executor=executor)
        log(f"search: space {space}, device {device}, target {target_ms:g} ms ({reward.mode} reward, "
            f"alpha {reward.alpha:g}, beta {reward.beta:g}), strategy {strategy}, {samples} samples, "
            f"estimator {estimator} -> {out}"
            + (f", estimates on {executor.name} ({executor.capacity} at a time)" if executor is not None else ""))
        return run.run()
    finally:
        if owned:
            executor.close()
