"""remote backend: a device on another machine running `hwnas agent serve`.

The artifact format is the agent device's (asked once with GET /devices); the prepared file is
uploaded as raw bytes to POST /measure and the agent's JSON comes back as a Measurement. The
fingerprint is the agent device's own (so LUT rows match those built on the agent itself), plus
`via: host:port`. Every call, as a whole (connecting, the upload, the agent's work and its answer), ends
within the device's timeout_s: a dead, hung or trickling agent is an error, never a hang.
"""
from __future__ import annotations

import json
import os
import time

import httpcore
from pydantic import Field

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import PROTOCOL_OPTIONS, Artifact, Backend, BackendOptions, OpTiming
from hwnas.latency.devices.registry import register_backend
from hwnas.latency.measure import Measurement


class RemoteOptions(BackendOptions):
    host: str
    port: int = Field(7711, ge=1, le=65535)
    token_env: str | None = None   # name of the environment variable holding the agent's token
    device: str = "cpu"            # device name on the agent
    timeout_s: float = Field(900.0, gt=0)        # every call to the agent, a measurement's upload included
    connect_timeout_s: float = Field(10.0, gt=0)


class _Budget(httpcore.NetworkBackend):
    """httpcore's own sockets, each of their operations given at most what is left of one call's time: an
    agent that accepts and never answers, or trickles its answer, cannot stretch a call past it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.net = httpcore.SyncBackend()

    def left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise error(f"the call took its {self.seconds:g}s")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _BudgetStream(self.net.connect_tcp(host, port, self.left(timeout, httpcore.ConnectTimeout),
                                                  local_address, socket_options), self)

    def sleep(self, seconds: float) -> None:
        self.net.sleep(seconds)


class _BudgetStream(httpcore.NetworkStream):
    CHUNK = 1 << 16  # written piece by piece: an agent that stops reading cannot hold one big write

    def __init__(self, stream: httpcore.NetworkStream, budget: _Budget):
        self.stream, self.budget = stream, budget

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.budget.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for i in range(0, len(buffer), self.CHUNK):
            self.stream.write(buffer[i:i + self.CHUNK], self.budget.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


@register_backend
class RemoteBackend(Backend):
    name = "remote"
    artifact_format = "onnx"  # replaced per instance by the agent device's format (see the property below)
    Options = RemoteOptions
    # every option is sent to the agent, whose device honours it or answers with the one line saying why not
    protocol_options = PROTOCOL_OPTIONS

    def __init__(self, device_name, options):
        super().__init__(device_name, options)
        self._info: dict | None = None

    def timing_resource(self) -> str:
        return f"agent {self.where}/{self.options.device}"

    @property
    def where(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    def _headers(self) -> dict:
        env = self.options.token_env
        if not env:
            return {}
        token = os.environ.get(env, "").strip()
        if not token:
            raise HwnasError(f"device {self.device_name!r}: set ${env} to the token of the agent at {self.where}")
        return {"Authorization": f"Bearer {token}"}

    def _request(self, method: str, path: str, *, params: dict | None = None, content: bytes | None = None):
        """One call to the agent, all of it (connecting, the upload, the agent's work, the answer) within the
        device's timeout_s."""
        import httpx
        budget = self.options.timeout_s
        url = str(httpx.URL(f"http://{self.where}{path}", params=params))
        try:
            with httpcore.ConnectionPool(network_backend=_Budget(budget)) as pool:
                r = pool.request(method, url, headers=self._headers(), content=content,
                                 extensions={"timeout": {"connect": min(self.options.connect_timeout_s, budget)}})
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
            raise HwnasError(f"device {self.device_name!r}: cannot reach the agent at {self.where} "
                             f"({e or type(e).__name__}); is `hwnas agent serve` running there?") from None
        except httpcore.TimeoutException:
            raise HwnasError(f"device {self.device_name!r}: the agent at {self.where} gave no answer within "
                             f"{budget:g}s (timeout_s)") from None
        except (httpcore.RemoteProtocolError, httpcore.NetworkError) as e:
            raise HwnasError(f"device {self.device_name!r}: the agent at {self.where} closed the connection "
                             f"mid-request (stopped or crashed?): {type(e).__name__}") from None
        return self._answer(r.status, r.content)

    def _answer(self, status: int, body: bytes) -> dict | list:
        text = body.decode(errors="replace")
        if status == 200:
            try:
                return json.loads(text)
            except ValueError:
                raise HwnasError(f"device {self.device_name!r}: the agent at {self.where} sent no JSON "
                                 f"(is it an hwnas agent?)") from None
        try:
            detail = json.loads(text).get("detail", text)
        except (ValueError, AttributeError):
            detail = text[:200]
        if status in (401, 403):
            raise HwnasError(f"device {self.device_name!r}: the agent at {self.where} refused the token ({detail}); "
                             f"check ${self.options.token_env or '<token_env>'}")
        if status == 413:
            raise HwnasError(f"device {self.device_name!r}: model too large for the agent at {self.where}: {detail}")
        raise HwnasError(f"device {self.device_name!r} (agent {self.where}): {detail}")

    def info(self) -> dict:
        if self._info is None:
            rows = self._request("GET", "/devices")
            match = [r for r in rows if r["name"] == self.options.device]
            if not match:
                raise HwnasError(f"device {self.device_name!r}: the agent at {self.where} has no device "
                                 f"{self.options.device!r} (it has: {', '.join(r['name'] for r in rows)})")
            if not match[0].get("usable", False):
                raise HwnasError(f"device {self.device_name!r}: device {self.options.device!r} on the agent at "
                                 f"{self.where} is not usable: {match[0].get('reason')}")
            self._info = match[0]
        return self._info

    @property
    def artifact_format(self) -> str:  # type: ignore[override]
        fmt = self.info()["artifact_format"]
        if fmt == "torch":
            raise HwnasError(f"device {self.device_name!r}: agent device {self.options.device!r} runs torch modules, "
                             f"which cannot be sent (no pickle on the wire); use an onnx or tflite device there")
        return fmt

    def check(self) -> None:
        self.info()

    def fingerprint(self) -> dict:
        fp = {k: v for k, v in self.info()["fingerprint"].items() if k != "key"}
        fp["via"] = self.where
        return fp

    def _post(self, artifact: Artifact, warmup: int, runs: int, adaptive: bool, per_op: bool, **protocol) -> dict:
        if artifact.path is None:
            raise HwnasError(f"device {self.device_name!r}: nothing to upload (a file artifact is needed)")
        shapes = ",".join((f"{k}=" if k else "") + "x".join(map(str, v)) for k, v in artifact.input_shapes.items())
        params = {"device": self.options.device, "filename": artifact.path.name, "warmup": warmup, "runs": runs,
                  "adaptive": str(adaptive).lower(), "per_op": str(per_op).lower()}
        for k, v in protocol.items():  # forwarded, never dropped: the agent's device honours or refuses them
            params[k] = str(v).lower() if isinstance(v, bool) else v
        if shapes:
            params["input_shape"] = shapes
        data = artifact.path.read_bytes()
        return self._request("POST", "/measure", params=params, content=data)

    def measure(self, artifact: Artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
                **protocol) -> Measurement:
        resp = self._post(artifact, warmup, runs, adaptive, per_op=False, **protocol)
        return Measurement.from_dict(resp["measurement"])

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        resp = self._post(artifact, warmup, runs, False, per_op=True)
        return [OpTiming(**o) for o in resp["per_op"]]
