"""Writing files atomically: every file a command writes goes through `atomic_write`.

The content goes to a temporary file beside the target, is flushed and fsynced, and then renamed over the target
with ``os.replace`` (atomic on POSIX and Windows): a reader, or a run killed half-way, sees the old file or the new
one, never a torn one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it to ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"cannot write {str(target)!r}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
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
