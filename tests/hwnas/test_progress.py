import os
import pty
import subprocess
import sys

BAR = ("from hwnas.progress import progress, track, log\n"
       "with progress(5, 'counting') as b:\n"
       "    [b.advance() for _ in range(5)]\n"
       "assert list(track(range(3), 'tracking')) == [0, 1, 2]\n"
       "log('done [1, 3, 32, 32]')\n")


def run(code, tty, **env):
    """Run `code` in a fresh Python with stderr on a pseudo-terminal (tty=True) or a pipe."""
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", **env}
    if not tty:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout, r.stderr
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = p.communicate(timeout=60)[0]
    os.close(master)
    assert p.returncode == 0
    return out.decode(), b"".join(chunks).decode(errors="replace")


def test_silent_off_a_terminal_except_log():
    out, err = run(BAR, tty=False, HWNAS_NO_PROGRESS="0")
    assert out == "" and err == "done [1, 3, 32, 32]\n"


def test_bar_drawn_on_a_terminal():
    out, err = run(BAR, tty=True, HWNAS_NO_PROGRESS="0")
    assert out == ""
    assert "counting" in err and "5/5" in err and "tracking" in err and "3/3" in err
    assert "done [1, 3, 32, 32]" in err


def test_env_var_silences_bars_on_a_terminal():
    out, err = run(BAR, tty=True, HWNAS_NO_PROGRESS="1")
    assert "counting" not in err and "5/5" not in err
    assert err.strip() == "done [1, 3, 32, 32]"


def test_enabled_false_is_quiet_on_a_terminal():
    code = ("from hwnas.progress import progress\n"
            "with progress(4, 'quiet', enabled=False) as b:\n"
            "    b.advance(4)\n")
    assert run(code, tty=True, HWNAS_NO_PROGRESS="0")[1] == ""
