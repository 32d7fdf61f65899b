"""The hwnas agent: serves this machine's devices to remote hwnas clients over HTTP (FastAPI).

    POST /measure?device=cpu&warmup=10&runs=50&filename=m.onnx[&input_shape=..][&per_op=true]
         body: the raw .onnx/.tflite bytes            -> the profile JSON (+ "measurement", "agent")
    GET  /devices                                     -> names, backends, artifact formats, fingerprints
    GET  /openapi.json                                -> the schema (token needed; no /docs, no /redoc)
    GET  /health                                      -> {"ok": true} (no token needed)

Only JSON and raw file bytes cross the wire (no pickle). A bearer token is required unless the agent
was started with token=None on purpose. One measurement at a time per timing resource (one lock shared
by every device on this machine's cores, one per phone), so two clients never time on the same cores
at once; a request that waits longer than `queue_timeout_s` for its device gets 503.

Nothing a client does holds the agent for long: uploads above `max_upload_mb` get 413 while streaming,
before they are stored, and an upload that stalls for `body_timeout_s` gets 408; a measurement stops
(504) after `max_request_s` of the device's time, and stops, freeing the device, as soon as its client
goes away (also while it waits for the device); a connection that has not sent its request headers
within `header_timeout_s` is closed, and past `limit_concurrency` connections the agent answers 503.
Inputs are bounded by the device layer (hwnas.latency.artifacts.MAX_INPUT_BYTES: 400 beyond it), and no
message shows a server path: the upload's is replaced by the client's file name. Uploads live in
TMPDIR/hwnas-agent-UID/upload-PID-*, one folder per request, removed after it; folders of agents that
died (their PID is gone) are removed when an agent starts.
"""
from __future__ import annotations

import asyncio
import hmac
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import h11
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from hwnas.errors import HwnasError
from hwnas.latency.devices import Device, get_device, list_devices
from hwnas.latency.measure import MeasurementCancelled, cancellable

SUFFIXES = (".onnx", ".tflite")
POLL_S = 0.2  # how often a running or queued request looks whether its client is still there
GONE = 499    # the client went away (nobody reads this answer; it only ends the request)


class _DeviceSlot:
    def __init__(self, device: Device, lock: threading.Lock):
        self.device = device
        self.lock = lock


def create_app(token: str | None, devices_file=None, max_upload_mb: float = 200.0,
               queue_timeout_s: float = 600.0, max_request_s: float = 600.0, body_timeout_s: float = 30.0) -> FastAPI:
    app = FastAPI(title="hwnas agent", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Time models on this machine's devices for remote hwnas clients.")
    slots: dict[str, _DeviceSlot] = {}
    slots_lock = threading.Lock()
    resource_locks: dict[str, threading.Lock] = {}
    limit = int(max_upload_mb * 2**20)
    uploads = upload_root()
    remove_dead_uploads(uploads)

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

    @app.get("/openapi.json", dependencies=[Depends(auth)], include_in_schema=False)
    def schema() -> dict:
        return app.openapi()

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
        # stored under (a tame form of) the client's own name, so that messages naming the file name theirs
        shown = re.sub(r"[^\w.+-]", "_", Path(filename).stem)[:100] + suffix
        with tempfile.TemporaryDirectory(prefix=f"upload-{os.getpid()}-", dir=uploads) as tmp:
            path = Path(tmp) / shown
            size = 0
            chunks = request.stream()
            with open(path, "wb") as f:
                while True:
                    try:
                        chunk = await asyncio.wait_for(anext(chunks), body_timeout_s)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise HTTPException(408, f"no part of the upload arrived for {body_timeout_s:g} s; "
                                                 f"send the model in one go", headers={"Connection": "close"}) from None
                    except ClientDisconnect:
                        raise HTTPException(GONE, "the client went away during the upload") from None
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
            # the measurement runs in a worker thread; meanwhile, look whether the client is still there
            cancel = threading.Event()
            work = asyncio.ensure_future(run_in_threadpool(
                _run, s, path, Path(filename).stem, warmup, runs, adaptive, per_op, input_shape, protocol,
                cancel=cancel, queue_timeout_s=queue_timeout_s, max_request_s=max_request_s))
            while not work.done():
                await asyncio.wait({work}, timeout=POLL_S)
                if not work.done() and not cancel.is_set() and await request.is_disconnected():
                    cancel.set()  # it stops within about one inference, or leaves the queue, and frees the device
            return work.result()

    return app


def wait_for_device(s: _DeviceSlot, cancel: threading.Event, queue_timeout_s: float) -> None:
    """Take the device's lock; give up with 503 after `queue_timeout_s`, or as soon as `cancel` is set."""
    end = time.monotonic() + queue_timeout_s
    while not s.lock.acquire(timeout=POLL_S):
        if cancel.is_set():
            raise HTTPException(GONE, "the client went away while waiting for the device")
        if time.monotonic() >= end:
            raise HTTPException(503, f"device {s.device.name!r} stayed busy for {queue_timeout_s:g}s; "
                                     f"try again later")


def _run(s: _DeviceSlot, path: Path, name: str, warmup: int, runs: int, adaptive: bool, per_op: bool,
         input_shape, protocol: dict, *, cancel: threading.Event, queue_timeout_s: float,
         max_request_s: float) -> dict:
    asked = time.time()
    wait_for_device(s, cancel, queue_timeout_s)
    try:
        started = time.time()
        dev = s.device
        try:
            with cancellable(cancel, time.monotonic() + max_request_s) as stop:
                dev.check()
                artifact = dev.prepare(str(path), input_shape)
                artifact.name = name
                stop()
                m = dev.measure(artifact, warmup=warmup, runs=runs, adaptive=adaptive, **protocol)
                stop()
                ops = dev.profile_ops(artifact, warmup=min(warmup, 5), runs=min(runs, 20)) if per_op else None
        except MeasurementCancelled as e:
            if e.reason == "deadline":
                raise HTTPException(504, f"measurement exceeded this agent's cap of {max_request_s:g} s "
                                         f"(--max-request-s)") from None
            raise HTTPException(GONE, "the client went away during the measurement") from None
        except HwnasError as e:
            raise HTTPException(400, hide_path(str(e), path)) from None
        except Exception as e:  # noqa: BLE001 - the runtime failed on the client's model: its answer, one line
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else "no message"
            raise HTTPException(400, hide_path(f"device {dev.name!r} could not run {path.name}: "
                                               f"{type(e).__name__}: {first}", path)) from None
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
    extra = dev.backend.last_run
    if extra:
        result["extra"] = {k: v for k, v in extra.items() if k != "raw_output"}
    if ops is not None:
        result["per_op"] = [o.to_dict() for o in ops]
        result["per_op_total_ms"] = sum(o.median_ms for o in ops)
    return result


def hide_path(message: str, upload: Path) -> str:
    """The message with the upload's server path replaced by its file name (the client's) and no server folder."""
    for p in (upload.resolve(), upload):
        message = message.replace(str(p), upload.name)
    for d in (upload.parent.resolve(), upload.parent):
        message = message.replace(str(d), "<upload>")
    return message


def upload_root() -> Path:
    """TMPDIR/hwnas-agent-UID: every agent of this user keeps its uploads there (a folder only this user opens)."""
    root = Path(tempfile.gettempdir()) / f"hwnas-agent-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise HwnasError(f"{root} must be a folder of this user that only this user can open; remove it (or set "
                         f"TMPDIR elsewhere) and start the agent again")
    return root


def remove_dead_uploads(root: Path) -> None:
    """Remove the upload folders (upload-PID-*) of agents that are gone; another agent's live ones stay."""
    for d in root.glob("upload-*-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete `header_timeout_s`
    after it opened (or after the first bytes of its next request): uvicorn itself waits forever for them."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._expect_headers()  # a request begun, its headers not complete yet
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 7711, header_timeout_s: float = 10.0,
          limit_concurrency: int = 64) -> None:
    import uvicorn
    protocol = type("AgentH11Protocol", (HeaderDeadlineH11,), {"header_timeout_s": header_timeout_s})
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30, http=protocol, ws="none",
                limit_concurrency=limit_concurrency)
