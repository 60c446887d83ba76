"""Generated kernels as real files, so numba's disk cache (``cache=True``) keeps them between processes.

numba caches a compiled function beside its source file (``__pycache__``) and keys it by that file's path,
modification time and size; a function compiled from a string has no file and cannot be cached. So the
generated source of a defined cell is written once to ``<cache>/rnnkit_defined_<hash>.py`` — the hash of the
source itself, so a changed definition or a new rnnkit that generates other code gets another file — and imported
from there as a module (``importlib.util.spec_from_file_location``). A second process finds the same file unchanged
and loads the machine code numba saved instead of compiling again.

``<cache>`` is ``$RNNKIT_CACHE_DIR/define`` if that variable is set, else ``$XDG_CACHE_HOME/rnnkit/define`` (by
default ``~/.cache/rnnkit/define``), created with mode 0700. The file is written atomically (a new temporary file
beside it, renamed over it: a reader never sees half a file, and a link planted at the name is replaced, never
followed) and only when it is missing or differs from the source; an existing file is read without following a
link. Where the directory cannot be used (a read-only home, a link in its place), a private temporary directory
of this process is used instead (made only then, and removed when the process exits): everything still works,
the kernels are compiled again in the next process.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import stat
import sys
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: held while a generated module is imported: a module is in sys.modules before it has run, and the two directions
#: of a bidirectional layer may ask for it at once from two threads
_LOADING = threading.Lock()


def cache_directory() -> Path:
    """The directory of generated kernel files (see the module notes); not created here."""
    root = os.environ.get("RNNKIT_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "define"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rnnkit" / "define"


def module_name(source: str) -> str:
    """The module (and file) name of generated ``source``: ``rnnkit_defined_<24 hex digits of a SHA-256>`` of the
    source, of what its machine code inlines (`inlined_code`) and of numba's optimisation level: numba keys a cached
    file by that file alone, so a changed loop skeleton or BLAS binding must give another file, never stale machine
    code, and each level gets its own, as the package's kernels do (`rnnkit.kernels.cache`)."""
    from ..kernels.cache import optimisation_level

    level = f"\n# numba optimisation level {optimisation_level()}\n"
    return "rnnkit_defined_" + hashlib.sha256((inlined_code() + level + source).encode()).hexdigest()[:24]


@lru_cache(maxsize=1)
def inlined_code() -> str:
    """The text of every kernel module a generated entry may compile in or call (`rnnkit.kernels.cache.KERNEL_FILES`:
    the loop skeleton, the BLAS binding, the panels' product and its C signature, the jit helpers…), the BLAS the
    binding calls and the loop's route (`rnnkit.kernels.backend`: its BLAS and where its products run). A few of
    those modules were not enough: a changed signature of the panels' product left generated entries calling it
    with the old arguments, from the cache."""
    from ..kernels import blas
    from ..kernels.cache import KERNEL_FILES

    texts = [Path(path).read_text(encoding="utf-8") for path in KERNEL_FILES]
    return "\n".join([blas.SOURCE, blas.BACKEND, blas.backend.PRODUCTS, *texts])


def load_generated(source: str):
    """Import generated ``source`` from its file in the cache directory (written if needed); one module per
    distinct source and process."""
    name = module_name(source)
    with _LOADING:
        return sys.modules[name] if name in sys.modules else _load(source, name)


def _load(source: str, name: str):
    path = write_source(source, name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def write_source(source: str, name: str) -> Path:
    """The path of ``name``.py holding exactly ``source``: the cache directory's file if it already holds it, else
    written there atomically (or in this process's private directory when the cache directory is unusable)."""
    for make in (lambda: _usable(cache_directory()), _private_directory):
        directory = make()  # the private directory is made only where the cache directory cannot be used
        if directory is None:
            continue
        path = directory / f"{name}.py"
        if _holds(path, source):
            return path
        try:
            _write_atomically(path, source)
            return path
        except OSError:
            continue
    raise OSError(f"cannot write the generated kernel {name}.py in {cache_directory()} nor in a temporary "
                  "directory")  # pragma: no cover - only without any writable directory


def _usable(directory: Path) -> Path | None:
    """``directory`` created if needed (mode 0700), or None if it cannot be used: a link, not a directory, or
    not writable by this user."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or not os.access(directory, os.W_OK | os.X_OK):
        return None
    return directory


@lru_cache(maxsize=1)
def _private_directory() -> Path:
    """This process's own temporary directory (made on first use), removed with its files when the process exits:
    its kernels are compiled again in the next process anyway."""
    directory = tempfile.mkdtemp(prefix="rnnkit-define-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return Path(directory)


def _holds(path: Path, source: str) -> bool:
    """Whether ``path`` is a regular file (not a link) whose content is ``source``."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        return f.read(len(source.encode()) + 1) == source.encode()


def _write_atomically(path: Path, source: str) -> None:
    """A new temporary file beside ``path`` (O_EXCL), flushed and renamed over ``path`` (replacing a link, never
    writing through it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source.encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
