"""`hwnas cache info|clear`: what is cached where, and clearing it by kind and age, never the measured data."""
import json
import os
import time

import pytest
from click.testing import CliRunner

from hwnas.cli import cli, main

DAY = 86400


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def put(path, size, age_s):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A cache with entries of both kinds, and measured data in the same folder (HWNAS_HOME = HWNAS_CACHE)."""
    r = tmp_path / "hw"
    monkeypatch.setenv("HWNAS_CACHE", str(r))
    monkeypatch.setenv("HWNAS_HOME", str(r))
    monkeypatch.delenv("HWNAS_CACHE_MAX", raising=False)
    put(r / "artifacts" / "net-a.onnx", 3000, 10 * DAY)
    put(r / "artifacts" / "net-b.tflite", 2000, 2 * DAY)
    put(r / "supernet" / "mnasnet-x.safetensors", 5000, 9 * DAY)
    put(r / "lut.db", 7000, 30 * DAY)
    put(r / "calibration.json", 100, 30 * DAY)
    return r


def age_days(iso):
    import calendar
    return (time.time() - calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))) / DAY


def test_info_json_fields(root, tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE_MAX", "500MB")
    r = run("cache", "info", "--json", "-")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["root"], d["root_from"]) == (str(root), "HWNAS_CACHE")
    assert (d["max_bytes"], d["max_from"]) == (500_000_000, "HWNAS_CACHE_MAX")
    assert (d["entries"], d["bytes"]) == (3, 10_000)  # lut.db and calibration.json are not cache
    assert age_days(d["oldest_use"]) == pytest.approx(10, abs=0.01)
    assert age_days(d["newest_use"]) == pytest.approx(2, abs=0.01)
    art, sup = d["kinds"]["artifacts"], d["kinds"]["supernet"]
    assert (art["path"], art["entries"], art["bytes"]) == (str(root / "artifacts"), 2, 5000)
    assert (sup["entries"], sup["bytes"]) == (1, 5000) and sup["oldest_use"] == sup["newest_use"]
    assert d["data"] == {"lut_db": str(root / "lut.db"), "calibration": str(root / "calibration.json")}
    assert d["temp_files"] == {"count": 0, "bytes": 0}
    out = tmp_path / "info.json"
    assert run("cache", "info", "--json", str(out)).exit_code == 0
    assert json.loads(out.read_text())["bytes"] == 10_000


def test_info_table(root):
    r = run("cache", "info")
    assert r.exit_code == 0, r.output
    assert f"cache root: {root} (from HWNAS_CACHE)" in r.output
    assert "bound:      2.0 GB (from default); used 10.0 kB" in r.output
    rows = {line.split()[0]: line.split()[1:3] for line in r.output.splitlines()[3:10]}
    assert rows == {"artifacts": ["2", "5.0"], "supernet": ["1", "5.0"], "counts": ["0", "0"], "tensorrt": ["0", "0"],
                    "kernels": ["0", "0"], "predictor": ["0", "0"], "total": ["3", "10.0"]}


def test_clear_one_kind(root):
    r = run("cache", "clear", "--kind", "artifacts")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"freed 5.0 kB: 2 entries (artifacts 2) from {root}"
    assert not list((root / "artifacts").iterdir())
    assert (root / "supernet" / "mnasnet-x.safetensors").exists()
    assert run("cache", "clear", "--kind", "artifacts").output.strip() == \
        f"nothing to clear: no artifacts entries in {root}"


def test_clear_older_than_and_everything_keeps_the_data(root):
    r = run("cache", "clear", "--older-than", "7d")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (f"freed 8.0 kB: 2 entries not used for 7d (artifacts 1, supernet 1) from {root}")
    assert [p.name for p in (root / "artifacts").iterdir()] == ["net-b.tflite"]
    assert "freed 2.0 kB: 1 entry (artifacts 1)" in run("cache", "clear").output
    assert (root / "lut.db").stat().st_size == 7000 and (root / "calibration.json").exists()


@pytest.mark.parametrize("args, env, message", [
    (["cache", "clear", "--kind", "onnx"], {},
     "Error: unknown cache kind 'onnx'; the kinds are artifacts, supernet, counts, tensorrt, kernels, predictor"),
    (["cache", "clear", "--older-than", "a week"], {},
     "Error: --older-than 'a week' is not a duration; write it like 7d, 12h, 30m or 2w"),
    (["cache", "info"], {"HWNAS_CACHE_MAX": "2 gigs"},
     "Error: HWNAS_CACHE_MAX='2 gigs' is not a size; write it like 2GB, 500MB or 1.5GiB (0 means no bound)"),
])
def test_bad_input_is_one_line(root, monkeypatch, capsys, args, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [message] and captured.out == ""
    assert (root / "artifacts" / "net-a.onnx").exists()  # nothing removed on bad input
