"""Helpers for variable-length batches: pad a list of sequences, and split a padded batch back; `TimeSeries`,
the lectures' list of (B, F) arrays ordered by time."""

from __future__ import annotations

import numpy as np

from .errors import DTypeError, ShapeError


class TimeSeries(list):
    """The lectures' "list of tensors ordered by time" (deck 001): item t is the (B, F) batch at time step t.

    It is its own type so that no function mistakes it for a list of sequences: `pad_sequences` refuses it, and
    the composites (`Elman`, `LSTMNet`) take one and return their outputs as one. ``TimeSeries.of(x)`` splits a
    batch-first (B, T, F) array; ``series.stack()`` is that array again.
    """

    @classmethod
    def of(cls, x: np.ndarray) -> TimeSeries:
        """(B, T, F) → the T arrays x[:, t] (views), ordered by time."""
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ShapeError(f"TimeSeries.of takes a batch-first (B, T, F) array, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        return cls(x[:, t] for t in range(x.shape[1]))

    def stack(self) -> np.ndarray:
        """The (B, T, F) array of the time steps (each must be a (B, F) array of one shape)."""
        shapes = {np.shape(step) for step in self}
        if not self or len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ShapeError(f"a TimeSeries needs at least one step, each a (B, F) array of one shape, got shapes "
                             f"{sorted(shapes)}")
        return np.stack(self, axis=1)


def pad_sequences(sequences, padding_value: float = 0.0, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, ...) arrays → (padded (B, max T_i, ...), lengths (B,) int64), batch-first.

    Like ``torch.nn.utils.rnn.pad_sequence(batch_first=True)`` plus the lengths that recurrent layers take.
    A list ordered by *time* (the lectures' (B, F) per step) is a `TimeSeries`, and is refused here.
    """
    if isinstance(sequences, TimeSeries):
        raise ShapeError("pad_sequences takes a list of sequences (one (T_i, F) array each), got a TimeSeries (one "
                         "(B, F) array per time step): use series.stack() for its (B, T, F) array")
    seqs = [_sequence_array(s, i) for i, s in enumerate(sequences)]
    if not seqs:
        raise ShapeError("pad_sequences needs at least one sequence")
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


def _sequence_array(sequence, index: int) -> np.ndarray:
    """One sequence of `pad_sequences` as a numeric array, or a one-line `DTypeError` naming its index."""
    array = np.asarray(sequence) if sequence is not None else None
    if array is None or array.dtype.kind not in "biuf":
        shown = "None" if array is None else f"an array of dtype {array.dtype}"
        raise DTypeError(f"pad_sequences: sequence {index} must be a numeric array, got {shown}")
    return array


def unpad_sequences(padded: np.ndarray, lengths) -> list[np.ndarray]:
    """(B, T, ...) and lengths → list of (T_i, ...) arrays (views)."""
    return [padded[b, :n] for b, n in enumerate(np.asarray(lengths))]
