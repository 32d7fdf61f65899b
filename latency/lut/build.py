"""Building latency tables: every distinct op of a space timed on a device with the measurement protocol.

Ops are measured in chunks (hwnas.latency.protocol: interleaved, calibrated rounds until the halves of the
rounds agree); each op's counted rounds are committed in one transaction the moment it settles, keyed
(fingerprint, op, round). Killed at any moment, a build loses at most the unsettled ops of the chunk in
flight, and a rerun skips every op already stored and never duplicates one. Then a few whole networks,
sampled with a seed of their own, are measured the same way and the predictor's correction is fitted on them;
storing the correction is the build's last step, and a table without one is unfinished (the predictor
refuses it and says how to resume).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from hwnas.latency.lut.store import LutStore, space_id
from hwnas.latency.protocol import NETWORK, OP, Protocol
from hwnas.progress import log as _log
from hwnas.progress import progress

FIT_SEED = 0x5EED_F17  # whole networks for the correction come from this stream; validation never uses it
OP_PROTOCOL, NETWORK_PROTOCOL = OP, NETWORK  # the protocols of op rows and of whole networks
DEFAULTS = {"fit_networks": 24}
CHUNK = 16  # artifacts measured together (interleaved); a kill loses at most the unsettled ones of one chunk


@dataclass
class BuildReport:
    fingerprint: str
    ops: int
    measured: int       # ops measured by this call
    skipped: int        # ops already in the table
    networks: int       # whole networks measured by this call for the correction
    correction: dict
    seconds: float
    statistic: str = ""


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


def runtime_label(fp: dict) -> str:
    return f"{fp.get('runtime')} {fp.get('runtime_version')}"


def measure_into(device, jobs: list[tuple], store_one, protocol: Protocol, *, description: str,
                 show_progress: bool = True, executor=None, done: int = 0, chunk: int = CHUNK) -> int:
    """Measure every job = (key, make_model, input_shape) on `device` with `protocol`, in chunks, calling
    `store_one(key, latency)` as each settles. With an `executor` (hwnas.executor) the chunks run where the
    device's queue lives (split across the members of a device pool). Returns how many were measured."""
    measured = 0
    with progress(len(jobs) + done, description, enabled=None if show_progress else False, completed=done) as bar:
        def settled(key, lat):
            nonlocal measured
            store_one(key, lat)
            measured += 1
            bar.advance()

        if executor is not None:
            from hwnas.executor import measure_jobs
            for key, lat in measure_jobs(executor, device, jobs, protocol, chunk=chunk, log=_log):
                settled(key, lat)
        else:
            from hwnas.latency.protocol import measure_latency
            for i in range(0, len(jobs), chunk):
                arts = {key: device.prepare(make(), shape) for key, make, shape in jobs[i:i + chunk]}
                measure_latency(device, arts, protocol, on_done=settled)
    return measured


def time_ops(device, specs, store: LutStore, *, protocol: Protocol = OP_PROTOCOL, description: str = "ops",
             show_progress: bool = True, executor=None, chunk: int = CHUNK) -> tuple[int, int]:
    """Measure each OpSpec not yet in `store` on `device`. Returns (measured, skipped)."""
    fp = device.fingerprint()
    have = store.keys(fp["key"])
    todo = [s for s in specs if s.key not in have]
    jobs = [(s.key, partial(seeded_module, s, s.key), s.input_shape) for s in todo]
    runtime = runtime_label(fp)
    n = measure_into(device, jobs, lambda key, lat: store.put_latency(fp, runtime, key, lat), protocol,
                     description=description, show_progress=show_progress, executor=executor,
                     done=len(specs) - len(todo), chunk=chunk)
    return n, len(specs) - len(todo)


def fit_archs(space, n: int) -> list[tuple]:
    rng = np.random.default_rng(FIT_SEED)
    archs, seen = [], set()
    while len(archs) < n and len(seen) < 50 * n:
        a = space.sample(rng)
        if a not in seen:
            seen.add(a)
            archs.append(a)
    return archs


def time_networks(device, space, archs, store: LutStore, purpose: str, *, protocol: Protocol = NETWORK_PROTOCOL,
                  show_progress: bool = True, description: str = "networks", executor=None,
                  chunk: int = CHUNK) -> int:
    """Measure whole networks of `space` not yet stored for `purpose` ("fit", "validate")."""
    fp = device.fingerprint_key()
    sid = space_id(space)
    have = store.networks(fp, sid, purpose)
    todo = [tuple(a) for a in archs if tuple(a) not in have]
    from hwnas.search.spaces.base import batch_of
    shape = (batch_of(space), 3, space.input_size, space.input_size)
    jobs = [(a, partial(seeded_network, space, a), shape) for a in todo]
    return measure_into(device, jobs, lambda a, lat: store.put_network_latency(fp, sid, a, purpose, lat), protocol,
                        description=description, show_progress=show_progress, executor=executor,
                        done=len(archs) - len(todo), chunk=chunk)


def network_values(store: LutStore, device, space, archs, purpose: str) -> np.ndarray:
    """Each network's measured latency (the protocol's statistic over its stored rounds), in the order of `archs`."""
    from hwnas.latency.protocol import combine
    have = store.networks(device.fingerprint_key(), space_id(space), purpose)
    return np.array([combine(list(have[tuple(a)].values())) for a in archs])


def build_lut(space, device, db_path=None, *, op_protocol: Protocol = OP_PROTOCOL,
              network_protocol: Protocol = NETWORK_PROTOCOL, fit_networks: int = DEFAULTS["fit_networks"],
              store: LutStore | None = None, show_progress: bool = True, log=_log, executor=None,
              chunk: int = CHUNK) -> BuildReport:
    """Build (or complete) the table of `space` on `device`, then fit the predictor's correction.
    `executor` (hwnas.executor; default: this process) routes the measurements per device; a device pool
    (farm) splits them across its members; `chunk` artifacts are measured together (interleaved)."""
    import time

    from hwnas.latency.predict import LatencyPredictor, describe_correction
    from hwnas.latency.protocol import statistic_of

    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    t0 = time.perf_counter()
    store = store or LutStore(db_path)
    specs = space.all_ops()
    fp = device.fingerprint_key()
    statistic = statistic_of(device, op_protocol)
    log(f"latency table: space {space.name!r} ({len(specs)} ops) on device {device.name!r} "
        f"(fingerprint {fp}), {statistic} of {op_protocol.min_rounds}-{op_protocol.max_rounds} rounds, "
        f"into {store.path}")
    measured, skipped = time_ops(device, specs, store, protocol=op_protocol, description=f"ops of {space.name}",
                                 show_progress=show_progress, executor=executor, chunk=chunk)
    archs = fit_archs(space, fit_networks)
    nets = time_networks(device, space, archs, store, "fit", protocol=network_protocol, show_progress=show_progress,
                         executor=executor, description="networks for the correction", chunk=chunk)
    predictor = LatencyPredictor.for_space(space, device, store=store, finished=False)
    s, n = predictor.features(archs)
    correction = LatencyPredictor.fit_correction(s, n, network_values(store, device, space, archs, "fit"),
                                                 fastest=lambda c: predictor.min_latency(correction=c))
    store.put_correction(fp, space_id(space), correction)  # the last step: from now on the table is finished
    loo = ", ".join(f"{k} {v:.2f}%" for k, v in correction["loo_mean_abs_pct"].items())
    for model, why in correction["rejected"].items():
        log(f"{model} rejected: {why}; using {correction['model']}")
    log(f"correction chosen by leave-one-out error on {correction['n_networks']} networks ({loo}): measured ≈ "
        f"{describe_correction(correction)}; the fastest network {correction['fastest_ms']:.4g} ms")
    return BuildReport(fp, len(specs), measured, skipped, nets, correction, time.perf_counter() - t0, statistic)
