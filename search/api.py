"""Search by names, as `hwnas search` does: the space, strategy, estimator, device and latency table looked
up in their registries and assembled into a SearchRun (search/run.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from hwnas.errors import HwnasError
from hwnas.search.reward import Reward
from hwnas.search.run import CACHE, SearchRun
from hwnas.search.results import SearchResult


def _quiet(_msg: str) -> None:
    pass


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
