"""Building latency tables: time every distinct op of a space on a device, in interleaved rounds.

Round r times every op once (warm-up + a few runs); the table value of an op is the minimum of its
round medians. Rows are committed as they are measured, keyed (fingerprint, op, round): killed at any
moment, a build loses at most the op in flight, and a rerun skips every (op, round) already stored and
never duplicates one. Then a few whole networks, sampled with a seed of their own, are timed the same
way and the predictor's correction is fitted on them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from hwnas.latency.lut.store import LutStore, space_id
from hwnas.progress import log as _log
from hwnas.progress import progress

FIT_SEED = 0x5EED_F17  # whole networks for the correction come from this stream; validation never uses it
DEFAULTS = {"rounds": 3, "warmup": 5, "runs": 15, "fit_networks": 24}


@dataclass
class BuildReport:
    fingerprint: str
    ops: int
    measured: int       # (op, round) rows timed by this call
    skipped: int        # (op, round) rows already in the table
    networks: int       # whole networks timed by this call for the correction
    correction: dict
    seconds: float


def seeded_module(spec, seed_text: str):
    """Build `spec` with weights drawn from a seed of its key: the same op exports to the same cached file."""
    state = torch.random.get_rng_state()
    torch.manual_seed(zlib.crc32(seed_text.encode()))
    try:
        return spec.build()
    finally:
        torch.random.set_rng_state(state)


def seeded_network(space, arch):
    """Build `arch` of `space` with weights drawn from a seed of the arch (same network, same export)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(zlib.crc32(repr(tuple(arch)).encode()))
    try:
        return space.build(tuple(arch)).eval()
    finally:
        torch.random.set_rng_state(state)


def _runtime(fp: dict) -> str:
    return f"{fp.get('runtime')} {fp.get('runtime_version')}"


def time_ops(device, specs, store: LutStore, *, rounds: int, warmup: int, runs: int, description: str,
             show_progress: bool = True, only_rounds=None, artifacts: dict | None = None,
             executor=None) -> tuple[int, int]:
    """Time each OpSpec `rounds` times (interleaved) into `store`. Returns (measured, skipped).
    `only_rounds` restricts this call to some of the rounds (the builder interleaves networks between them).
    With an `executor` (hwnas.executor), the ops are exported and timed where the device's queue lives,
    split across the members of a device pool; rows are stored here as they come back."""
    fp = device.fingerprint()
    done = store.done(fp["key"])
    round_ids = list(range(rounds)) if only_rounds is None else list(only_rounds)
    total = len(specs) * len(round_ids)
    skipped = sum((s.key, r) in done for s in specs for r in round_ids)
    artifacts = {} if artifacts is None else artifacts
    measured = 0
    with progress(total, description, enabled=None if show_progress else False, completed=skipped) as bar:
        if executor is not None:
            from hwnas.executor import measure_jobs
            jobs = [((spec.key, r), spec.key, partial(seeded_module, spec, spec.key), spec.input_shape)
                    for r in round_ids for spec in specs if (spec.key, r) not in done]
            for (key, r), m in measure_jobs(executor, device, jobs, warmup=warmup, runs=runs, log=_log):
                measured += store.put(fp, _runtime(fp), key, m, round=r)
                bar.advance()
            return measured, skipped
        for r in round_ids:
            for spec in specs:
                if (spec.key, r) in done:
                    continue
                art = artifacts.get(spec.key)
                if art is None:
                    art = artifacts[spec.key] = device.prepare(seeded_module(spec, spec.key), spec.input_shape)
                m = device.measure(art, warmup=warmup, runs=runs)
                measured += store.put(fp, _runtime(fp), spec.key, m, round=r)
                bar.advance()
    return measured, skipped


def fit_archs(space, n: int) -> list[tuple]:
    rng = np.random.default_rng(FIT_SEED)
    archs, seen = [], set()
    while len(archs) < n and len(seen) < 50 * n:
        a = space.sample(rng)
        if a not in seen:
            seen.add(a)
            archs.append(a)
    return archs


def time_networks(device, space, archs, store: LutStore, purpose: str, *, rounds: int, warmup: int, runs: int,
                  show_progress: bool = True, description: str = "networks", only_rounds=None,
                  artifacts: dict | None = None, executor=None) -> int:
    """Time whole networks of `space` end to end in interleaved rounds; rows keyed by purpose."""
    fp = device.fingerprint_key()
    sid = space_id(space)
    have = store.networks(fp, sid, purpose)
    round_ids = list(range(rounds)) if only_rounds is None else list(only_rounds)
    todo = [(r, a) for r in round_ids for a in archs if r not in have.get(tuple(a), {})]
    artifacts = {} if artifacts is None else artifacts
    measured = 0
    shape = (1, 3, space.input_size, space.input_size)
    total = len(archs) * len(round_ids)
    with progress(total, description, enabled=None if show_progress else False,
                  completed=total - len(todo)) as bar:
        if executor is not None:
            from hwnas.executor import measure_jobs
            jobs = [((r, tuple(a)), repr(tuple(a)), partial(seeded_network, space, tuple(a)), shape) for r, a in todo]
            for (r, a), m in measure_jobs(executor, device, jobs, warmup=warmup, runs=runs, log=_log):
                measured += store.put_network(fp, sid, a, purpose, r, m)
                bar.advance()
            return measured
        for r, a in todo:
            a = tuple(a)
            if a not in artifacts:
                state = torch.random.get_rng_state()
                torch.manual_seed(zlib.crc32(repr(a).encode()))
                try:
                    model = space.build(a).eval()
                finally:
                    torch.random.set_rng_state(state)
                artifacts[a] = device.prepare(model, shape)
            m = device.measure(artifacts[a], warmup=warmup, runs=runs)
            measured += store.put_network(fp, sid, a, purpose, r, m)
            bar.advance()
    return measured


def network_values(store: LutStore, device, space, archs, purpose: str) -> np.ndarray:
    """Minimum of round medians per network, in the order of `archs`."""
    have = store.networks(device.fingerprint_key(), space_id(space), purpose)
    return np.array([min(have[tuple(a)].values()) for a in archs])


def build_lut(space, device, db_path=None, *, rounds: int = DEFAULTS["rounds"], warmup: int = DEFAULTS["warmup"],
              runs: int = DEFAULTS["runs"], fit_networks: int = DEFAULTS["fit_networks"], store: LutStore | None = None,
              show_progress: bool = True, log=_log, executor=None) -> BuildReport:
    """Build (or complete) the table of `space` on `device`, then fit the predictor's correction.
    `executor` (hwnas.executor; default: this process) routes the timings per device; a device pool
    (farm) splits them across its members."""
    import time

    from hwnas.latency.predict import LatencyPredictor

    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    t0 = time.perf_counter()
    store = store or LutStore(db_path)
    specs = space.all_ops()
    fp = device.fingerprint_key()
    log(f"latency table: space {space.name!r} ({len(specs)} ops) on device {device.name!r} "
        f"(fingerprint {fp}), {rounds} interleaved rounds, into {store.path}")
    # Round r times every op, then the correction's networks: the networks' timings are spread over the
    # whole build like the ops', so a busy spell on the shared machine cannot bias all of them at once.
    archs = fit_archs(space, fit_networks)
    measured = skipped = nets = 0
    op_artifacts: dict = {}
    net_artifacts: dict = {}
    for r in range(rounds):
        m, s = time_ops(device, specs, store, rounds=rounds, warmup=warmup, runs=runs, only_rounds=[r],
                        description=f"ops of {space.name}, round {r + 1}/{rounds}", show_progress=show_progress,
                        artifacts=op_artifacts, executor=executor)
        measured, skipped = measured + m, skipped + s
        nets += time_networks(device, space, archs, store, "fit", rounds=rounds, warmup=warmup, runs=runs,
                              only_rounds=[r], show_progress=show_progress, artifacts=net_artifacts,
                              executor=executor,
                              description=f"networks for the correction, round {r + 1}/{rounds}")
    predictor = LatencyPredictor.for_space(space, device, store=store)
    s, n = predictor.features(archs)
    correction = LatencyPredictor.fit_correction(s, n, network_values(store, device, space, archs, "fit"))
    store.put_correction(fp, space_id(space), correction)
    loo = ", ".join(f"{k} {v:.2f}%" for k, v in correction["loo_mean_abs_pct"].items())
    log(f"correction ({correction['model']}, chosen by leave-one-out error on {correction['n_networks']} networks: "
        f"{loo}): measured ≈ {correction['a']:.4f} * op sum + {correction['b']:.4f} ms * ops + {correction['c']:.4f} ms")
    return BuildReport(fp, len(specs), measured, skipped, nets, correction, time.perf_counter() - t0)
