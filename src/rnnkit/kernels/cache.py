"""numba's disk cache for rnnkit's kernels, made stale by a change to any kernel source file, not only the kernel's.

numba checks a cached function against its own file's contents alone, but a kernel's machine code also holds the
helpers it calls from the other files (`rnnkit.kernels.jit`'s σ and tanh and fast-math flags, the loop skeleton, the
BLAS binding): after a ``git pull`` that changed ``jit.py`` alone, an editable install would go on running
``gru.py``'s kernels with the old helpers compiled into them. The locators here give every cached function of
`KERNEL_FILES` one source stamp, the SHA-256 of all those files, so a change to any of them compiles every kernel
again (once). Each file name holds numba's optimisation level as well (``NUMBA_OPT``; rnnkit's default is 2,
`rnnkit._startup`): a process at another level compiles and caches its own copies beside these, so the two never evict
each other's and a process never runs copies of one helper compiled at two levels. numba chooses a function's locator
from the classes of ``numba.core.caching.CacheImpl``, the first that accepts its file; `install` puts these in front,
and they accept only `KERNEL_FILES`. The generated kernels of `rnnkit.define` need none of this: their file names hash
what they inline (`rnnkit.define.kernel_files`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

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
        return f"{super().get_disambiguator()}-O{optimisation_level()}"

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
    """Put `LOCATORS` in front of numba's own, once (before the first kernel is defined: `rnnkit.kernels.jit`)."""
    classes = _numba("CacheImpl")._locator_classes
    if classes[:len(LOCATORS)] != list(LOCATORS):
        classes[:0] = [locator for locator in LOCATORS if locator not in classes]
