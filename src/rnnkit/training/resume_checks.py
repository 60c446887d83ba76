"""What a checkpoint must hold for a resumed run to continue *exactly* where it stopped.

A resume that silently starts part of the state afresh is not exact: Adam's moments reset to zero, a carried
recurrent state replaced by zeros, a progress position beyond the data that skips every remaining batch. These
checks run before `Trainer.restore` changes anything and refuse such a checkpoint with one line
(`CheckpointError`); ``--reset-optimizer`` is the explicit way to continue with a fresh optimizer.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CheckpointError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_progress(progress, epochs: int, batches: int, windows: int) -> None:
    """The stored position must lie inside the run: ``epoch`` ≤ the epochs, ``batch`` ≤ the batches of an
    epoch, ``window`` < the windows of a batch, counts non-negative integers, ``elapsed`` a finite time."""
    if not isinstance(progress, dict):
        raise CheckpointError(f"checkpoint progress must be an object, got {type(progress).__name__}")
    limits = {"step": None, "epoch": epochs, "batch": batches, "window": max(windows - 1, 0)}
    for name, high in limits.items():
        value = progress.get(name)
        if not _is_int(value) or value < 0 or (high is not None and value > high):
            bound = "a non-negative integer" if high is None else f"an integer in [0, {high}]"
            raise CheckpointError(f"checkpoint progress {name!r} must be {bound} for this run, got {value!r}")
    elapsed = progress.get("elapsed")
    if not isinstance(elapsed, (int, float)) or isinstance(elapsed, bool) or not math.isfinite(elapsed) \
            or elapsed < 0:
        raise CheckpointError(f"checkpoint progress 'elapsed' must be a finite number of seconds, got {elapsed!r}")
    running = progress.get("running", [0.0, 0])
    if not (isinstance(running, list) and len(running) == 2 and isinstance(running[0], (int, float))
            and math.isfinite(running[0]) and _is_int(running[1]) and running[1] >= 0):
        raise CheckpointError(f"checkpoint progress 'running' must be [loss sum, count], got {running!r:.60}")


def check_optimizer_state(state: dict | None, optimizer, reset: bool) -> None:
    """The optimizer's buffers must all be there, shaped like their parameters, in their dtype and finite;
    a checkpoint without them resumes only with ``reset`` (``--reset-optimizer``)."""
    if reset:
        return
    if state is None:
        raise CheckpointError("checkpoint has no optimizer state (optimizer.safetensors): resuming would restart "
                              "the optimizer from zero; pass --reset-optimizer to do so deliberately")
    expected = optimizer.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint optimizer state does not match the model's parameters: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]} (--reset-optimizer starts it afresh)")
    for name, want in expected.items():
        check_array(state[name], want, f"optimizer buffer {name!r}")


def check_carry(carry: dict | None, layout: list[tuple[int, int]], dtype: np.dtype, needed: bool) -> None:
    """The recurrent state carried into the next window: present when the run stopped inside a sequence
    (``needed``), and then one (rows, batch, size) array per state component of ``layout`` [(rows, size)], in
    the model's ``dtype``, finite."""
    if carry is None:
        if needed:
            raise CheckpointError("checkpoint has no carried recurrent state (carry.safetensors) although the run "
                                  "stopped inside a sequence; the rest of it would start from zeros")
        return
    names = [f"state{i}" for i in range(len(layout))]
    if sorted(carry) != sorted(names):
        raise CheckpointError(f"checkpoint carried state must hold {names}, got {sorted(carry)}")
    batch = carry[names[0]].shape[1] if carry[names[0]].ndim == 3 else 0
    for name, (rows, size) in zip(names, layout):
        check_array(carry[name], np.empty((rows, batch, size), dtype), f"carried state {name!r}")
    if batch < 1:
        raise CheckpointError(f"checkpoint carried state {names[0]!r} has no rows: shape {carry[names[0]].shape}")


def check_array(value: np.ndarray, want: np.ndarray, what: str) -> None:
    """``value`` must have ``want``'s shape and dtype (an integer tensor is not cast) and finite values."""
    if value.dtype != want.dtype:
        raise CheckpointError(f"checkpoint {what} is {value.dtype}, expected {want.dtype}")
    if value.shape != want.shape:
        raise CheckpointError(f"checkpoint {what} has shape {value.shape}, expected {want.shape}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise CheckpointError(f"checkpoint {what} holds NaN or infinite values")
