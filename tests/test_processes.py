"""No process outlives a killed command: pool workers die with their parent; Ctrl-C while starting is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

POOL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from rnnkit.training.executors import open_executor

    def run(spec):
        with open(os.path.join(sys.argv[1], str(os.getpid())), "w"):
            pass
        time.sleep(120)
        return {}

    with open_executor(jobs=2) as executor:
        futures = [executor.submit(run, {}) for _ in range(2)]
        time.sleep(120)
""")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process, read from /proc."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_pool_workers_die_when_their_parent_is_killed(sig, tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pids")], cwd=tmp_path)
    (tmp_path / "pids").mkdir()
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "pids").iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in (tmp_path / "pids").iterdir()]
    assert len(workers) == 2
    parent.send_signal(sig)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)


def test_ctrl_c_while_the_command_starts_prints_one_line_and_exits_130():
    env = {**os.environ, "RNNKIT_BLAS_AUTO": "0"}
    command = subprocess.Popen([sys.executable, "-m", "rnnkit", "gradcheck"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env)
    maps = Path(f"/proc/{command.pid}/maps")  # the package imports its start-up handler before NumPy: once NumPy's
    deadline = time.monotonic() + 60            # core is mapped, the command is importing rnnkit (however loaded
    while "_multiarray_umath" not in maps.read_text() and time.monotonic() < deadline:  # the machine is)
        time.sleep(0.02)
    command.send_signal(signal.SIGINT)
    err = command.communicate(timeout=60)[1].decode()
    assert command.returncode == 130 and err == "rnnkit: interrupted\n"
