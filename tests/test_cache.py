"""hwnas.cache: one root, a size bound with least-recently-used eviction, safe beside other processes; and
exports that hit the cache in every run for the same seeded network."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwnas import cache
from hwnas.errors import HwnasError

HOUR = 3600


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "cache"
    monkeypatch.setenv("HWNAS_CACHE", str(r))
    monkeypatch.delenv("HWNAS_CACHE_MAX", raising=False)
    return r


def put(root: Path, kind: str, name: str, size: int = 1000, age_s: float = 2 * HOUR) -> Path:
    """A cache entry of `size` bytes last used `age_s` ago."""
    p = root / kind / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def names(ents):
    return [e.path.name for e in ents]


# -- where ------------------------------------------------------------------------------------------------
def test_root_resolution_order(tmp_path, monkeypatch):
    from hwnas.latency.export import cache_dir as artifacts_dir
    from hwnas.search.estimators.supernet import _cache_root as supernet_dir
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("HWNAS_CACHE", raising=False)
    monkeypatch.delenv("HWNAS_HOME", raising=False)
    assert cache.root_and_source() == (tmp_path / "user" / ".cache" / "hwnas", "default")
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    assert cache.root_and_source() == (tmp_path / "home" / "cache", "HWNAS_HOME")
    monkeypatch.setenv("HWNAS_CACHE", "")  # empty counts as unset, never the working directory
    assert cache.cache_root() == tmp_path / "home" / "cache"
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "c"))
    assert cache.root_and_source() == (tmp_path / "c", "HWNAS_CACHE")
    # the export cache and the supernet checkpoints both live under it (the supernet used to ignore HWNAS_HOME)
    assert artifacts_dir() == tmp_path / "c" / "artifacts" and artifacts_dir().is_dir()
    assert supernet_dir() == tmp_path / "c" / "supernet"
    monkeypatch.delenv("HWNAS_CACHE")
    assert supernet_dir() == tmp_path / "home" / "cache" / "supernet"
    with pytest.raises(HwnasError, match="unknown cache kind 'luts'; the kinds are artifacts, supernet"):
        cache.cache_dir("luts")


# -- parsing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("500 mb", 500 * 10**6), ("1.5GiB", 1536 * 2**20),
    ("800k", 800_000), ("123", 123), ("0", None), ("0GB", None)])
def test_sizes(text, expected):
    assert cache.parse_size(text) == expected


def test_default_bound_and_a_bad_bound_is_one_line(root, monkeypatch):
    assert cache.max_bytes() == 2 * 10**9
    monkeypatch.setenv("HWNAS_CACHE_MAX", "lots")
    with pytest.raises(HwnasError) as e:
        cache.cache_dir("artifacts")  # refused before an export starts, not after it
    assert str(e.value) == ("HWNAS_CACHE_MAX='lots' is not a size; write it like 2GB, 500MB or 1.5GiB "
                            "(0 means no bound)")
    for bad in ("-1GB", "2 XB", ""):
        monkeypatch.setenv("HWNAS_CACHE_MAX", bad)
        if bad:
            with pytest.raises(HwnasError, match="is not a size"):
                cache.max_bytes()
        else:
            assert cache.max_bytes() == 2 * 10**9  # empty = unset


def test_durations():
    assert cache.parse_duration("7d") == 7 * 86400 and cache.parse_duration("1.5h") == 5400
    assert cache.parse_duration("30m") == 1800 and cache.parse_duration("2w") == 14 * 86400
    for bad in ("7", "7 days", "-1d", "d"):
        with pytest.raises(HwnasError, match=f"--older-than {bad!r} is not a duration"):
            cache.parse_duration(bad)


# -- least recently used ----------------------------------------------------------------------------------
def test_a_hit_moves_an_entry_to_the_back_and_keeps_its_write_time(root, monkeypatch):
    a = put(root, "artifacts", "a.onnx", age_s=5 * HOUR)
    put(root, "artifacts", "b.onnx", age_s=4 * HOUR)
    put(root, "supernet", "c.safetensors", age_s=3 * HOUR)
    assert names(cache.entries()) == ["a.onnx", "b.onnx", "c.safetensors"]
    mtime = a.stat().st_mtime_ns
    assert cache.touch(a)
    assert a.stat().st_mtime_ns == mtime  # backends tell a changed file by it
    assert names(cache.entries()) == ["b.onnx", "c.safetensors", "a.onnx"]
    assert abs(cache.last_use(a) - time.time()) < 60
    assert not cache.touch(root / "artifacts" / "missing.onnx")  # a miss
    monkeypatch.setenv("HWNAS_CACHE_MAX", "2500")
    removed = cache.evict()
    assert names(removed) == ["b.onnx"]  # the least recently used, across kinds
    assert names(cache.entries()) == ["c.safetensors", "a.onnx"]


def test_bound_respected_and_the_fresh_entry_kept(root, monkeypatch):
    for i in range(6):
        put(root, "artifacts", f"old{i}.onnx", age_s=(10 - i) * HOUR)
    monkeypatch.setenv("HWNAS_CACHE_MAX", "3kB")
    fresh = put(root, "artifacts", "fresh.tflite", size=2500, age_s=3 * HOUR)  # old times, kept by name alone
    removed = cache.evict(keep=fresh)
    assert names(removed) == [f"old{i}.onnx" for i in range(6)]  # oldest first, until 3 kB fits
    assert names(cache.entries()) == ["fresh.tflite"]
    huge = put(root, "artifacts", "huge.tflite", size=5000, age_s=2 * HOUR)
    assert names(cache.evict(keep=huge)) == ["fresh.tflite"] and huge.exists()  # over the bound alone: kept
    monkeypatch.setenv("HWNAS_CACHE_MAX", "0")  # no bound
    put(root, "artifacts", "more.onnx", size=10_000)
    assert cache.evict() == [] and len(cache.entries()) == 2


def test_entries_used_in_the_last_hour_stay(root, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE_MAX", "1000")
    put(root, "artifacts", "timed-now.onnx", age_s=10 * 60)  # another run may be timing it
    put(root, "artifacts", "stale.onnx", age_s=2 * HOUR)
    new = put(root, "artifacts", "new.onnx", age_s=0)
    assert names(cache.evict(keep=new)) == ["stale.onnx"]
    assert sorted(names(cache.entries())) == ["new.onnx", "timed-now.onnx"]


def test_folders_are_one_entry_sized_recursively(root, monkeypatch):
    d = root / "supernet" / "run-1"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"x" * 700)
    (d / "sub" / "b.bin").write_bytes(b"x" * 600)
    old = time.time() - 5 * HOUR
    os.utime(d, (old, old))
    put(root, "supernet", "newer.json", size=100, age_s=3 * HOUR)
    (ent, newer) = cache.entries()
    assert (ent.path, ent.bytes, newer.path.name) == (d, 1300, "newer.json")
    monkeypatch.setenv("HWNAS_CACHE_MAX", "1000")
    assert names(cache.evict()) == ["run-1"] and not d.exists()
    assert not [p for p in (root / "supernet").iterdir() if p.name.startswith(".")]  # no leftover
    d.mkdir()
    os.utime(d, (old, old))
    assert cache.touch(d) and abs(cache.last_use(d) - time.time()) < 60


def test_writes_in_progress_and_measured_data_are_never_evicted(root, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE_MAX", "1")
    writing = put(root, "artifacts", ".m.tflite.4242.0a1b2c3d.tmp", size=50_000, age_s=2 * HOUR)
    abandoned = put(root, "artifacts", ".n.onnx.4243.deadbeef.tmp", size=50_000, age_s=2 * 86400)
    data = [put(root, "artifacts", n, age_s=9 * HOUR) for n in ("lut.db", "lut.db-wal", "calibration.json")]
    old = put(root, "artifacts", "old.onnx", age_s=9 * HOUR)
    assert names(cache.entries()) == ["old.onnx"]  # temporaries and data are not entries
    assert names(cache.evict()) == ["old.onnx"]
    assert writing.exists() and all(p.exists() for p in data)
    assert not abandoned.exists()  # a killed writer's, a day old
    assert not old.exists()


def test_an_entry_vanishing_under_an_eviction_is_no_error(root):
    for i in range(4):
        put(root, "artifacts", f"e{i}.onnx", age_s=(9 - i) * HOUR)
    listed = cache.entries()
    chosen = cache.select_lru(listed, bound=1000)
    assert names(chosen) == ["e0.onnx", "e1.onnx", "e2.onnx"]
    chosen[0].path.unlink()  # another machine on the shared cache got there first
    assert [cache.remove(e.path) for e in chosen] == [False, True, True]
    (root / "artifacts" / "e3.onnx").unlink()
    assert cache.evict() == [] and cache.clear() == ([], [])


RACER = ("import os, sys, time\n"
         "from hwnas import cache\n"
         "while not os.path.exists(sys.argv[1]): time.sleep(0.005)\n"
         "print(len(cache.evict()))\n")


def test_processes_evicting_at_once_each_remove_a_share_and_fit_the_bound(root, tmp_path):
    for i in range(120):
        put(root, "artifacts", f"e{i:03d}.onnx", size=1000, age_s=HOUR + 1000 + i)
    go = tmp_path / "go"
    env = {**os.environ, "HWNAS_CACHE": str(root), "HWNAS_CACHE_MAX": "20kB"}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    left = cache.entries()
    assert sum(e.bytes for e in left) <= 20_000 and len(left) == 20
    assert sum(int(o[0]) for o in outs) == 100  # each entry removed once, by one of them
    assert names(left) == [f"e{i:03d}.onnx" for i in range(19, -1, -1)]  # the most recently used stayed


def test_clear_by_kind_and_age(root):
    put(root, "artifacts", "a-old.onnx", age_s=10 * 86400)
    put(root, "artifacts", "a-new.onnx", age_s=HOUR)
    put(root, "supernet", "s-old.safetensors", age_s=10 * 86400)
    removed, failed = cache.clear("artifacts", older_than=7 * 86400)
    assert names(removed) == ["a-old.onnx"] and failed == []
    removed, _ = cache.clear(older_than=7 * 86400)
    assert names(removed) == ["s-old.safetensors"]
    assert names(cache.clear()[0]) == ["a-new.onnx"] and cache.entries() == []
    with pytest.raises(HwnasError, match="unknown cache kind"):
        cache.clear("onnx")


# -- exports hit the cache in every run ---------------------------------------------------------------------
KEYS = ("import torch\n"
        "from tests.test_cache import seeded_net\n"
        "from hwnas.latency.export import onnx_cache_path\n"
        "from hwnas.latency.tflite import tflite_cache_path\n"
        "m = seeded_net()\n"
        "print(onnx_cache_path(m, (1, 3, 16, 16)))\n"
        "print(tflite_cache_path(m, (1, 3, 16, 16)))\n")


def seeded_net():
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))


def test_the_same_seeded_network_has_the_same_export_key_in_every_process(root):
    import torch
    from hwnas.latency.export import onnx_cache_path
    from hwnas.latency.tflite import tflite_cache_path
    here = [onnx_cache_path(seeded_net(), (1, 3, 16, 16)), tflite_cache_path(seeded_net(), (1, 3, 16, 16))]
    # a fresh interpreter: torch seeds its generator at random in each process
    r = subprocess.run([sys.executable, "-c", KEYS], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HWNAS_CACHE": str(root)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(p) for p in here]
    other = seeded_net()
    with torch.no_grad():
        other[0].weight.add_(1e-3)
    assert tflite_cache_path(other, (1, 3, 16, 16)) != here[1]
    assert tflite_cache_path(seeded_net(), (1, 3, 32, 32)) != here[1]


def test_a_tflite_hit_is_reused_as_it_is_and_marked_used(root):
    """No conversion runs on a hit (litert-torch is not needed for one)."""
    from hwnas.latency.tflite import export_tflite_cached, tflite_cache_path
    path = tflite_cache_path(seeded_net(), (1, 3, 16, 16))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"cached flatbuffer")
    old = time.time() - 5 * HOUR
    os.utime(path, (old, old))
    assert export_tflite_cached(seeded_net(), (1, 3, 16, 16)) == path
    assert path.read_bytes() == b"cached flatbuffer" and path.stat().st_mtime == pytest.approx(old)
    assert abs(cache.last_use(path) - time.time()) < 60


def test_an_onnx_export_evicts_the_least_recently_used_and_is_reused(root, monkeypatch):
    from hwnas.latency.export import export_onnx_cached
    monkeypatch.setenv("HWNAS_CACHE_MAX", "30kB")
    olds = [put(root, "artifacts", f"old{i}.onnx", size=10_000, age_s=(5 - i) * HOUR) for i in range(3)]
    res = export_onnx_cached(seeded_net(), (1, 3, 16, 16))
    assert res.path.exists() and res.max_abs_diff is not None  # exported and checked
    assert not olds[0].exists() and olds[2].exists()  # just enough of the oldest went
    assert sum(e.bytes for e in cache.entries()) <= 30_000
    inode = res.path.stat().st_ino
    again = export_onnx_cached(seeded_net(), (1, 3, 16, 16))  # a second build of the same network: a hit
    assert again.path == res.path and again.max_abs_diff is None and res.path.stat().st_ino == inode
