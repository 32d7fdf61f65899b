"""`hwnas agent serve` and the remote backend, over real TCP on 127.0.0.1 with the agent in a subprocess."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest
import torch
import yaml

from hwnas.errors import HwnasError
from hwnas.latency.devices import Artifact, get_device
from hwnas.latency.measure import Measurement
from hwnas.models import create
from tests.cli_helpers import assert_one_line_error, hwnas

TOKEN = "test-token-0123456789"
SHAPE = (1, 3, 32, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp_path, *extra, token=TOKEN, env=None):
    port = free_port()
    args = [sys.executable, "-m", "hwnas", "agent", "serve", "--port", str(port), *extra]
    if token:
        (tmp_path / "token").write_text(token + "\n")
        (tmp_path / "token").chmod(0o600)
        args += ["--token-file", str(tmp_path / "token")]
    return wait_for_agent(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           env=env), port)


def wait_for_agent(proc, port):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("agent did not start")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def client_devices(tmp_path, port, **over):
    entry = {"backend": "remote", "host": "127.0.0.1", "port": port, "token_env": "HWNAS_TEST_AGENT_TOKEN",
             "device": "cpu", "timeout_s": 120.0}
    entry.update(over)
    path = tmp_path / f"client-{port}.yaml"
    path.write_text(yaml.safe_dump({"farbox": entry}))
    return path


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """The agent as `hwnas agent serve` runs it, its temporary folder (TMPDIR) in tmp/agent-tmp."""
    tmp = tmp_path_factory.mktemp("agent")
    (tmp / "agent-tmp").mkdir()
    proc, port = start_agent(tmp, "--max-upload-mb", "1", env={**os.environ, "TMPDIR": str(tmp / "agent-tmp")})
    yield port, tmp
    stop(proc)


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def onnx_file(path, op="Relu", dims=(1, 3, "h", "w")):
    """A one-node ONNX model (named dims are dynamic): Relu(x), or MatMul(x, x)."""
    from onnx import TensorProto, helper, save
    node = helper.make_node(op, ["x"] * (2 if op == "MatMul" else 1), ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


def heavy_onnx(tmp_path):
    """A model of tens of ms a run on one core (a 1024x1024 matrix squared) in a file of a few hundred bytes."""
    return onnx_file(tmp_path / "heavy.onnx", "MatMul", (1024, 1024))


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return create("lenet5", num_classes=10).eval()


def test_profile_through_the_agent_matches_the_agent_device(agent, monkeypatch, lenet):
    port, tmp = agent
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    dev = get_device("farbox", client_devices(tmp, port))
    assert dev.artifact_format == "onnx"
    m = dev.measure(lenet, SHAPE, warmup=2, runs=15)
    assert m.count == 15 and len(m.samples_ms) == 15 and m.min <= m.median <= m.max
    fp = dev.fingerprint()
    assert fp["via"] == f"127.0.0.1:{port}" and fp["backend"] == "onnxruntime"
    # same machine, same runtime: the remote fingerprint keys the same LUT rows as the local device
    assert fp["key"] == get_device("cpu").fingerprint_key()
    ops = dev.profile_ops(lenet, SHAPE, warmup=1, runs=3)
    assert any(o.op_type == "Conv" for o in ops)
    schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json", headers=auth(), timeout=10).json()
    assert "/measure" in schema["paths"] and "/devices" in schema["paths"]


def test_wrong_or_missing_token_is_refused(agent, monkeypatch, lenet):
    port, tmp = agent
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", "not-the-token")
    with pytest.raises(HwnasError, match="refused the token"):
        get_device("farbox", client_devices(tmp, port)).measure(lenet, SHAPE, warmup=1, runs=2)
    monkeypatch.delenv("HWNAS_TEST_AGENT_TOKEN")
    with pytest.raises(HwnasError, match=r"set \$HWNAS_TEST_AGENT_TOKEN"):
        get_device("farbox", client_devices(tmp, port)).check()
    r = httpx.get(f"http://127.0.0.1:{port}/devices", timeout=10)
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    r = httpx.post(f"http://127.0.0.1:{port}/measure", params={"filename": "x.onnx"}, content=b"x", timeout=10)
    assert r.status_code == 401


def test_oversized_upload_is_refused(agent, monkeypatch, tmp_path):
    port, tmp = agent
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(2 * 2**20))
    dev = get_device("farbox", client_devices(tmp, port))
    art = Artifact(format="onnx", name="big", input_shapes={"input": SHAPE}, path=big)
    with pytest.raises(HwnasError, match="too large.*at most 1 MB"):
        dev.measure(art, warmup=1, runs=2)


@pytest.mark.parametrize("remote_devices", [("cpu", "cpu"), ("cpu", "cpu-all")])
def test_two_clients_are_serialized(agent, monkeypatch, lenet, remote_devices):
    """Two clients on one agent device, or on two devices sharing the agent's cores, never overlap."""
    port, tmp = agent
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    paths = []
    for i, name in enumerate(remote_devices):
        (tmp / f"client{i}").mkdir(exist_ok=True)
        paths.append(client_devices(tmp / f"client{i}", port, device=name))
    art = get_device("farbox", paths[0]).prepare(lenet, SHAPE)
    results, errors = [], []

    def client(path):
        try:
            # the agent's whole answer, with its queue and timing stamps beside the measurement
            resp = get_device("farbox", path).backend._post(art, warmup=5, runs=400, adaptive=False, per_op=False)
            results.append((Measurement.from_dict(resp["measurement"]), resp["agent"]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 2
    assert all(m.count == 400 for m, _ in results)
    (_, a), (_, b) = sorted(results, key=lambda r: r[1]["started_at"])
    assert a["finished_at"] <= b["started_at"]  # the second waited for the first: no overlap on the device


@pytest.mark.slow
def test_agent_killed_mid_request_is_a_clear_error(tmp_path, monkeypatch, lenet):
    proc, port = start_agent(tmp_path)
    try:
        monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
        dev = get_device("farbox", client_devices(tmp_path, port, timeout_s=60.0))
        art = dev.prepare(lenet, SHAPE)
        outcome = {}

        def client():
            try:
                dev.measure(art, warmup=0, runs=100000)
            except HwnasError as e:
                outcome["error"] = str(e)

        t = threading.Thread(target=client)
        t.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        t.join(70)
        assert not t.is_alive()
        assert "closed the connection mid-request" in outcome["error"]
        with pytest.raises(HwnasError, match="cannot reach the agent"):
            get_device("farbox", client_devices(tmp_path, port)).check()
    finally:
        stop(proc)


def test_serve_refuses_to_start_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HWNAS_AGENT_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "hwnas", "agent", "serve", "--port", "0"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.startswith("Error: the agent needs a token") and "secrets.token_urlsafe" in r.stderr
    assert "(umask 077;" in r.stderr  # the token file it tells you to make is yours alone


def test_protocol_options_reach_the_agents_device(agent, monkeypatch, lenet):
    """The remote backend forwards every option: a paired (calibrated) measurement and an adaptive one run on
    the agent, and the protocol over the agent is calibrated by the agent's own reference."""
    port, tmp = agent
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    dev = get_device("farbox", client_devices(tmp, port))
    m = dev.measure(lenet, SHAPE, warmup=1, runs=6, paired=True, pair_every=2)
    assert len(m.paired_ms) == 3 and m.reference_ms > 0 and m.pair_every == 2
    m = dev.measure(lenet, SHAPE, warmup=1, runs=5, adaptive=True, rel_ci=0.5, min_runs=5, time_cap_s=5)
    assert m.stopped_by in ("converged", "time_cap")
    from hwnas.latency.protocol import CALIBRATED, Protocol
    lat = dev.latency(lenet, SHAPE, Protocol(runs=5, min_rounds=2, max_rounds=3))
    assert lat.statistic == CALIBRATED and lat.reference["nominal_ms"] > 0
    with pytest.raises(HwnasError, match="unknown measurement option"):
        dev.measure(lenet, SHAPE, warmup=1, runs=2, min_tim_s=1)


# --- hardening (issue 22): nothing a client sends or fails to send holds the agent -----------------------------

@pytest.fixture(scope="module")
def strict_agent():
    """A real uvicorn serving the agent with short limits: headers within 2 s, no upload stall over 1 s, at most
    8 connections."""
    port = free_port()
    code = ("from hwnas.latency.agent import create_app, serve; "
            f"serve(create_app({TOKEN!r}, body_timeout_s=1), port={port}, header_timeout_s=2, limit_concurrency=8)")
    proc, port = wait_for_agent(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True), port)
    yield port
    stop(proc)


def closed_by_server(sock, within_s=10.0) -> bytes:
    """Everything the server sent until it closed the connection; fails if it is still open after `within_s`."""
    sock.settimeout(within_s)
    data = b""
    end = time.monotonic() + within_s
    try:
        while time.monotonic() < end:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except TimeoutError:
        pass
    pytest.fail(f"the agent kept the connection open for {within_s:g}s (got {data[:80]!r})")


def test_connections_that_send_no_request_headers_are_closed(strict_agent):
    silent = socket.create_connection(("127.0.0.1", strict_agent))
    half = socket.create_connection(("127.0.0.1", strict_agent))
    half.sendall(b"GET /devices HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    with silent, half:
        assert closed_by_server(silent) == b""
        assert closed_by_server(half) == b""
    assert httpx.get(f"http://127.0.0.1:{strict_agent}/health", timeout=10).status_code == 200


def test_a_stalled_upload_gets_408(strict_agent):
    with socket.create_connection(("127.0.0.1", strict_agent)) as s:
        s.sendall(b"POST /measure?filename=m.onnx HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)  # then nothing
        answer = closed_by_server(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"no part of the upload arrived for 1 s" in answer


def test_a_flood_of_connections_gets_503_then_the_agent_recovers(strict_agent):
    flood = [socket.create_connection(("127.0.0.1", strict_agent)) for _ in range(8)]
    try:
        time.sleep(0.5)
        r = httpx.get(f"http://127.0.0.1:{strict_agent}/health", timeout=10)
        assert r.status_code == 503  # the agent's limit, not a hang or an exhausted server
        for s in flood:
            closed_by_server(s)  # the silent ones go at the header timeout...
    finally:
        for s in flood:
            s.close()
    assert httpx.get(f"http://127.0.0.1:{strict_agent}/health", timeout=10).status_code == 200  # ...and it serves


def test_docs_are_off_and_the_schema_needs_the_token(agent):
    port, _ = agent
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 401
    assert httpx.get(f"{base}/docs", timeout=10).status_code == 404
    assert httpx.get(f"{base}/redoc", timeout=10).status_code == 404
    assert "/measure" in httpx.get(f"{base}/openapi.json", headers=auth(), timeout=10).json()["paths"]


def test_a_measurement_stops_when_its_client_goes_away(agent, tmp_path):
    port, _ = agent
    url, model = f"http://127.0.0.1:{port}/measure", heavy_onnx(tmp_path).read_bytes()
    with pytest.raises(httpx.ReadTimeout):  # runs=100000 of tens of ms: the client leaves after 3 s
        httpx.post(url, params={"filename": "heavy.onnx", "warmup": 0, "runs": 100000}, content=model,
                   headers=auth(), timeout=3)
    # the device is free again at once, not after the hour the first measurement would have taken
    r = httpx.post(url, params={"filename": "heavy.onnx", "warmup": 0, "runs": 2}, content=model, headers=auth(),
                   timeout=60)
    assert r.status_code == 200 and r.json()["runs"] == 2


def test_a_queued_request_gives_up_when_its_client_goes_away():
    from fastapi import HTTPException

    from hwnas.latency.agent import _DeviceSlot, wait_for_device
    slot = _DeviceSlot(get_device("cpu"), threading.Lock())
    slot.lock.acquire()  # another request is measuring
    gone = threading.Event()
    threading.Timer(0.3, gone.set).start()
    t0 = time.monotonic()
    with pytest.raises(HTTPException) as e:
        wait_for_device(slot, gone, queue_timeout_s=600)
    assert e.value.status_code == 499 and time.monotonic() - t0 < 30
    assert slot.lock.locked()  # still its owner's


def test_a_measurement_past_the_agents_cap_stops_with_one_line(tmp_path, monkeypatch):
    proc, port = start_agent(tmp_path, "--max-request-s", "2")
    try:
        monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
        heavy = heavy_onnx(tmp_path)
        r = httpx.post(f"http://127.0.0.1:{port}/measure", params={"filename": "heavy.onnx", "runs": 100000},
                       content=heavy.read_bytes(), headers=auth(), timeout=60)
        assert r.status_code == 504
        assert r.json()["detail"] == "measurement exceeded this agent's cap of 2 s (--max-request-s)"
        dev = get_device("farbox", client_devices(tmp_path, port))
        art = Artifact(format="onnx", name="heavy", input_shapes={"x": (1024, 1024)}, path=heavy)
        with pytest.raises(HwnasError, match=r"cap of 2 s \(--max-request-s\)"):
            dev.measure(art, warmup=0, runs=100000)
        assert dev.measure(art, warmup=0, runs=2).count == 2  # and the device serves the next request
    finally:
        stop(proc)


def test_a_huge_input_shape_is_a_400_with_one_line(agent, tmp_path):
    port, _ = agent
    relu = onnx_file(tmp_path / "relu.onnx")
    line = "input 1x3x200000x200000 (float32) would need 447 GiB; hwnas allocates at most 2 GiB of inputs"
    r = httpx.post(f"http://127.0.0.1:{port}/measure", content=relu.read_bytes(), headers=auth(), timeout=60,
                   params={"filename": "relu.onnx", "input_shape": "1x3x200000x200000", "warmup": 0, "runs": 1})
    assert r.status_code == 400 and r.json()["detail"] == line
    with pytest.raises(HwnasError) as e:  # the bound is the device layer's: the CLI gets the same line
        get_device("cpu").measure(str(relu), "1x3x200000x200000", warmup=0, runs=1)
    assert str(e.value) == line
    # a model that fails when run (x @ x of a 2x3 x) is the client's error too: a 400 line, no 500
    mm = onnx_file(tmp_path / "mm.onnx", "MatMul", ("n", "m"))
    r = httpx.post(f"http://127.0.0.1:{port}/measure", content=mm.read_bytes(), headers=auth(), timeout=60,
                   params={"filename": "mm.onnx", "input_shape": "2x3", "warmup": 0, "runs": 1})
    assert r.status_code == 400 and r.json()["detail"].startswith("device 'cpu' could not run mm.onnx: ")


def test_an_invalid_model_is_a_400_naming_no_server_path(agent):
    port, tmp = agent
    r = httpx.post(f"http://127.0.0.1:{port}/measure", params={"filename": "garbage.onnx"},
                   content=b"\x00garbage\xff" * 100, headers=auth(), timeout=60)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("garbage.onnx is not a readable ONNX model"), detail
    for server_path in (str(tmp), str(tmp.resolve()), "hwnas-agent-", "upload-", tempfile.gettempdir()):
        assert server_path not in detail
    # its upload folder went with the request
    assert list((tmp / "agent-tmp" / f"hwnas-agent-{os.getuid()}").iterdir()) == []


def test_upload_folders_of_dead_agents_are_removed_at_start(tmp_path, monkeypatch):
    from hwnas.latency.agent import create_app, upload_root
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = upload_root()
    assert root == tmp_path / f"hwnas-agent-{os.getuid()}" and root.stat().st_mode & 0o777 == 0o700
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = root / f"upload-{gone.pid}-k1ll3d"
    dead.mkdir()
    (dead / "m.onnx").write_bytes(b"left behind by a killed agent")
    live = root / f"upload-{os.getpid()}-busy"  # another agent (this process) still measuring
    live.mkdir()
    create_app(None)
    assert not dead.exists() and live.exists()


def test_a_token_file_others_can_read_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    r = hwnas("agent", "serve", "--port", "0", "--token-file", str(token), timeout=60)
    assert_one_line_error(r, f"`chmod 600 {token}`", only_line=True)


@pytest.mark.parametrize("answer", ["never", "trickle"])
def test_a_frozen_agent_is_an_error_within_timeout_s(tmp_path, monkeypatch, answer):
    """An agent that lists its devices and then never answers a measurement (or trickles its answer a byte at a
    time, which no per-read timeout ever catches): the client's call ends within its timeout_s."""
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    fp = get_device("cpu").fingerprint()
    devices = json.dumps([{"name": "cpu", "backend": "onnxruntime", "artifact_format": "onnx", "fingerprint": fp,
                           "usable": True}]).encode()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    done = threading.Event()

    def serve_frozen():
        server.settimeout(0.2)
        held = []
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            head = conn.recv(65536)
            if head.startswith(b"GET /devices"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(devices)).encode() + b"\r\n\r\n" + devices)
            elif answer == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Wait: " + b"." * 1000:
                    if done.wait(0.25):
                        break
                    conn.sendall(bytes([byte]))
        for c in held:
            c.close()

    t = threading.Thread(target=serve_frozen, daemon=True)
    t.start()
    try:
        dev = get_device("farbox", client_devices(tmp_path, server.getsockname()[1], timeout_s=2.0))
        art = dev.prepare(create("lenet5", num_classes=10).eval(), SHAPE)  # lists the devices: answered
        t0 = time.monotonic()
        with pytest.raises(HwnasError) as e:
            dev.measure(art, warmup=1, runs=2)
        assert time.monotonic() - t0 < 15
        assert str(e.value) == (f"device 'farbox': the agent at 127.0.0.1:{server.getsockname()[1]} gave no "
                                f"answer within 2s (timeout_s)")
    finally:
        done.set()
        t.join(10)
        server.close()
