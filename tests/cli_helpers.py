"""Running `python -m hwnas ...` from tests and checking the CLI's error contract."""
import subprocess
import sys


def hwnas(*args, cwd=None, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def assert_one_line_error(r, match, only_line=False):
    """Exit != 0, the last stderr line is `Error: ...` containing `match`, no traceback; `only_line`: nothing
    else on stderr either (commands that log progress before failing are checked on their last line)."""
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.stderr
    assert not only_line or len(lines) == 1, r.stderr
    assert match in lines[-1], lines[-1]
    assert "Traceback" not in r.stderr
