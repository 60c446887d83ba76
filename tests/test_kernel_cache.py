"""The compiled whole-sequence loops are cached on disk: a new process loads every family's loop entries
(`rnnkit.kernels.sequence_loop`) from numba's cache instead of compiling them again, and numba never refuses to
cache one ("uses dynamic globals": a jitted step passed as a value to a skeleton that is not inlined). A cached
kernel is stale when any kernel file changed, not only its own (`rnnkit.kernels.cache`)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")

#: one process: a forward and backward call of every cell family on the loop skeleton, float32, ragged and
#: bidirectional; prints the cache counters of every loop entry that ran
PROBE = """
import json
import numpy as np
import rnnkit
from rnnkit import kernels
from rnnkit.kernels import gru, indrnn, jordan, layernorm, lstm, minimal, mogrifier, rhn, rnn

layers = [rnnkit.RNN(3, 4, bidirectional=True), rnnkit.LSTM(3, 4, bidirectional=True),
          rnnkit.GRU(3, 4, bidirectional=True), rnnkit.GRU(3, 4, reset_after=False, bidirectional=True),
          rnnkit.IndRNN(3, 4, bidirectional=True), rnnkit.MinGRU(3, 4, bidirectional=True),
          rnnkit.MinLSTM(3, 4, bidirectional=True), rnnkit.LayerNormLSTM(3, 4, bidirectional=True),
          rnnkit.LayerNormGRU(3, 4, bidirectional=True), rnnkit.RHN(3, 4, depth=2, bidirectional=True),
          rnnkit.Jordan(3, 4, 2, bidirectional=True), rnnkit.MogrifierLSTM(3, 4, bidirectional=True)]
x, lengths = np.ones((2, 5, 3), np.float32), np.array([5, 3])
with kernels.using("compiled"):
    for layer in layers:
        y, _ = layer.forward(x, lengths=lengths)
        layer.backward(np.ones_like(y))
entries = {}
for module in (gru, indrnn, jordan, layernorm, lstm, minimal, mogrifier, rhn, rnn):
    for name in dir(module):
        entry = getattr(module, name)
        if name.endswith(("_sequence_forward", "_sequence_backward")) and entry.signatures:
            entries[f"{module.__name__}.{name}"] = {"hits": sum(entry.stats.cache_hits.values()),
                                                    "misses": sum(entry.stats.cache_misses.values())}
print(json.dumps(entries))
"""

#: the loop entries of every cell family (forward and backward)
FAMILIES = {"rnn.rnn", "lstm.lstm", "gru.gru_reset_after", "gru.gru_reset_before", "indrnn.indrnn",
            "minimal.min", "layernorm.lnlstm", "layernorm.lngru", "rhn.rhn", "jordan.jordan", "mogrifier.mogrifier"}


def probe() -> tuple[dict, str]:
    env = {**os.environ, "RNNKIT_KERNELS": "compiled"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_second_process_loads_every_loop_entry_from_the_disk_cache_without_compiling():
    probe()  # fills the cache where it is empty (or already loads from it)
    entries, stderr = probe()
    expected = {f"rnnkit.kernels.{family}_sequence_{way}" for family in FAMILIES for way in ("forward", "backward")}
    assert set(entries) == expected
    compiled = {name: counts for name, counts in entries.items() if counts["misses"] or not counts["hits"]}
    assert not compiled, f"compiled again instead of loaded from the cache: {compiled}"
    assert "Cannot cache" not in stderr



def test_every_cached_kernel_carries_the_stamp_of_all_kernel_files():
    import importlib

    from numba.core.caching import FunctionCache

    from rnnkit.kernels import cache

    cached = []
    for path in cache.KERNEL_FILES:
        package = "rnnkit.define" if path.parent.name == "define" else "rnnkit.kernels"
        module = importlib.import_module(f"{package}.{path.stem}")
        cached += [f for f in vars(module).values()
                   if isinstance(getattr(f, "_cache", None), FunctionCache) and f.py_func.__module__ == module.__name__]
    assert len(cached) > 50
    stamp = cache.package_stamp()
    for kernel in cached:
        locator = kernel._cache._impl.locator
        assert isinstance(locator, cache.LOCATORS) and locator.get_source_stamp() == stamp, kernel


def test_the_stamp_changes_with_the_contents_of_any_kernel_file(tmp_path):
    from rnnkit.kernels import cache

    files = [tmp_path / f"{i}_{path.name}" for i, path in enumerate(cache.KERNEL_FILES)]
    for path, copy in zip(cache.KERNEL_FILES, files):
        shutil.copyfile(path, copy)
    before = cache.package_stamp(files)
    os.utime(files[0], ns=(1, 1))  # a new time, the same contents
    assert cache.package_stamp(files) == before
    jit = next(f for f in files if f.name.endswith("_jit.py"))
    jit.write_text(jit.read_text() + "\n# one more line\n")
    assert cache.package_stamp(files) != before


def test_rnnkit_sets_numbas_optimisation_level_before_numba_loads_and_never_over_the_users_setting(tmp_path):
    from rnnkit import _startup

    env = {}
    _startup.lighten_numba_optimisation(env, modules={}, directory=str(tmp_path))
    assert env == {"NUMBA_OPT": str(_startup.NUMBA_OPT_LEVEL)}
    mine = {"NUMBA_OPT": "3"}
    _startup.lighten_numba_optimisation(mine, modules={}, directory=str(tmp_path))
    assert mine == {"NUMBA_OPT": "3"}
    loaded = {}  # numba would read every NUMBA_* variable again and drop settings made in code
    _startup.lighten_numba_optimisation(loaded, modules={"numba": sys.modules["numba"]}, directory=str(tmp_path))
    assert loaded == {}
    (tmp_path / _startup.NUMBA_CONFIG_FILE).write_text("opt: 3\n")
    configured = {}
    _startup.lighten_numba_optimisation(configured, modules={}, directory=str(tmp_path))
    assert configured == {}


def test_where_numba_was_imported_first_it_keeps_its_own_optimisation_level():
    code = ("import numba, os; import rnnkit; from rnnkit.kernels import cache; "
            "print(os.environ.get('NUMBA_OPT'), cache.optimisation_level())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "3"]


def test_kernels_compiled_at_two_optimisation_levels_are_cached_side_by_side(monkeypatch):
    from numba.core import config

    from rnnkit.kernels import backend, cache, jit

    level = cache.optimisation_level()
    route = f"{backend.BACKEND}-{backend.PRODUCTS}"
    assert jit.dsigmoid._cache._cache_file._index_name.endswith(f"-O{level}-{route}.py{sys.version_info[0]}"
                                                                 f"{sys.version_info[1]}.nbi")
    locator = jit.dsigmoid._cache._impl.locator
    mine = locator.get_disambiguator()
    monkeypatch.setattr(config, "OPT", type(config.OPT)(3 if level != "3" else 2))
    assert locator.get_disambiguator() != mine and locator.get_source_stamp() == cache.package_stamp()


def test_kernels_of_each_route_are_cached_side_by_side(monkeypatch):
    """The loop's route is a constant of the compiled code (`rnnkit.kernels.backend`: its BLAS and where its
    products run): a process on another route (``RNNKIT_BLAS=mkl``, ``RNNKIT_PRODUCTS=blas``, another processor)
    compiles and caches its own copies — MKL's and OpenBLAS's kernels on the BLAS's products too."""
    from rnnkit.kernels import backend, jit

    locator = jit.dsigmoid._cache._impl.locator
    mine = locator.get_disambiguator()
    assert mine.endswith(f"-{backend.BACKEND}-{backend.PRODUCTS}")
    monkeypatch.setattr(backend, "PRODUCTS", "blas" if backend.PRODUCTS == "panels" else "panels")
    assert locator.get_disambiguator() != mine
    monkeypatch.setattr(backend, "PRODUCTS", "blas")
    on_the_blas = locator.get_disambiguator()
    monkeypatch.setattr(backend, "BACKEND", "mkl" if backend.BACKEND == "openblas" else "openblas")
    assert locator.get_disambiguator() != on_the_blas


#: one process: σ' for float64 from the disk cache (or compiled into it), with the package's stamp replaced when
#: asked (a kernel file changed since the cache was written); prints how many times it compiled. σ' has no Python
#: entry (`rnnkit.kernels.jit.INNER`): its signature is compiled as a kernel calling it would have it compiled.
STALE = """
import sys
import numba
from rnnkit.kernels import cache
if sys.argv[1] == "changed":
    cache.package_stamp = lambda files=cache.KERNEL_FILES: b"another"
from rnnkit.kernels import jit
jit.dsigmoid.compile((numba.float64,))
print(sum(jit.dsigmoid.stats.cache_misses.values()))
"""


def test_a_kernel_cached_before_another_kernel_file_changed_is_compiled_again(tmp_path):
    def compiles(state):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", STALE, state], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    assert compiles("same") == 1 and compiles("same") == 0  # compiled once, then loaded
    assert compiles("changed") == 1 and compiles("changed") == 0  # the stamp differs: compiled again, once


def test_a_function_outside_rnnkit_keeps_numbas_own_cache_locator(tmp_path):
    from rnnkit.kernels import cache

    (tmp_path / "user_kernel.py").write_text("import numba\n\n\n@numba.njit(cache=True)\ndef f(x):\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import user_kernel
    finally:
        sys.path.remove(str(tmp_path))
    assert not isinstance(user_kernel.f._cache._impl.locator, cache.LOCATORS)
