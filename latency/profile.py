"""Profile one model on one device: end-to-end latency (the measurement protocol) and, optionally,
per-op times. The result is the JSON `hwnas profile --json` writes (and the remote agent returns)."""
from __future__ import annotations

from hwnas.errors import HwnasError
from hwnas.settings import SettingError
from hwnas.latency.devices import Device, get_device


def with_threads(device: Device, threads: int | None) -> Device:
    """The same device with its thread count overridden (backends with a `threads` option)."""
    if threads is None:
        return device
    if threads < 0:
        raise SettingError("{} must be >= 0 (0 = every core)", "threads")
    if "threads" not in type(device.entry.options).model_fields:
        raise HwnasError(f"device {device.name!r} (backend {device.entry.backend}) has no thread setting")
    entry = type(device.entry)(device.entry.name, device.entry.backend,
                               device.entry.options.model_copy(update={"threads": threads}), device.entry.source)
    return Device(entry)


def profile(device: Device | str, model, input_shape=None, *, warmup: int = 3, runs: int = 10,
            rounds: int | None = None, adaptive: bool = False, per_op: bool = False, threads: int | None = None,
            memory: bool = True, devices_file=None, log=None) -> dict:
    """Measure `model` (zoo name, torch module or model file) on `device` with the measurement protocol
    (`runs` timed runs per round, at least `rounds` rounds; `adaptive`: rounds until the halves agree within
    ±0.5%). `log`, if given, is told what is being measured once the model is ready (so bad input fails
    before anything is printed). The headline is `measured_ms`, the protocol's statistic (named beside it);
    `latency_ms` also describes the raw counted runs.

    Beside latency: `model_bytes` (the file the device runs, `model_path`), `params` and `macs` (`params_note`,
    `macs_note`: what they count, or why one is None), `peak_memory` (measured in a fresh process unless `memory`
    is False; its `what` says exactly what the figure is) and, with `per_op`, `per_op_types` (per op type: total
    of the per-op medians, number of ops, share of `per_op_total_ms`)."""
    from hwnas.latency.memory import not_measured, peak_memory
    from hwnas.latency.protocol import NETWORK, measure_latency
    from hwnas.latency.report import model_counts, model_file, op_type_totals
    if isinstance(device, str):
        device = get_device(device, devices_file)
    device = with_threads(device, threads)
    protocol = NETWORK.but(warmup=warmup, runs=runs)
    if rounds is not None:
        protocol = protocol.but(min_rounds=rounds, max_rounds=max(protocol.max_rounds, rounds))
    if adaptive:
        protocol = protocol.but(agree=0.005, max_rounds=max(40, protocol.min_rounds))
    protocol.check()
    device.check()
    artifact = device.prepare(model, input_shape)
    if log is not None:
        log(f"profiling {artifact.name} on {device.name} ({warmup} warm-up + {runs} runs per round, at least "
            f"{protocol.min_rounds} rounds, until two halves of the rounds agree within ±{100 * protocol.agree:g}%)")
    lat = measure_latency(device, {artifact.name: artifact}, protocol)[artifact.name]
    raw = lat.raw
    result = {
        "model": artifact.name,
        "device": device.name,
        "fingerprint": device.fingerprint(),
        "input_shapes": {k: list(v) for k, v in artifact.input_shapes.items()},
        "measured_ms": lat.ms,
        "statistic": lat.statistic,
        "latency_ms": {"measured": lat.ms, "statistic": lat.statistic, **raw.to_dict(samples=False)},
        "reproducibility": {"rounds": lat.rounds, "halves_ms": list(lat.halves_ms), "spread_pct": lat.spread_pct,
                            "stopped_by": lat.stopped_by, "reruns": lat.reruns, "segments_ms": lat.segments_ms},
        "reference": lat.reference,
        "protocol": protocol.to_dict(),
        "runs": raw.count,         # timed runs counted (every round)
        "runs_per_round": runs,    # asked for; the protocol raises it for models much shorter than its reference
        "warmup": warmup,          # untimed runs before each round
        "samples_ms": raw.samples_ms,
    }
    if artifact.meta.get("parity_max_abs_diff") is not None:
        result["export_parity_max_abs_diff"] = artifact.meta["parity_max_abs_diff"]
    if per_op:
        ops = device.profile_ops(artifact, warmup=min(warmup, 5), runs=min(runs, 20))
        result["per_op"] = [o.to_dict() for o in ops]
        # sum of per-op medians; per-op times are heavy-tailed on a busy machine, so the sum of means and
        # the traced runs' own median are given beside it
        result["per_op_total_ms"] = sum(o.median_ms for o in ops)
        result["per_op_mean_total_ms"] = sum(o.mean_ms for o in ops)
        result["profiled_run_median_ms"] = device.backend.last_profiled_run_ms
        result["per_op_types"] = op_type_totals(ops)
    result.update(model_file(artifact))
    result.update(model_counts(model, artifact))
    result["peak_memory"] = (peak_memory(device, artifact, runs=min(warmup + runs, 20)) if memory
                             else not_measured("turned off (--no-memory)"))
    return result
