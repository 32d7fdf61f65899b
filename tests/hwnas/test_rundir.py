"""Run directories: one writer, unique temp names, damage named (never silently truncated), one resume rule."""
import os
import signal
import subprocess
import sys

import pytest

from hwnas.errors import HwnasError
from hwnas.rundir import (LOCK, RunLock, append_jsonl, atomic_write_json, check_same_config, prepare_dir,
                          read_json, read_jsonl)

HOLD = ("import sys, time\n"
        "from hwnas.rundir import RunLock\n"
        "RunLock(sys.argv[1], 'search').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with RunLock(tmp_path, "search"):
        with pytest.raises(HwnasError, match=rf"in use by another hwnas search \(PID {os.getpid()} on "):
            RunLock(tmp_path, "search").acquire()
    RunLock(tmp_path).acquire().release()  # released with the block


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(HwnasError, match=rf"PID {p.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    with RunLock(tmp_path):  # the kernel dropped the dead process's lock
        assert (tmp_path / LOCK).read_text().startswith(f"PID {os.getpid()} ")


def test_atomic_writes_leave_no_temporary_behind(tmp_path):
    for i in range(3):
        atomic_write_json(tmp_path / "state.json", {"i": i})
    assert read_json(tmp_path / "state.json") == {"i": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_torn_last_line_is_cut_off_and_appends_continue_cleanly(tmp_path):
    path = tmp_path / "samples.jsonl"
    for i in range(3):
        append_jsonl(path, {"i": i})
    with open(path, "ab") as f:
        f.write(b'{"i": 3, "arch": [1, 2')  # a kill mid-write
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert path.read_bytes().endswith(b"[1, 2")  # read without repair leaves the file alone
    assert read_jsonl(path, repair=True) == [{"i": 0}, {"i": 1}, {"i": 2}]
    append_jsonl(path, {"i": 3})
    assert read_jsonl(path) == [{"i": i} for i in range(4)]


@pytest.mark.parametrize("bad", [b'{"i": 1, "arch": [1\n', b"\xff\xfe garbage\n", b"[1, 2]]\n"])
def test_damage_before_good_lines_is_refused_with_its_line_number(tmp_path, bad):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b'{"i": 0}\n' + bad + b'{"i": 2}\n{"i": 3}\n')
    before = path.read_bytes()
    with pytest.raises(HwnasError, match=r"samples.jsonl: line 2 is not a complete JSON record but lines after it"):
        read_jsonl(path, repair=True)
    assert path.read_bytes() == before  # nothing truncated


def test_a_damaged_json_file_is_named_not_a_decoder_error(tmp_path):
    (tmp_path / "state.json").write_bytes(b'{"phase": "iter')
    with pytest.raises(HwnasError, match=r"the NetAdapt run state .*state.json is damaged \(not JSON"):
        read_json(tmp_path / "state.json", "NetAdapt run state")


def test_same_config_rule_names_every_change_but_the_resumable_ones(tmp_path):
    saved = {"space": "mnasnet", "seed": 0, "samples": 100, "decay": 0.98}
    check_same_config(saved, {**saved, "samples": 300}, tmp_path, ignore=("samples",))
    with pytest.raises(HwnasError, match=r"the settings changed \(decay: 0.98 -> 0.9, seed: 0 -> 1\)"):
        check_same_config(saved, {**saved, "seed": 1, "decay": 0.9, "samples": 5}, tmp_path, ignore=("samples",))


def test_an_output_path_that_cannot_be_a_directory_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HwnasError, match=r"--out .*file exists and is not a directory"):
        prepare_dir(tmp_path / "file")
    with pytest.raises(HwnasError, match=r"a parent of it is a file"):
        prepare_dir(tmp_path / "file" / "run")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(HwnasError, match=r"cannot create --out .*Permission denied"):
            prepare_dir(ro / "run")
