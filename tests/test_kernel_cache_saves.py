"""Processes filling one kernel cache at once never lose an entry nor pair a key with another key's machine code:
every cached kernel saves through `rnnkit.kernels.cache.LockedIndexFile`, which holds the cache directory's file
lock while it saves, writes the data before the index that names it, and never reuses a data file an index names."""

import importlib
import os
import threading
import time

import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

from filelock import FileLock  # noqa: E402 - installed with rnnkit, after the skip for the kernels

from rnnkit.kernels import cache  # noqa: E402


def index_file(directory, stamp=b"stamp") -> cache.LockedIndexFile:
    return cache.LockedIndexFile(cache_path=str(directory), filename_base="kernel-f", source_stamp=stamp)


def slow_writes(monkeypatch, seconds=0.2):
    """Every index and data file written ``seconds`` late, so that saves running at once overlap (numba's own
    saves, without the lock, lose an entry here)."""
    for method in ("_save_index", "_save_data"):
        write = getattr(cache.LockedIndexFile, method)

        def late(self, *args, write=write):
            time.sleep(seconds)
            write(self, *args)

        monkeypatch.setattr(cache.LockedIndexFile, method, late)


def test_two_saves_at_once_keep_both_entries_each_with_its_own_data(tmp_path, monkeypatch):
    slow_writes(monkeypatch)
    saves = [threading.Thread(target=index_file(tmp_path).save, args=(key, f"code of {key}"))
             for key in ("float32", "float64")]
    for save in saves:
        save.start()
    for save in saves:
        save.join()
    reader = index_file(tmp_path)
    assert reader.load("float32") == "code of float32" and reader.load("float64") == "code of float64"
    assert len(set(reader._load_index().values())) == 2


def test_the_index_names_a_data_file_only_once_the_data_is_written(tmp_path, monkeypatch):
    written_before_named = []
    save_index = cache.LockedIndexFile._save_index

    def check_then_save(self, overloads):
        written_before_named.extend(os.path.exists(self._data_path(name)) for name in overloads.values())
        save_index(self, overloads)

    monkeypatch.setattr(cache.LockedIndexFile, "_save_index", check_then_save)
    index_file(tmp_path).save("float32", "code")
    assert written_before_named == [True]


def test_a_new_entry_never_takes_a_data_file_that_an_older_stamps_index_names(tmp_path):
    index_file(tmp_path, stamp=b"old").save("float32", "old code")
    old_name = index_file(tmp_path, stamp=b"old")._load_index()["float32"]
    newer = index_file(tmp_path, stamp=b"new")
    newer.save("float64", "new code")
    assert newer._load_index()["float64"] != old_name
    assert newer.load("float64") == "new code" and newer._load_data(old_name) == "old code"
    assert "float32" not in newer._load_index()  # the old stamp's entries are not carried over


def test_saving_a_key_again_rewrites_its_own_data_file(tmp_path):
    first = index_file(tmp_path)
    first.save("float32", "code")
    name = first._load_index()["float32"]
    first.save("float32", "code again")
    assert first._load_index() == {"float32": name} and first.load("float32") == "code again"


def test_a_save_that_cannot_get_the_lock_in_time_leaves_the_entry_unsaved(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "SAVE_LOCK_TIMEOUT_S", 0.05)
    with FileLock(os.path.join(tmp_path, cache.LOCK_NAME)):
        index_file(tmp_path).save("float32", "code")
    assert index_file(tmp_path).load("float32") is None


def test_every_cached_kernel_of_the_package_saves_under_the_lock():
    from numba.core.caching import FunctionCache

    cached = []
    for path in cache.KERNEL_FILES:
        package = "rnnkit.define" if path.parent.name == "define" else "rnnkit.kernels"
        module = importlib.import_module(f"{package}.{path.stem}")
        cached += [f for f in vars(module).values() if isinstance(getattr(f, "_cache", None), FunctionCache)]
    assert len(cached) > 50
    from rnnkit.kernels import panels

    cached += list(panels.COMPILED.values())  # the panels' products: C functions, cached too
    assert all(isinstance(kernel._cache._cache_file, cache.LockedIndexFile) for kernel in cached)


def test_a_defined_cells_generated_kernels_save_under_the_lock(tmp_path, monkeypatch):
    from numba.core.caching import FunctionCache

    from rnnkit import define
    from rnnkit.define.cells import compiled_code

    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    code = compiled_code(define.cell("rnn_locked", gates="n", states="h", equations="h = tanh(a_n)"))
    cached = [f for f in vars(code).values() if isinstance(getattr(f, "_cache", None), FunctionCache)]
    assert {"forward", "sequence_forward", "sequence_backward"} <= {f.__name__ for f in cached}
    assert all(isinstance(kernel._cache._cache_file, cache.LockedIndexFile) for kernel in cached)


def test_functions_without_a_disk_cache_are_left_as_numba_made_them():
    from rnnkit.kernels.jit import njit

    def plus_one(x):
        return x + 1

    compiled = njit(plus_one)
    assert compiled(1) == 2 and not hasattr(compiled._cache, "_cache_file")


def test_every_cache_of_a_package_file_saves_under_the_lock_from_its_construction_on():
    """Whatever decorator made it — numba's own ``jit`` for an ``@overload``'s implementation, ``cfunc`` — a cache
    of a function of the package's kernel files takes the lock before its first save; other caches stay numba's."""
    from numba.core.caching import FunctionCache, IndexDataCacheFile

    from rnnkit.kernels import jit

    def elsewhere(x):
        return x

    assert isinstance(FunctionCache(jit.sigmoid.py_func)._cache_file, cache.LockedIndexFile)
    own = FunctionCache(elsewhere)._cache_file
    assert isinstance(own, IndexDataCacheFile) and not isinstance(own, cache.LockedIndexFile)
