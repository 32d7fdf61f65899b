"""The hwnas agent: serves this machine's devices to remote hwnas clients over HTTP (FastAPI).

    POST /measure?device=cpu&warmup=10&runs=50&filename=m.onnx[&input_shape=..][&per_op=true]
         body: the raw .onnx/.tflite bytes            -> the profile JSON (+ "measurement", "agent")
    GET  /devices                                     -> names, backends, artifact formats, fingerprints
    GET  /health                                      -> {"ok": true} (no token needed)
    GET  /openapi.json                                -> the schema

Only JSON and raw file bytes cross the wire (no pickle). A bearer token is required unless the agent
was started with token=None on purpose. One measurement at a time per timing resource (one lock shared
by every device on this machine's cores, one per phone), so two clients never time on the same cores
at once; a request that waits longer than `queue_timeout_s` for its
device gets 503. Uploads above `max_upload_mb` get 413 while streaming, before they are stored.
"""
from __future__ import annotations

import hmac
import os
import tempfile
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from hwnas.errors import HwnasError
from hwnas.latency.devices import Device, get_device, list_devices

SUFFIXES = (".onnx", ".tflite")


class _DeviceSlot:
    def __init__(self, device: Device, lock: threading.Lock):
        self.device = device
        self.lock = lock


def create_app(token: str | None, devices_file=None, max_upload_mb: float = 200.0,
               queue_timeout_s: float = 600.0) -> FastAPI:
    app = FastAPI(title="hwnas agent", version="1",
                  description="Time models on this machine's devices for remote hwnas clients.")
    slots: dict[str, _DeviceSlot] = {}
    slots_lock = threading.Lock()
    resource_locks: dict[str, threading.Lock] = {}
    limit = int(max_upload_mb * 2**20)

    def slot(name: str) -> _DeviceSlot:
        with slots_lock:
            if name not in slots:
                try:
                    device = get_device(name, devices_file)
                except HwnasError as e:
                    raise HTTPException(404, str(e)) from None
                # one lock per timing resource (the device layer's definition: every device on this machine's
                # cores shares one, so `cpu` and `cpu-all` never time at once; a phone has its own)
                try:
                    resource = device.timing_resource()
                except HwnasError as e:
                    raise HTTPException(404, str(e)) from None
                slots[name] = _DeviceSlot(device, resource_locks.setdefault(resource, threading.Lock()))
            return slots[name]

    def auth(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HTTPException(401, "missing token: send the header 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/devices", dependencies=[Depends(auth)])
    def devices() -> list[dict]:
        rows = []
        for name, entry in list_devices(devices_file).items():
            row = {"name": name, "backend": entry.backend, "description": entry.options.description}
            try:
                s = slot(name)
                row.update(artifact_format=s.device.artifact_format, fingerprint=s.device.fingerprint(), usable=True)
            except (HwnasError, HTTPException) as e:
                row.update(usable=False, reason=str(getattr(e, "detail", e)))
            rows.append(row)
        return rows

    @app.post("/measure", dependencies=[Depends(auth)])
    async def measure_model(request: Request,
                            device: str = Query("cpu", description="device name on this agent"),
                            filename: str = Query(..., description="name of the uploaded model, .onnx or .tflite"),
                            warmup: int = Query(10, ge=0, le=10000), runs: int = Query(50, ge=1, le=100000),
                            adaptive: bool = False, per_op: bool = False,
                            input_shape: str | None = Query(None, description="e.g. 1x3x224x224 or name=1x3x.."),
                            rel_ci: float | None = Query(None, gt=0, lt=1), min_runs: int | None = Query(None, ge=1),
                            max_runs: int | None = Query(None, ge=1, le=100000),
                            time_cap_s: float | None = Query(None, gt=0, le=3600),
                            min_time_s: float | None = Query(None, ge=0, le=3600),
                            paired: bool | None = None, pair_every: int | None = Query(None, ge=1, le=10000)) -> dict:
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise HTTPException(400, f"upload a .onnx or .tflite file, not {filename!r}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"model is {int(declared) / 2**20:.1f} MB; this agent accepts at most "
                                     f"{max_upload_mb:g} MB (--max-upload-mb)")
        s = slot(device)
        with tempfile.TemporaryDirectory(prefix="hwnas-agent-") as tmp:
            path = Path(tmp) / ("upload" + suffix)
            size = 0
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise HTTPException(413, f"model exceeds this agent's upload limit of {max_upload_mb:g} MB "
                                                 f"(--max-upload-mb)")
                    f.write(chunk)
            if size == 0:
                raise HTTPException(400, "empty upload")
            protocol = {k: v for k, v in (("rel_ci", rel_ci), ("min_runs", min_runs), ("max_runs", max_runs),
                                          ("time_cap_s", time_cap_s), ("min_time_s", min_time_s),
                                          ("paired", paired), ("pair_every", pair_every)) if v is not None}
            return await run_in_threadpool(_run, s, path, Path(filename).stem, warmup, runs, adaptive, per_op,
                                           input_shape, queue_timeout_s, protocol)

    return app


def _run(s: _DeviceSlot, path: Path, name: str, warmup: int, runs: int, adaptive: bool, per_op: bool,
         input_shape, queue_timeout_s: float, protocol: dict) -> dict:
    asked = time.time()
    if not s.lock.acquire(timeout=queue_timeout_s):
        raise HTTPException(503, f"device {s.device.name!r} stayed busy for {queue_timeout_s:g}s; try again later")
    try:
        started = time.time()
        dev = s.device
        try:
            dev.check()
            artifact = dev.prepare(str(path), input_shape)
            artifact.name = name
            m = dev.measure(artifact, warmup=warmup, runs=runs, adaptive=adaptive, **protocol)
            ops = dev.profile_ops(artifact, warmup=min(warmup, 5), runs=min(runs, 20)) if per_op else None
        except HwnasError as e:
            raise HTTPException(400, str(e)) from None
        finally:
            dev.close()  # the upload is deleted after this request: keep none of its loaded models
        finished = time.time()
    finally:
        s.lock.release()
    result = {
        "model": name, "device": dev.name, "fingerprint": dev.fingerprint(),
        "input_shapes": {k: list(v) for k, v in artifact.input_shapes.items()},
        "latency_ms": m.to_dict(samples=False), "runs": m.count, "warmup": m.warmup,
        "samples_ms": m.samples_ms, "measurement": m.to_dict(),
        "agent": {"host": os.uname().nodename, "queued_at": asked, "started_at": started, "finished_at": finished},
    }
    extra = getattr(dev.backend, "last_run", None)
    if extra:
        result["extra"] = {k: v for k, v in extra.items() if k != "raw_output"}
    if ops is not None:
        result["per_op"] = [o.to_dict() for o in ops]
        result["per_op_total_ms"] = sum(o.median_ms for o in ops)
    return result


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 7711) -> None:
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)
