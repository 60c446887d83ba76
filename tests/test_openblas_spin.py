"""OpenBLAS's idle spin, bounded for teams (`rnnkit._startup`, `rnnkit.machine.blas_spin_bounded`): rnnkit sets
``OPENBLAS_THREAD_TIMEOUT`` (never over the user's own setting, never with ``RNNKIT_BLAS_AUTO=0``); where NumPy
loaded OpenBLAS first, it has each loaded OpenBLAS read its environment again and stop its threads — every one of
them or none, never while another non-daemon thread runs — and the bound counts as in effect only then."""

import ctypes
import json
import os
import subprocess
import sys
import threading
import types

import pytest

from rnnkit import _startup, machine


def test_openblas_spin_is_bounded_only_where_the_setting_came_before_numpy_or_its_threads_restarted(monkeypatch):
    monkeypatch.setattr(_startup, "OPENBLAS_RESTARTED", False)
    monkeypatch.setattr(_startup, "NUMPY_LOADED_FIRST", False)
    assert machine.blas_spin_bounded({"OPENBLAS_THREAD_TIMEOUT": "22"})
    assert not machine.blas_spin_bounded({"OPENBLAS_THREAD_TIMEOUT": "28"})
    assert not machine.blas_spin_bounded({})
    monkeypatch.setattr(_startup, "NUMPY_LOADED_FIRST", True)
    monkeypatch.setattr(_startup, "ENVIRONMENT_AT_START", frozenset())
    assert not machine.blas_spin_bounded({"OPENBLAS_THREAD_TIMEOUT": "22"})  # set after NumPy loaded OpenBLAS
    monkeypatch.setattr(_startup, "OPENBLAS_RESTARTED", True)
    assert machine.blas_spin_bounded({"OPENBLAS_THREAD_TIMEOUT": "22"})  # ... and read again by it
    assert not machine.blas_spin_bounded({"OPENBLAS_THREAD_TIMEOUT": "28"})


def test_rnnkit_bounds_openblas_spin_and_never_over_the_users_setting():
    env = {}
    assert _startup.bound_blas_spin(env)
    assert env == {"OPENBLAS_THREAD_TIMEOUT": str(_startup.BLAS_SPIN_LOG2)}
    mine = {"OPENBLAS_THREAD_TIMEOUT": "26"}
    assert not _startup.bound_blas_spin(mine)
    assert mine == {"OPENBLAS_THREAD_TIMEOUT": "26"}
    opted_out = {"RNNKIT_BLAS_AUTO": "0"}
    assert not _startup.bound_blas_spin(opted_out)
    assert "OPENBLAS_THREAD_TIMEOUT" not in opted_out


def test_the_teams_line_of_rnnkit_info_says_why_the_spin_is_not_bounded(monkeypatch):
    monkeypatch.setattr(_startup, "NUMPY_LOADED_FIRST", True)
    monkeypatch.setattr(_startup, "SPIN_BOUND_SET", True)
    assert "could not restart its threads" in machine._unbounded_spin_advice()
    monkeypatch.setattr(_startup, "NUMPY_LOADED_FIRST", False)
    assert "before NumPy loads" in machine._unbounded_spin_advice()


class FakeOpenBLAS:
    """A loaded OpenBLAS as threadpoolctl describes it, whose two functions record their calls in ``calls``."""

    def __init__(self, name: str, calls: list, threading_layer: str = "pthreads", exports=True):
        self.internal_api, self.threading_layer = "openblas", threading_layer
        self.dynlib = types.SimpleNamespace()
        self._callbacks = []  # kept alive while the library is
        for symbol in _startup.OPENBLAS_RESTART_SYMBOLS if exports else ():
            callback = ctypes.CFUNCTYPE(None)(lambda symbol=symbol: calls.append((name, symbol)))
            self._callbacks.append(callback)
            setattr(self.dynlib, symbol, callback)


def with_libraries(monkeypatch, *libraries) -> None:
    """threadpoolctl sees ``libraries``; this thread is the only one (the test process may hold others: a thread
    pool's, kept from an earlier test)."""
    controller = types.SimpleNamespace(lib_controllers=list(libraries))
    monkeypatch.setitem(sys.modules, "threadpoolctl", types.SimpleNamespace(ThreadpoolController=lambda: controller))
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread()])


def test_each_loaded_openblas_reads_its_environment_then_stops_its_threads(monkeypatch):
    calls = []
    with_libraries(monkeypatch, FakeOpenBLAS("numpy's", calls), FakeOpenBLAS("scipy's", calls))
    assert _startup.restart_openblas_threads()
    assert calls == [("numpy's", "openblas_read_env"), ("numpy's", "blas_thread_shutdown_"),
                     ("scipy's", "openblas_read_env"), ("scipy's", "blas_thread_shutdown_")]


@pytest.mark.parametrize("other", [{"threading_layer": "openmp"}, {"exports": False}], ids=["on-openmp", "no-exports"])
def test_no_openblas_is_restarted_unless_every_loaded_one_can_be(monkeypatch, other):
    calls = []
    with_libraries(monkeypatch, FakeOpenBLAS("numpy's", calls), FakeOpenBLAS("other", calls, **other))
    assert not _startup.restart_openblas_threads()
    assert calls == []


def test_a_failing_threadpoolctl_leaves_openblas_as_it_is(monkeypatch):
    def fails():
        raise OSError("a library threadpoolctl cannot read")
    with_libraries(monkeypatch)
    monkeypatch.setitem(sys.modules, "threadpoolctl", types.SimpleNamespace(ThreadpoolController=fails))
    assert not _startup.restart_openblas_threads()


def test_openblas_threads_are_not_restarted_while_another_thread_of_the_program_runs(monkeypatch):
    def never(*args):
        raise AssertionError("looked for OpenBLAS while another thread of the program ran")
    monkeypatch.setattr(_startup, "_openblas_restarts", never)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not _startup.restart_openblas_threads()
    finally:
        release.set()
        other.join()


#: run with NumPy imported first: a GEMM on OpenBLAS's threads before and after ``import rnnkit``, OpenBLAS's own
#: reading of its threads' spin, and the process's threads (Linux) before the import, after it and after the GEMM
NUMPY_FIRST = """
import ctypes, json, os, numpy as np
from threadpoolctl import ThreadpoolController
def threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
a = np.random.default_rng(0).standard_normal((600, 700)); b = a.T.copy()
before = a @ b
counts = [threads()]
import rnnkit
from rnnkit import _startup, machine
counts.append(threads())
same = bool(np.array_equal(a @ b, before))
counts.append(threads())
lib = next(lib for lib in ThreadpoolController().lib_controllers if lib.internal_api == "openblas")
lib.dynlib.openblas_thread_timeout.restype = ctypes.c_uint
print(json.dumps({"threads": lib.threading_layer, "restarted": _startup.OPENBLAS_RESTARTED,
                  "bounded": machine.blas_spin_bounded(), "spin": lib.dynlib.openblas_thread_timeout(),
                  "same": same, "counts": counts, "blas_threads": lib.num_threads}))
"""


def _numpy_first(**environ) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "RNNKIT_BLAS_AUTO")}
    done = subprocess.run([sys.executable, "-c", NUMPY_FIRST], capture_output=True, text=True, timeout=120,
                          env={**env, **environ}, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_rnnkit_imported_after_numpy_restarts_openblas_threads_with_the_bound_and_never_over_the_users_setting():
    if machine.blas_info()["library"] != "openblas":
        pytest.skip("NumPy's BLAS here is not OpenBLAS")
    plain = _numpy_first()
    if plain["threads"] != "pthreads":
        pytest.skip("this OpenBLAS runs on OpenMP's threads, which OPENBLAS_THREAD_TIMEOUT does not govern")
    assert (plain["restarted"], plain["bounded"], plain["spin"], plain["same"]) == (True, True, 22, True)
    if plain["counts"][0] is not None and plain["blas_threads"] > 1:  # its workers stopped, then started again
        before, after_import, after_gemm = plain["counts"]
        assert after_import <= before - (plain["blas_threads"] - 1) and after_gemm == before
    mine = _numpy_first(OPENBLAS_THREAD_TIMEOUT="26")
    assert (mine["restarted"], mine["bounded"], mine["spin"], mine["same"]) == (False, False, 26, True)
    opted_out = _numpy_first(RNNKIT_BLAS_AUTO="0")
    assert (opted_out["restarted"], opted_out["bounded"], opted_out["spin"]) == (False, False, 0)
