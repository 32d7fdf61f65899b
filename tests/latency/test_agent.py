"""`hwnas agent serve` and the remote backend, over real TCP on 127.0.0.1 with the agent in a subprocess."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
import yaml

from hwnas.errors import HwnasError
from hwnas.latency.devices import Artifact, get_device
from hwnas.models import create

TOKEN = "test-token-0123456789"
SHAPE = (1, 3, 32, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp_path, *extra, token=TOKEN):
    port = free_port()
    args = [sys.executable, "-m", "hwnas", "agent", "serve", "--port", str(port), *extra]
    if token:
        (tmp_path / "token").write_text(token + "\n")
        args += ["--token-file", str(tmp_path / "token")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    tmp = tmp_path_factory.mktemp("agent")
    proc, port = start_agent(tmp, "--max-upload-mb", "1")
    yield port, tmp
    stop(proc)


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
    schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
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
            dev = get_device("farbox", path)
            m = dev.measure(art, warmup=5, runs=400)
            results.append((m, dev.backend.last_response["agent"]))
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
