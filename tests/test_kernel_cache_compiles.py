"""Processes sharing one kernel cache compile each signature of a kernel once between them
(`rnnkit.kernels.cache.compile_once`): a process that finds the signature being compiled elsewhere waits for that
compile, then loads its machine code from the cache — the test suite's two workers, a layer's first use and its
compile-ahead children, Dask's workers on an empty cache."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

#: holds the lock of the float64 signature of a small kernel in the cache of NUMBA_CACHE_DIR until a line arrives
HOLDER = """
import os, sys
import numpy as np
from rnnkit.kernels import cache, mogrifier  # first: rnnkit's optimisation level, as the callers'
from numba import typeof

arrays = tuple(typeof(np.zeros((2, 3))) for _ in range(4))
lock = cache.compile_lock(mogrifier.mogrifier_round_backward, arrays)
os.makedirs(os.path.dirname(lock.lock_file), exist_ok=True)
with lock:
    print("held", flush=True)
    sys.stdin.readline()
"""
#: calls that kernel on float64 arrays, waiting at most argv[1] seconds for the signature's lock; prints the
#: kernel's cache hits and misses (compiles)
CALLER = """
import json, sys
import numpy as np
from rnnkit.kernels import cache, mogrifier

cache.COMPILE_LOCK_TIMEOUT_S = float(sys.argv[1])
print("calling", flush=True)
mogrifier.mogrifier_round_backward(*(np.ones((2, 3)) for _ in range(4)))
stats = mogrifier.mogrifier_round_backward.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def start(code: str, cache_dir, *args) -> subprocess.Popen:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "RNNKIT_COMPILE_AHEAD": "never"}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def counts(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def test_a_process_that_finds_a_signature_being_compiled_waits_and_loads_what_the_other_saved(tmp_path):
    holder = start(HOLDER, tmp_path)
    assert holder.stdout.readline().strip() == "held"
    waiting = start(CALLER, tmp_path, 600)
    assert waiting.stdout.readline().strip() == "calling"
    compiled_meanwhile = counts(start(CALLER, tmp_path, 0))  # does not wait: compiles and saves
    holder.communicate("release\n", timeout=60)
    assert compiled_meanwhile == {"hits": 0, "misses": 1}
    assert counts(waiting) == {"hits": 1, "misses": 0}  # it waited for the lock, then loaded


def test_a_compile_that_cannot_get_its_lock_in_time_compiles_its_own_copy(tmp_path):
    holder = start(HOLDER, tmp_path)
    assert holder.stdout.readline().strip() == "held"
    try:
        assert counts(start(CALLER, tmp_path, 0.1)) == {"hits": 0, "misses": 1}
    finally:
        holder.communicate("release\n", timeout=60)


def test_every_cached_kernel_of_the_package_compiles_under_its_signature_lock():
    import importlib

    from numba.core.caching import FunctionCache

    from rnnkit.kernels import cache

    kernels = []
    for path in cache.KERNEL_FILES:
        package = "rnnkit.define" if path.parent.name == "define" else "rnnkit.kernels"
        module = importlib.import_module(f"{package}.{path.stem}")
        kernels += [f for f in vars(module).values() if isinstance(getattr(f, "_cache", None), FunctionCache)
                    and hasattr(f, "py_func")]
    assert len(kernels) > 50
    assert all("compile" in vars(kernel) for kernel in kernels), [k for k in kernels if "compile" not in vars(k)]
