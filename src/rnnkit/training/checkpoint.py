"""Checkpoints: safetensors arrays + a JSON description, in versioned folders that survive any kill (never pickle).

Layout of a run directory:

* ``checkpoint-000007/`` — one complete version: ``model.safetensors`` (the model's state dict, PyTorch names),
  ``optimizer.safetensors`` (optimizer buffers and step count), ``carry.safetensors`` (the recurrent state carried
  between truncated-BPTT windows, if any), ``meta.json`` (model config, task config, training settings,
  vocabulary, progress and RNG states) and ``manifest.json`` (each file's size and SHA-256);
* ``checkpoint`` — the pointer: a symbolic link to the current version (so ``checkpoint/meta.json`` reads it).

A save never changes a complete version. It writes the files into ``.checkpoint.tmp-000008/`` (each fsynced, the
manifest last), renames the folder to ``checkpoint-000008`` and fsyncs the run directory; then it replaces the
pointer atomically (a new link beside it, ``os.replace``, fsync of the directory); only then are older versions
renamed away (``.checkpoint.del-*``) and deleted. A kill before any of these operations leaves the previous
version complete and, from the rename on, the new one too. Loading verifies every file against the manifest and
takes the pointer's version, or else the newest complete version, so a half-written or half-deleted folder is
never loaded. Every filesystem operation of a save goes through `_op`, which the fault-injection tests hook.

Checkpoints written before versions existed (a plain ``checkpoint/`` folder without a manifest) still load.

Nothing outside the run directory is ever read or deleted on the word of a pointer: the ``checkpoint`` link must
name a ``checkpoint-NNNNNN`` entry of the run directory itself (no absolute path, no ``..``), and every such entry
must be a real directory, not a link (`CheckpointError` otherwise). A checkpoint file is read only if it is a
regular file (not a link, FIFO or device), and never past the size its manifest records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from ..errors import CheckpointError

FORMAT_VERSION = 1
NAME, OLD = "checkpoint", "checkpoint.old"  # the pointer; OLD: the previous layout's spare copy
MANIFEST = "manifest.json"
ARRAY_FILES = ("model.safetensors", "optimizer.safetensors", "carry.safetensors")
VERSION = re.compile(rf"^{NAME}-(\d{{6,}})$")
LEFTOVERS = (f".{NAME}.tmp-", f".{NAME}.del-", f".{NAME}.pointer-tmp")

MAX_MANIFEST, MAX_META = 1 << 20, 1 << 28  # bytes read at most from a manifest; a meta.json without one
MAX_DEPTH = 16  # JSON nesting of a meta.json (its deepest part, a generator state, is 4 levels)

# Called as before_operation(operation, path) before every filesystem operation of a save (tests inject kills).
before_operation: Callable[[str, Path], None] | None = None


def _op(operation: str, path: Path, fn: Callable, *args, **kwargs):
    if before_operation is not None:
        before_operation(operation, Path(path))
    return fn(*args, **kwargs)


# -- saving ------------------------------------------------------------------------------------------------
def save(run_dir: str | Path, model_state: dict, optimizer_state: dict | None, meta: dict,
         carry: dict | None = None) -> Path:
    """Write a new checkpoint version into ``run_dir`` and point ``run_dir/checkpoint`` at it; return the pointer."""
    run = Path(run_dir)
    _op("mkdir", run, run.mkdir, parents=True, exist_ok=True)
    pointed_version(run)  # a pointer or a version entry out of the run directory: refused before any change
    _remove_leftovers(run)
    number = max(versions(run), default=0) + 1
    version, tmp = run / f"{NAME}-{number:06d}", run / f".{NAME}.tmp-{number:06d}"
    contents = _serialize(model_state, optimizer_state, meta, carry)
    _op("mkdir", tmp, tmp.mkdir)
    for name, data in contents.items():
        _write_file(tmp / name, data)
    _write_file(tmp / MANIFEST, _manifest(contents))
    _fsync_dir(tmp)
    _op("rename", tmp, os.rename, tmp, version)
    _fsync_dir(run)
    _point_to(run, version)
    _remove_versions_except(run, version)
    return run / NAME


def _serialize(model_state: dict, optimizer_state: dict | None, meta: dict, carry: dict | None) -> dict[str, bytes]:
    def arrays(state: dict) -> bytes:
        return save_safetensors({k: np.ascontiguousarray(v) for k, v in state.items()})

    contents = {"model.safetensors": arrays(model_state)}
    if optimizer_state is not None:
        contents["optimizer.safetensors"] = arrays(optimizer_state)
    if carry:
        contents["carry.safetensors"] = arrays(carry)
    contents["meta.json"] = json.dumps({"format": FORMAT_VERSION, **meta}, indent=1).encode("utf-8")
    return contents


def _manifest(contents: dict[str, bytes]) -> bytes:
    files = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in contents.items()}
    return json.dumps({"format": FORMAT_VERSION, "files": files}, indent=1).encode("utf-8")


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing file or a link: O_EXCL), write ``data`` and fsync it."""
    with _op("create", path, open, path, "xb") as f:
        _op("write", path, f.write, data)
        f.flush()
        _op("fsync", path, os.fsync, f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        _op("fsync", path, os.fsync, fd)
    finally:
        os.close(fd)


def _point_to(run: Path, version: Path) -> None:
    """Replace the pointer ``run/checkpoint`` by a link to ``version``, atomically, and make it durable."""
    pointer, tmp = run / NAME, run / f".{NAME}.pointer-tmp"
    if pointer.is_dir() and not pointer.is_symlink():  # the previous layout's folder: set it aside first
        _op("rename", pointer, os.rename, pointer, run / f".{NAME}.del-legacy")
    _op("symlink", tmp, os.symlink, version.name, tmp)
    _op("replace", pointer, os.replace, tmp, pointer)
    _fsync_dir(run)


def _remove_versions_except(run: Path, keep: Path) -> None:
    """Delete every version but ``keep`` (renamed away first, so a half-deleted folder never looks like one)."""
    old = [run / f"{NAME}-{n:06d}" for n in versions(run) if run / f"{NAME}-{n:06d}" != keep]
    if (run / OLD).is_dir():
        old.append(run / OLD)
    for path in old:
        doomed = run / f".{NAME}.del-{path.name}"
        _op("rename", path, os.rename, path, doomed)
        _op("rmtree", doomed, shutil.rmtree, doomed)
    _remove_leftovers(run)


def _remove_leftovers(run: Path) -> None:
    """Remove what a killed save left: temporary folders, folders being deleted, a temporary pointer."""
    for path in sorted(run.iterdir()):
        if not path.name.startswith(LEFTOVERS):
            continue
        if path.is_dir() and not path.is_symlink():
            _op("rmtree", path, shutil.rmtree, path)
        else:
            _op("remove", path, os.remove, path)


def versions(run: str | Path) -> list[int]:
    """The numbers of the version folders in ``run``, ascending (complete or not); a `CheckpointError` if an entry
    named like a version is not a real directory (a link, a file)."""
    run = Path(run)
    if not run.is_dir():
        return []
    numbers = []
    for path in run.iterdir():
        match = VERSION.match(path.name)
        if match is None:
            continue
        if path.is_symlink() or not path.is_dir():
            raise CheckpointError(f"{str(path)!r} is {'a symbolic link' if path.is_symlink() else 'not a directory'};"
                                  " expected a checkpoint version folder inside the run directory (remove it)")
        numbers.append(int(match.group(1)))
    return sorted(numbers)


def pointed_version(run: Path) -> Path | None:
    """The version folder the pointer ``run/checkpoint`` names, or None without a pointer link (or when its version
    is gone: a save killed while deleting). A `CheckpointError` for a pointer that leads anywhere but a version
    folder directly inside ``run``."""
    pointer = run / NAME
    versions(run)  # every version entry is a real directory
    if not pointer.is_symlink():
        return None
    target = os.readlink(pointer)
    if not VERSION.match(target):
        raise CheckpointError(f"checkpoint pointer {str(pointer)!r} leads to {target[:80]!r}; expected the name of "
                              f"a {NAME}-NNNNNN folder of the run directory itself")
    version = run / target
    return version if version.is_dir() else None


# -- finding and loading -----------------------------------------------------------------------------------
def _candidates(p: Path) -> list[Path]:
    """The checkpoint folders ``p`` may mean, best first: the pointer's version, the newest versions, the previous
    layout's folders; or ``p`` itself when it is a checkpoint folder."""
    if p.name == NAME and p.is_symlink():
        p = p.parent
    if (p / "meta.json").is_file() or (p / MANIFEST).is_file():
        return [p]
    pointed = pointed_version(p)
    found = [] if pointed is None else [pointed]
    for n in reversed(versions(p)):
        path = p / f"{NAME}-{n:06d}"
        if path not in found:
            found.append(path)
    for legacy in (p / NAME, p / OLD):
        if not legacy.is_symlink() and (legacy / "meta.json").is_file():
            found.append(legacy)
    return found


def exists(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or a checkpoint folder) holds a checkpoint, complete or not."""
    p = Path(path)
    return bool(_candidates(p)) or (p / NAME).is_symlink()


def _first_readable(path: str | Path) -> tuple[Path, tuple]:
    p = Path(path)
    candidates = _candidates(p)
    if not candidates:
        if not p.exists() and not p.is_symlink():
            raise CheckpointError(f"checkpoint path {str(p)!r} does not exist")
        raise CheckpointError(f"no checkpoint in {str(p)!r} (expected a {NAME}/ folder with meta.json and "
                              "model.safetensors)")
    first_error = None
    for ckpt in candidates:
        try:
            return ckpt, _read(ckpt)
        except CheckpointError as e:
            first_error = first_error or e
    raise first_error


def find(path: str | Path) -> Path:
    """The complete checkpoint folder that `load` reads for a run directory or a checkpoint folder."""
    return _first_readable(path)[0]


def load(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray] | None, dict | None]:
    """Return (meta, model_state, optimizer_state or None, carry or None) of the newest complete checkpoint."""
    return _first_readable(path)[1]


def _read(ckpt: Path) -> tuple:
    manifest = _read_manifest(ckpt)
    if manifest is None:  # the previous layout: no manifest, optimizer and carry optional
        names = ["meta.json", "model.safetensors"] + [n for n in ARRAY_FILES[1:] if (ckpt / n).is_file()]
    else:
        names = list(manifest)
    contents = {name: _read_file(ckpt / name, None if manifest is None else manifest[name],
                                 MAX_META if name == "meta.json" else None) for name in names}
    meta = _parse_meta(ckpt / "meta.json", contents["meta.json"])
    arrays = {n: _parse_arrays(ckpt / n, contents[n]) if n in contents else None for n in ARRAY_FILES}
    return meta, arrays["model.safetensors"], arrays["optimizer.safetensors"], arrays["carry.safetensors"]


def _read_manifest(ckpt: Path) -> dict | None:
    path = ckpt / MANIFEST
    if not path.exists() and not path.is_symlink():
        if VERSION.match(ckpt.name):
            raise CheckpointError(f"checkpoint {str(ckpt)!r} is incomplete: {MANIFEST} is missing")
        return None
    try:
        files = json.loads(_read_file(path, None, MAX_MANIFEST).decode("utf-8"))["files"]
        ok = all(isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
                 for v in files.values())
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"{str(path)!r} is damaged ({type(e).__name__}: {e}); expected a JSON object listing the "
                              "checkpoint's files") from None
    missing = {"meta.json", "model.safetensors"} - set(files)
    if not ok or missing or not set(files) <= {"meta.json", *ARRAY_FILES}:
        raise CheckpointError(f"{str(path)!r} is damaged: expected size and sha256 of meta.json, model.safetensors "
                              f"and optional array files, got entries {sorted(files)}")
    return files


def _read_file(path: Path, expected: dict | None, limit: int | None = None) -> bytes:
    """The bytes of a checkpoint file, checked against its manifest entry ``expected`` (size and SHA-256): only a
    regular file is opened (a link, FIFO or device is refused before it is read), and no more than the recorded
    size (``limit`` without a manifest) plus one byte is read, so a file that grew is caught without reading it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {str(path)!r} is missing") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file (a FIFO, device or directory)"
        raise CheckpointError(f"checkpoint file {str(path)!r} is {kind}; expected a regular file")
    limit = expected["size"] if expected is not None else limit
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read: {e.strerror or e}") from None
    if expected is None:
        if limit is not None and len(data) > limit:
            raise CheckpointError(f"checkpoint file {str(path)!r} is larger than {limit} bytes; expected a "
                                  f"checkpoint's {path.name}")
        return data
    if len(data) != expected["size"]:
        got = f"{len(data)} bytes" if len(data) <= expected["size"] else "more bytes"
        raise CheckpointError(f"checkpoint file {str(path)!r} is damaged: {got}, the manifest records "
                              f"{expected['size']} (truncated or overwritten)")
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise CheckpointError(f"checkpoint file {str(path)!r} is damaged: its SHA-256 differs from the manifest's")
    return data


def _parse_meta(path: Path, data: bytes) -> dict:
    try:
        meta = json.loads(data.decode("utf-8"))
        too_deep = json_depth(meta) > MAX_DEPTH
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {str(path)!r} is not valid UTF-8 JSON ({e})") from None
    except RecursionError:  # deeper than Python's parser goes
        too_deep = True
    if too_deep:
        raise CheckpointError(f"checkpoint file {str(path)!r} nests JSON deeper than {MAX_DEPTH} levels; expected "
                              "a checkpoint description")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file {str(path)!r} holds a JSON {type(meta).__name__}, expected an object")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    return meta


def json_depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _parse_arrays(path: Path, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file, or a `CheckpointError` naming the file and what is wrong with it."""
    if len(data) < 8:
        raise CheckpointError(f"checkpoint file {str(path)!r} is truncated: {len(data)} bytes, a safetensors file "
                              "starts with an 8-byte header length")
    header = int.from_bytes(data[:8], "little")
    if header > len(data) - 8:
        raise CheckpointError(f"checkpoint file {str(path)!r} is damaged: its header length {header} exceeds the "
                              f"{len(data) - 8} bytes after it")
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint file {str(path)!r} is not a valid safetensors file ({reason})") from None


# -- random generators and models --------------------------------------------------------------------------
def distinct_generators(generators: list[np.random.Generator]) -> list[np.random.Generator]:
    """Each generator once, in first-seen order (a model's modules usually share one)."""
    seen, out = set(), []
    for g in generators:
        if id(g) not in seen:
            seen.add(id(g))
            out.append(g)
    return out


def rng_state(generators: list[np.random.Generator]) -> list[dict]:
    """The states of the distinct generators, for a checkpoint's ``rng``."""
    return [g.bit_generator.state for g in distinct_generators(generators)]


def set_rng_state(generators: list[np.random.Generator], states: list[dict]) -> None:
    """Restore ``rng_state``'s states. A checkpoint of an earlier version holds one state per module with a
    generator — the same generator's state several times — which restores a model whose modules share one."""
    distinct = distinct_generators(generators)
    if not isinstance(states, list):
        raise CheckpointError(f"checkpoint random generator states must be a list, got {type(states).__name__}")
    if len(states) != len(distinct) and len(distinct) == 1 and states and all(s == states[0] for s in states):
        states = states[:1]
    if len(distinct) != len(states):
        raise CheckpointError(f"checkpoint holds {len(states)} random generator states, the model has "
                              f"{len(distinct)}")
    for g, s in zip(distinct, states):
        try:
            g.bit_generator.state = s
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint random generator state is damaged ({type(e).__name__}: {e})") from None


def load_model(path: str | Path, kind: str | None = None):
    """(meta, model) of the checkpoint at ``path`` (a run directory or its checkpoint folder) — the one loader every
    command uses; with ``kind``, a `CheckpointError` naming what the checkpoint holds when it is another kind."""
    from ..models.registry import KINDS, check_description, kind_of, model_from_meta

    meta, state, _, _ = load(path)
    check_description(meta)  # every field a command reads, before anything is built
    if kind is not None and kind_of(meta) != kind:
        raise CheckpointError(f"{str(path)!r} is not {KINDS[kind][3]} (it holds {KINDS[kind_of(meta)][3]}, task "
                              f"{meta.get('task', {}).get('task')!r})")
    return meta, model_from_meta(meta, state)
