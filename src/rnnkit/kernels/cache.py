"""numba's disk cache for rnnkit's kernels, made stale by a change to any kernel source file, not only the kernel's.

numba checks a cached function against its own file's contents alone, but a kernel's machine code also holds the
helpers it calls from the other files (`rnnkit.kernels.jit`'s σ and tanh and fast-math flags, the loop skeleton, the
BLAS binding): after a ``git pull`` that changed ``jit.py`` alone, an editable install would go on running
``gru.py``'s kernels with the old helpers compiled into them. The locators here give every cached function of
`KERNEL_FILES` one source stamp, the SHA-256 of all those files, so a change to any of them compiles every kernel
again (once). Each file name holds numba's optimisation level as well (``NUMBA_OPT``; rnnkit's default is 2,
`rnnkit._startup`): a process at another level compiles and caches its own copies beside these, so the two never
evict each other's and a process never runs copies of one helper compiled at two levels. So does the loop's route,
its BLAS and where its products run (`rnnkit.kernels.backend`: ``RNNKIT_BLAS``, ``RNNKIT_PRODUCTS``): the kernels
compile it in as constants (`rnnkit.kernels.blas.PANELS` and ``PACKED``), so each route caches its own copies. numba
chooses a function's locator from the classes of ``numba.core.caching.CacheImpl``, the first that accepts its file;
`install` puts these in front, and they accept only `KERNEL_FILES`. The generated kernels of `rnnkit.define` need
none of this: their file names hash what they inline (`rnnkit.define.kernel_files`).

Several processes may fill one cache at once: the test suite's two workers on a new clone, Dask or Optuna workers on
an empty cache. numba saves an entry by reading the function's index, adding its key and writing the index back,
then writing the data file, without a lock: two processes saving two signatures of one function at the same moment
each write an index without the other's key, and both choose the same data file name, so one key can end up naming
the other's machine code (numba 0.68: eight processes, each compiling one dtype of one function at the same moment,
six times over, lost 12 of the 48 entries in one such run and 7 in another, and each run left 2 keys naming another
dtype's code). Every cached function of rnnkit saves through `LockedIndexFile` instead, from the construction of
its cache on (`install`: the package's kernels, ``@overload`` implementations and C functions; `lock_saves`, applied
by `rnnkit.kernels.jit.njit`: the generated kernels of `rnnkit.define`), and the same eight processes lost none and
paired none.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from itertools import count
from pathlib import Path

from filelock import FileLock, Timeout
from numba.core import caching, config

_HERE = Path(__file__).resolve().parent
#: the files whose functions are cached with the package's stamp: every kernel module and the helpers of the
#: generated kernels (which call `rnnkit.kernels.jit`)
KERNEL_FILES = (*sorted(_HERE.glob("*.py")), _HERE.parent / "define" / "kernel_support.py")


@lru_cache(maxsize=8)
def _digest(stats: tuple) -> bytes:
    """SHA-256 of the files named in ``stats`` ((path, mtime, size), …); re-read when a file's stat changes."""
    digest = hashlib.sha256()
    for path, _, _ in stats:
        digest.update(Path(path).read_bytes())
    return digest.digest()


def package_stamp(files=KERNEL_FILES) -> bytes:
    """The source stamp of every cached kernel: one digest of the contents of ``files``."""
    stats = tuple((str(path), *_stat(path)) for path in files)
    return _digest(stats)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _numba(name: str):
    """A class of ``numba.core.caching`` (public from numba 0.62, with a leading underscore before)."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


def optimisation_level() -> str:
    """numba's optimisation level in effect: "0" – "3", or "max"."""
    return "max" if getattr(config.OPT, "is_opt_max", False) else str(int(config.OPT))


class _PackageStamp:
    """A locator for `KERNEL_FILES` only, whose source stamp is `package_stamp` and whose file names hold
    `optimisation_level`."""

    def get_source_stamp(self):
        return package_stamp()

    def get_disambiguator(self):
        from .backend import BACKEND, PRODUCTS

        return f"{super().get_disambiguator()}-O{optimisation_level()}-{BACKEND}-{PRODUCTS}"

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve() not in KERNEL_FILES:
            return None
        return super().from_function(py_func, py_file)


class UserProvidedLocator(_PackageStamp, _numba("UserProvidedCacheLocator")):
    """``NUMBA_CACHE_DIR``, where it is set."""


class InTreeLocator(_PackageStamp, _numba("InTreeCacheLocator")):
    """The package's own ``__pycache__``, where it is writable."""


class UserWideLocator(_PackageStamp, _numba("UserWideCacheLocator")):
    """The user's cache directory (an installation the user cannot write to)."""


LOCATORS = (UserProvidedLocator, InTreeLocator, UserWideLocator)


def install() -> None:
    """Put `LOCATORS` in front of numba's own, and have every cache they locate save through `LockedIndexFile`
    from its construction on — numba functions, the implementations of ``@overload`` and C functions alike, whichever
    decorator made them — once (before the first kernel is defined: `rnnkit.kernels.jit`)."""
    classes = _numba("CacheImpl")._locator_classes
    if classes[:len(LOCATORS)] != list(LOCATORS):
        classes[:0] = [locator for locator in LOCATORS if locator not in classes]
    cache_class = _numba("Cache")
    if not getattr(cache_class.__init__, "locks_package_saves", False):
        cache_class.__init__ = _locking_package_saves(cache_class.__init__)


def _locking_package_saves(construct):
    """numba's ``Cache.__init__``, then `LockedIndexFile` in place of its index file where the locator is one of
    `LOCATORS` (the package's kernels); every other cache is left as numba made it."""
    def __init__(self, py_func):
        construct(self, py_func)
        if isinstance(self._impl.locator, LOCATORS):
            self._cache_file = LockedIndexFile.taking_over(self._cache_file)
    __init__.locks_package_saves = True
    return __init__


#: how long a save waits for another process's save in the same cache directory (each takes milliseconds); after
#: that the entry is left unsaved and compiled again by the next process
SAVE_LOCK_TIMEOUT_S = 60.0
#: the lock file of a cache directory, shared by all the functions cached there
LOCK_NAME = "rnnkit-kernels.lock"


class LockedIndexFile(_numba("IndexDataCacheFile")):
    """numba's index and data files of one function, saved so that concurrent processes never lose an entry nor pair
    a key with another key's data: each save holds the cache directory's file lock while it reads the index, writes
    the data file and then the index that names it, and a new entry takes a data file name no index on disk names,
    whatever its stamp (an older stamp's reader may still follow that index). Loading needs no lock: each file is
    replaced whole (numba writes a temporary file and renames it), and an index names only data already written."""

    @classmethod
    def taking_over(cls, index_file) -> LockedIndexFile:
        """This class in place of numba's ``index_file``, with the same paths and stamp."""
        locked = cls.__new__(cls)
        locked.__dict__.update(vars(index_file))
        return locked

    def save(self, key, data):
        lock = FileLock(os.path.join(self._cache_path, LOCK_NAME))
        try:
            lock.acquire(timeout=SAVE_LOCK_TIMEOUT_S)
        except Timeout:
            return
        except (NotImplementedError, OSError):  # a file system without locks: save as numba would, unlocked
            self._save_entry(key, data)
            return
        try:
            self._save_entry(key, data)
        finally:
            lock.release()

    def _save_entry(self, key, data):
        stamp, overloads = self._index_on_disk()
        current = dict(overloads) if stamp == self._source_stamp else {}
        name = current.get(key) or self._unused_data_name(set(overloads.values()) | set(current.values()))
        self._save_data(name, data)
        current[key] = name
        self._save_index(current)

    def _unused_data_name(self, taken: set) -> str:
        return next(name for name in map(self._data_name, count(1)) if name not in taken)

    def _index_on_disk(self) -> tuple:
        """(stamp, {key: data file name}) of the index as saved by this numba version, whatever its stamp;
        (None, {}) where there is none."""
        try:
            with open(self._index_path, "rb") as f:
                version = pickle.load(f)
                rest = f.read()
        except FileNotFoundError:
            return None, {}
        return pickle.loads(rest) if version == self._version else (None, {})


def lock_saves(dispatcher):
    """``dispatcher`` (a numba function), whose disk cache, where it has one, saves through `LockedIndexFile`."""
    function_cache = getattr(dispatcher, "_cache", None)
    index_file = getattr(function_cache, "_cache_file", None)
    if isinstance(index_file, _numba("IndexDataCacheFile")) and not isinstance(index_file, LockedIndexFile):
        function_cache._cache_file = LockedIndexFile.taking_over(index_file)
    return dispatcher
