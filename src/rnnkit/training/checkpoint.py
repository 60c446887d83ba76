"""Checkpoints: safetensors arrays + a JSON description, written atomically (never pickle).

Layout of ``<run>/checkpoint/``:

* ``model.safetensors`` — the model's state dict (PyTorch names);
* ``optimizer.safetensors`` — optimizer buffers and step count;
* ``carry.safetensors`` — the recurrent state carried between truncated-BPTT windows (if any);
* ``meta.json`` — model config, task config, training settings, vocabulary, progress and RNG states.

A new checkpoint is written into a temporary directory first; then the previous one is renamed to
``checkpoint.old``, the new one renamed into place, and the old one deleted. A kill at any moment leaves either
``checkpoint`` or ``checkpoint.old`` complete, and `load` takes whichever exists.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from ..errors import CheckpointError

FORMAT_VERSION = 1
NAME, OLD = "checkpoint", "checkpoint.old"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def save(run_dir: str | Path, model_state: dict, optimizer_state: dict | None, meta: dict,
         carry: dict | None = None) -> Path:
    """Atomically write a checkpoint into ``run_dir/checkpoint``; return its path."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    for stale in run.glob(f".{NAME}.tmp-*"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = run / f".{NAME}.tmp-{os.getpid()}"
    tmp.mkdir()
    _write_arrays(tmp / "model.safetensors", model_state)
    if optimizer_state is not None:
        _write_arrays(tmp / "optimizer.safetensors", optimizer_state)
    if carry:
        _write_arrays(tmp / "carry.safetensors", carry)
    with open(tmp / "meta.json", "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT_VERSION, **meta}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    for name in os.listdir(tmp):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    final, old = run / NAME, run / OLD
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(run)
    if old.exists():
        shutil.rmtree(old)
    return final


def find(path: str | Path) -> Path:
    """The checkpoint directory for a run directory or a checkpoint directory."""
    p = Path(path)
    for candidate in (p / NAME, p / OLD, p):
        if (candidate / "meta.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    if not p.exists():
        raise CheckpointError(f"checkpoint path {str(p)!r} does not exist")
    raise CheckpointError(f"no checkpoint in {str(p)!r} (expected meta.json and model.safetensors)")


def load(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray] | None, dict | None]:
    """Return (meta, model_state, optimizer_state or None, carry or None)."""
    ckpt = find(path)
    try:
        with open(ckpt / "meta.json", encoding="utf-8") as f:
            meta = json.load(f)
        model = load_file(str(ckpt / "model.safetensors"))
        opt = load_file(str(ckpt / "optimizer.safetensors")) if (ckpt / "optimizer.safetensors").exists() else None
        carry = load_file(str(ckpt / "carry.safetensors")) if (ckpt / "carry.safetensors").exists() else None
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} is unreadable: {e}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    return meta, model, opt, carry


def rng_state(generators: list[np.random.Generator]) -> list[dict]:
    return [g.bit_generator.state for g in generators]


def set_rng_state(generators: list[np.random.Generator], states: list[dict]) -> None:
    if len(generators) != len(states):
        raise CheckpointError(f"checkpoint holds {len(states)} random generator states, the model has "
                              f"{len(generators)}")
    for g, s in zip(generators, states):
        g.bit_generator.state = s


def load_model(path: str | Path, kind: str | None = None):
    """(meta, model) of the checkpoint at ``path`` (a run directory or its checkpoint folder) — the one loader every
    command uses; with ``kind``, a `CheckpointError` naming what the checkpoint holds when it is another kind."""
    from ..models.registry import KINDS, kind_of, model_from_meta

    meta, state, _, _ = load(path)
    if kind is not None and kind_of(meta) != kind:
        raise CheckpointError(f"{str(path)!r} is not {KINDS[kind][3]} (it holds {KINDS[kind_of(meta)][3]}, task "
                              f"{meta.get('task', {}).get('task')!r})")
    return meta, model_from_meta(meta, state)
