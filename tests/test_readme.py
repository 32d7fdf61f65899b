"""The README's Python examples run as written (after the table they name is built)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch, built):
    import sqlite3
    from hwnas.latency.lut import LutStore
    with sqlite3.connect(tmp_path / "lut.db") as copy:  # the session's small kernel table, as the default database
        LutStore(built[0]).db.backup(copy)
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the examples write their run directories (runs/...) where they run
    from hwnas.latency.lut import build_lut
    from hwnas.search.spaces import get_space
    from tests.latency.lut_helpers import fast_build
    build_lut(get_space("mnasnet-tiny"), "cpu", **fast_build(rounds=2, runs=3, fit_networks=4, show_progress=False,
                                                              log=lambda m: None))
    for block in python_blocks():
        exec(compile(block, "README.md", "exec"), {})
