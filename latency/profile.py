"""Profile one model on one device: end-to-end latency (the measurement protocol) and, optionally,
per-op times. The result is the JSON `hwnas profile --json` writes (and the remote agent returns)."""
from __future__ import annotations

from hwnas.errors import HwnasError
from hwnas.latency.devices import Device, get_device


def with_threads(device: Device, threads: int | None) -> Device:
    """The same device with its thread count overridden (backends with a `threads` option)."""
    if threads is None:
        return device
    if threads < 0:
        raise HwnasError("--threads must be >= 0 (0 = every core)")
    if "threads" not in type(device.entry.options).model_fields:
        raise HwnasError(f"device {device.name!r} (backend {device.entry.backend}) has no thread setting")
    entry = type(device.entry)(device.entry.name, device.entry.backend,
                               device.entry.options.model_copy(update={"threads": threads}), device.entry.source)
    return Device(entry)


def profile(device: Device | str, model, input_shape=None, *, warmup: int = 10, runs: int = 50,
            adaptive: bool = False, per_op: bool = False, threads: int | None = None,
            devices_file=None, log=None) -> dict:
    """Measure `model` (zoo name, torch module or model file) on `device`; `log`, if given, is told what is
    being timed once the model is ready (so bad input fails before anything is printed)."""
    if isinstance(device, str):
        device = get_device(device, devices_file)
    device = with_threads(device, threads)
    if warmup < 0 or runs < 1:
        raise HwnasError("--warmup must be >= 0 and --runs >= 1")
    device.check()
    artifact = device.prepare(model, input_shape)
    if log is not None:
        log(f"profiling {artifact.name} on {device.name} ({warmup} warm-up, {'adaptive' if adaptive else runs} runs)")
    m = device.measure(artifact, warmup=warmup, runs=runs, adaptive=adaptive)
    result = {
        "model": artifact.name,
        "device": device.name,
        "fingerprint": device.fingerprint(),
        "input_shapes": {k: list(v) for k, v in artifact.input_shapes.items()},
        "latency_ms": m.to_dict(samples=False),
        "runs": m.count,
        "warmup": m.warmup,
        "samples_ms": m.samples_ms,
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
    return result
