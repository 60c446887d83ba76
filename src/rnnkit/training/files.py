"""Writing files atomically: every file a command writes goes through `atomic_write`.

The content goes to a temporary file beside the target, is flushed and fsynced, and then renamed over the target
with ``os.replace`` (atomic on POSIX and Windows): a reader, or a run killed half-way, sees the old file or the new
one, never a torn one. The temporary file is created with ``O_EXCL`` (`tempfile.mkstemp`), so a file or symbolic
link planted at a predictable name is never followed or overwritten.

`hold_run_directory` locks a run directory for one process (``fcntl.flock`` on ``.rnnkit.lock`` in it): a second
run on the same directory is refused with the first one's process id instead of mixing their files. The lock file
is removed (while still locked) when the run ends. Taking the lock also removes the temporaries of atomic writes
that a killed run left in the directory (``.loss.png.x1y2z3ab.tmp.png``): while the lock is held no other rnnkit
process writes there, so such a file can only be a leftover.

No file rnnkit writes, appends to or locks is opened through a symbolic link: appends and locks go through
`open_no_link` (``O_NOFOLLOW``, and a regular file only), and `atomic_path` refuses a target that is a link; a link
planted in a run, experiment or search directory is a one-line `DataError`, and its target is never touched.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not locked
    fcntl = None


LOCK_NAME = ".rnnkit.lock"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_held: dict[Path, int] = {}  # lock files this process holds → nesting depth (a run may lock its directory twice)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,  # append (metrics.jsonl, results.jsonl)
               "lock": os.O_RDWR | os.O_CREAT,  # a lock file, created if needed
               "new": os.O_WRONLY | os.O_CREAT | os.O_EXCL}  # a new file (never an existing one)


def refuse_link(path: str | Path) -> Path:
    """``path`` unless it is a symbolic link (dangling or not) or something other than a regular file (a FIFO, a
    device, a directory); a one-line `DataError` naming it otherwise."""
    path = Path(path)
    if path.is_symlink():
        raise DataError(f"refusing to write {str(path)!r}: it is a symbolic link (expected a regular file that "
                        "rnnkit writes itself; remove the link)")
    if path.exists() and not path.is_file():
        raise DataError(f"refusing to write {str(path)!r}: it is not a regular file (a FIFO, device or directory)")
    return path


def open_no_link(path: str | Path, how: str = "a") -> int:
    """A file descriptor for ``path`` opened to append (``"a"``), to lock (``"lock"``) or as a new file
    (``"new"``): created if needed, never through a symbolic link (``O_NOFOLLOW``), and only a regular file (not a
    FIFO or a device); a one-line `DataError` otherwise."""
    path = Path(path)
    try:
        fd = os.open(path, _OPEN_FLAGS[how] | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), 0o666)  # a FIFO: no wait
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            refuse_link(path)
        raise DataError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"refusing to write {str(path)!r}: it is not a regular file (a FIFO, device or directory)")
    return fd


def append_line(path: str | Path, line: str, sync: bool = False) -> None:
    """Append ``line`` to ``path`` in one write (never through a link, `open_no_link`); ``sync``: fsync it."""
    fd = open_no_link(path, "a")
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        if sync:
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path):
    """Yield a new temporary path beside ``path`` (created empty with O_EXCL, never through a link); when the block
    succeeds, fsync it and rename it to ``path``."""
    target = refuse_link(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
        os.chmod(name, 0o666 & ~_UMASK)  # mkstemp's 0600 → what an ordinary new file gets
        os.close(fd)
    except OSError as e:
        raise DataError(f"cannot write {str(target)!r}: {e.strerror or e}") from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"cannot write {str(target)!r}: {e.strerror or e}") from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``content`` — text (UTF-8), bytes, or a function that writes a given path — to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if callable(content):
            content(tmp)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
    return Path(path)


def make_directory(path: str | Path, what: str = "the run directory") -> Path:
    """Create ``path`` (and its parents) if needed; a `DataError` naming it when it cannot be (a file in the way,
    no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {what} {str(path)!r}: {e.strerror or e}") from None
    return path


@contextmanager
def hold_run_directory(run_dir: str | Path):
    """Hold an exclusive lock on ``run_dir`` (which must exist) for the block; a `ConfigError` naming the process
    that holds it if another process does. Nested holds in one process are allowed."""
    lock = Path(run_dir).resolve() / LOCK_NAME
    if lock in _held or fcntl is None:
        _held[lock] = _held.get(lock, 0) + 1
        try:
            yield
        finally:
            _held[lock] -= 1
            if not _held[lock]:
                del _held[lock]
        return
    fd = _acquire(lock, run_dir)
    _held[lock] = 1
    try:
        yield
    finally:
        del _held[lock]
        _release(lock, fd)


def _release(lock: Path, fd: int) -> None:
    """Remove the lock file while still holding its lock, then release it (closing): a process that opened the file
    before the removal finds, once it holds the lock, that the path no longer names its file, and retries
    (`_acquire`), so no stray ``.rnnkit.lock`` stays in a run directory after a run ends."""
    try:
        lock.unlink()
    except OSError:  # already gone, or a read-only directory: the lock is released all the same
        pass
    os.close(fd)


def _acquire(lock: Path, run_dir: str | Path) -> int:
    """Open ``lock`` (created if needed) and hold its exclusive lock; retried when the file was removed by the run
    that held it (`_release`) between our opening it and locking it."""
    while True:
        fd = _open_and_lock(lock, run_dir)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    remove_stale_temporaries(run_dir)
    return fd


#: the name `atomic_path` gives a temporary: ``.`` + the target's name + ``.`` + mkstemp's 8 characters + ``.tmp`` +
#: the target's suffix
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporaries of atomic writes left in ``directory`` by a process killed mid-write (regular files
    named as `atomic_path` names them; nothing else is touched). Call it only while holding the directory's lock."""
    removed = []
    for entry in os.scandir(directory):
        if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:  # gone meanwhile, or a read-only directory: nothing to clean
                continue
            removed.append(Path(entry.path))
    return removed


def _open_and_lock(lock: Path, run_dir: str | Path) -> int:
    fd = open_no_link(lock, "lock")  # never through a link, a regular file only
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"run directory {str(run_dir)!r} in use by process {holder} (expected a directory no other "
                          "run is using; wait for it to finish or choose another --out)") from None
    return fd
