"""Helpers for variable-length batches: pad a list of sequences, and split a padded batch back."""

from __future__ import annotations

import numpy as np


def pad_sequences(sequences, padding_value: float = 0.0, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, ...) arrays → (padded (B, max T_i, ...), lengths (B,) int64), batch-first.

    Like ``torch.nn.utils.rnn.pad_sequence(batch_first=True)`` plus the lengths that recurrent layers take.
    """
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequences needs at least one sequence")
    trailing = {s.shape[1:] for s in seqs}
    if len(trailing) != 1 or seqs[0].ndim < 1:
        raise ValueError(f"sequences must share their shape after the time axis, got {sorted(trailing)}")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if lengths.min() < 1:
        raise ValueError("every sequence needs at least one time step")
    dtype = dtype or np.result_type(*seqs)
    out = np.full((len(seqs), lengths.max()) + seqs[0].shape[1:], padding_value, dtype=dtype)
    for b, s in enumerate(seqs):
        out[b, :len(s)] = s
    return out, lengths


def unpad_sequences(padded: np.ndarray, lengths) -> list[np.ndarray]:
    """(B, T, ...) and lengths → list of (T_i, ...) arrays (views)."""
    return [padded[b, :n] for b, n in enumerate(np.asarray(lengths))]
