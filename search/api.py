"""Search by names, as `hwnas search` does: the space, strategy, estimator, device and latency table looked
up in their registries and assembled into a SearchRun (search/run.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from hwnas.errors import HwnasError
from hwnas.search.config import SearchConfig
from hwnas.search.run import CACHE, SearchRun
from hwnas.search.results import SearchResult


def _quiet(_msg: str) -> None:
    pass


def load_predictor(space, device, db=None, build_missing: bool = True, log: Callable[[str], None] = _quiet,
                   missing_ops: str = "build", show_progress: bool = True):
    """The latency table's predictor for (space, device). If the table lacks ops of the space (or its correction):
    with missing_ops="kernels" they are predicted from the device's kernel table (hwnas.latency.space_fill; the
    predictor's `sources` says how many); else, with `build_missing`, they are timed on the device first
    (resumable), with a message saying so."""
    from hwnas.latency.predict import LatencyPredictor
    try:
        return LatencyPredictor.for_space(space, device, db_path=db)
    except HwnasError as first:
        if missing_ops == "kernels":
            from hwnas.latency.space_fill import kernel_filled
            log(f"the latency table of space {space.name!r} on device {device.name!r} is incomplete ({first}); "
                f"completing it from the kernel table")
            return kernel_filled(space, device, db, log=log, show_progress=show_progress)
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


def search(config: SearchConfig | None = None, *, protocol=None, log: Callable[[str], None] = _quiet,
           show_progress: bool = True, **settings) -> SearchResult:
    """Platform-aware search by names, as `hwnas search` does: `search(SearchConfig(target="20ms", ...))` or
    `search(target="20ms", samples=50, ...)` with the settings of SearchConfig (search/config.py). The target is
    "20ms"/"0.02s"/20.0 (ms). Reward: soft with exponent `w` (default -0.07), `hard=True` (alpha=0, beta=-1), or
    explicit alpha/beta. `executor`: "local" (this process, the default), "ray" (with `ray_address`) or an
    hwnas.executor.Executor: the accuracy estimates of each batch of samples run there in parallel."""
    from hwnas.search.estimators import CachedEstimator, estimator_class, get_estimator
    from hwnas.search.strategies import get_strategy, strategy_class
    from hwnas.settings import from_settings

    if config is None:
        config = from_settings(SearchConfig, settings, "search")
    elif settings:
        raise HwnasError(f"give search() a config or settings, not both (got {', '.join(sorted(settings))})")
    c = config
    reward = c.reward()
    strategy_class(c.strategy)  # unknown names fail before anything slow happens
    estimator_class(c.estimator)
    from hwnas.latency.devices import get_device
    from hwnas.search.spaces import get_space
    space_obj = get_space(c.space)
    deploy, train_size = c.resolutions(space_obj)
    # the estimator's space: the same decisions and networks, at the training input size
    est_space = space_obj if train_size == deploy else get_space(c.space, input_size=train_size)
    out = Path(c.out)
    # strategy and estimator first: a wrong option or a space they cannot serve fails before the table is built
    strat = get_strategy(c.strategy, space_obj, seed=c.seed, **c.strategy_options)
    est = get_estimator(c.estimator, est_space, data=c.data, seed=c.seed, train_device=c.train_device,
                        **c.estimator_options)
    dev = get_device(c.device, c.devices_file)
    dev.check()
    predictor = load_predictor(space_obj, dev, c.db, build_missing=c.build, log=log, missing_ops=c.missing_ops,
                               show_progress=show_progress)
    recorded = {**c.record(), "input_size": deploy, "train_size": train_size, "fingerprint": dev.fingerprint_key()}
    cached = CachedEstimator(est, out / CACHE)
    executor = c.executor
    owned = isinstance(executor, str) and (executor != "local" or c.ray_address is not None)
    if isinstance(executor, str) and not owned:
        executor = None  # "local" without a cluster: this process
    if owned:
        from hwnas.executor import get_executor
        executor = get_executor(executor, address=c.ray_address)
    try:
        run = SearchRun(out, space_obj, predictor, strat, cached, reward, c.samples, device=dev, top_k=c.top_k,
                        config=recorded, resume=c.resume, protocol=protocol, log=log,
                        progress=_progress_factory(f"search {c.strategy}") if show_progress else None,
                        executor=executor)
        log(f"search: space {c.space}, device {c.device}, target {c.target_ms:g} ms ({reward.mode} reward, "
            f"alpha {reward.alpha:g}, beta {reward.beta:g}), strategy {c.strategy}, {c.samples} samples, "
            f"estimator {c.estimator} at {train_size}x{train_size} (latency at {deploy}x{deploy}) -> {out}"
            + (f", estimates on {executor.name} ({executor.capacity} at a time)" if executor is not None else ""))
        return run.run()
    finally:
        if owned:
            executor.close()
