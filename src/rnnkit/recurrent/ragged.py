"""A ragged batch as the runners take it: rows sorted by decreasing length, so that the rows still inside their
sequence at step t are a prefix of the batch, ``counts[t]`` rows long.

`RecurrentLayer` (`rnnkit.recurrent.layer`) sorts a call's rows once on the way in (`sort_by_length`,
`in_sorted_order`) and puts every result back in the caller's order on the way out (`in_caller_order`); between the
two, every runner and compiled loop works on row prefixes only (`rnnkit.recurrent.runner`,
`rnnkit.kernels.sequence_loop`): rows past their end carry their state and get no gradient. Without ``lengths`` the
order is None and nothing is moved.
"""

from __future__ import annotations

import numpy as np

from ..validate import sequence_lengths


def sort_by_length(lengths, batch: int, steps: int):
    """Validate ``lengths`` and return (order, counts): rows sorted by decreasing length, and for each step the
    number of rows whose sequence is still running."""
    lengths = sequence_lengths(lengths, batch, steps)
    order = np.argsort(-lengths, kind="stable")
    counts = (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1)
    return order, counts


def in_caller_order(a: np.ndarray, order: np.ndarray | None, axis: int) -> np.ndarray:
    """Undo the sort by length along ``axis`` (rows back in the order the caller gave them)."""
    return a if order is None else np.take(a, np.argsort(order), axis=axis)


def in_sorted_order(a: np.ndarray, order: np.ndarray | None, axis: int) -> np.ndarray:
    """Rows sorted by decreasing length along ``axis`` (the runner's layout)."""
    return a if order is None else np.take(a, order, axis=axis)
