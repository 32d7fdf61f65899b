"""Device farms: a pool of `hwnas agent serve` agents on 127.0.0.1 (real TCP) splitting one LUT build."""
import re

import pytest
import yaml

from hwnas.errors import HwnasError
from hwnas.executor import LocalExecutor
from hwnas.latency.devices import get_device, list_devices
from hwnas.latency.lut.build import build_lut
from hwnas.latency.lut.store import LutStore
from tests.latency.lut_helpers import build_and_kill, fast_build, micro_space
from tests.latency.test_agent import TOKEN, client_devices, start_agent, stop

BUILD = fast_build(rounds=2, runs=2, fit_networks=2, show_progress=False)


def farm_file(tmp_path, ports, remote_devices=None, **farm):
    """devices.yaml with agents a0, a1, ... (one per port) and the pool `farm` of all of them."""
    entries = {}
    for i, port in enumerate(ports):
        (tmp_path / f"c{i}").mkdir(exist_ok=True)
        over = {"device": remote_devices[i]} if remote_devices else {}
        entries[f"a{i}"] = yaml.safe_load(client_devices(tmp_path / f"c{i}", port, **over).read_text())["farbox"]
    entries["farm"] = {"pool": list(entries), **farm}
    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    procs = [start_agent(tmp_path_factory.mktemp(f"agent{i}")) for i in range(2)]
    yield [port for _, port in procs]
    for proc, _ in procs:
        stop(proc)


def split_counts(err: str) -> dict[str, int]:
    """Jobs per agent, summed over the builder's "timed N on agent ..., M on agent ..." lines."""
    counts: dict[str, int] = {}
    for n, q in re.findall(r"(\d+) on (agent [^,;\n]+)", err):
        counts[q] = counts.get(q, 0) + int(n)
    return counts


@pytest.mark.slow
def test_a_farm_of_two_agents_splits_a_build(agents, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    farm = get_device("farm", farm_file(tmp_path, agents))
    space = micro_space("micro-farm")
    with LocalExecutor() as ex:
        rep = build_lut(space, farm, tmp_path / "farm.db", executor=ex, **BUILD)
    ops = space.all_ops()
    fp = get_device("cpu").fingerprint_key()     # the agents' device: same machine, same runtime
    assert rep.fingerprint == fp and rep.measured == len(ops)
    rows = [(r["fingerprint"], r["key"], r["round"]) for r in LutStore(tmp_path / "farm.db").rows()]
    assert sorted(rows) == sorted((fp, s.key, r) for s in ops for r in range(2))   # one table, each row once
    counts = split_counts(capfd.readouterr().err)
    assert sorted(counts) == sorted(f"agent 127.0.0.1:{p}/cpu" for p in agents)
    assert all(n > 0 for n in counts.values()) and sum(counts.values()) >= len(ops)


def test_a_farm_refuses_mixed_fingerprints_unless_asked(agents, tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    path = farm_file(tmp_path, agents, remote_devices=["cpu", "cpu-all"])
    with pytest.raises(HwnasError, match=r"the pool mixes fingerprints.*allow_mixed: true"):
        build_lut(micro_space(), get_device("farm", path), tmp_path / "mixed.db", **BUILD)
    mixed = get_device("farm", farm_file(tmp_path, agents, remote_devices=["cpu", "cpu-all"], allow_mixed=True))
    assert mixed.fingerprint_key() == get_device("a0", path).fingerprint_key()   # the first member's


def test_farm_entries_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, match in [("pool1:\n  pool: [cpu, nosuch]\n", r"device 'pool1': field 'pool': unknown device 'nosuch'"),
                        ("pool1:\n  pool: []\n", r"device 'pool1': field 'pool'"),
                        ("pool1:\n  pool: [cpu]\n  spare: 1\n", r"device 'pool1': field 'spare'"),
                        ("p1:\n  pool: [cpu]\np2:\n  pool: [p1]\n", r"'p1' is itself a pool")]:
        bad.write_text(text)
        with pytest.raises(HwnasError, match=match):
            list_devices(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("local2:\n  pool: [cpu]\n")
    assert list_devices(ok)["local2"].backend == "farm"


@pytest.mark.slow
def test_an_agent_killed_mid_build_loses_and_duplicates_no_row(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HWNAS_TEST_AGENT_TOKEN", TOKEN)
    procs = []
    for i in range(2):
        (tmp_path / f"ag{i}").mkdir()
        procs.append(start_agent(tmp_path / f"ag{i}"))
    try:
        farm = get_device("farm", farm_file(tmp_path, [p for _, p in procs]))
        space, rounds = micro_space("micro-farm-kill"), 2
        db = tmp_path / "kill.db"
        store = LutStore(db)

        def build():
            with LocalExecutor() as ex:
                return build_lut(space, farm, db, executor=ex, chunk=2, **BUILD)  # many small tasks to fail on

        # one agent of the pool dies mid-build
        outcome = build_and_kill(build, store, rows=6, pid=procs[1][0].pid)
        assert "error" not in outcome, outcome.get("error")
        fp = get_device("cpu").fingerprint_key()
        rows = [(r["fingerprint"], r["key"], r["round"]) for r in store.rows()]
        assert len(rows) == len(set(rows))
        assert set(rows) == {(fp, s.key, r) for s in space.all_ops() for r in range(rounds)}
        err = capfd.readouterr().err
        assert "taking it out of the pool" in err        # the dead agent was dropped, its work done elsewhere
    finally:
        for proc, _ in procs:
            stop(proc)
