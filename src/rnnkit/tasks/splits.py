"""The split and batching shared by the tasks over a fixed list of examples (classify, tagging, seq2seq).

The examples are shuffled once with the task's seed and the first ``val_fraction`` of them become the validation
part; each epoch then visits the training part in a fresh order drawn from ``(seed, epoch)``, in batches of
``batch_size`` (the last one smaller), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import DataError
from .base import Batch, TaskBase


def split_indices(count: int, val_fraction: float, seed: int, source: str, what: str = "examples"):
    """(train indices, validation indices) of ``count`` examples: a seeded shuffle, validation first."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, int(count * val_fraction))
    if count - n_val < 1:
        raise DataError(f"{source}: too few {what} ({count}) to split off {val_fraction:.0%} for validation")
    return order[n_val:], order[:n_val]


def chunks(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of ``order`` of ``batch_size`` indices (the last one may be shorter)."""
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def length_mask(lengths: np.ndarray, steps: int) -> np.ndarray:
    """(B, T) boolean mask: True at the first ``lengths[b]`` steps of row b."""
    return np.arange(steps)[None, :] < lengths[:, None]


class ExampleTask(TaskBase):
    """A task over a fixed list of examples: `split_indices` once, then shuffled batches of the training part.

    Subclasses set ``train_idx``, ``batch_size`` and ``seed`` and implement ``make_batches(order, batch_size)``.
    """

    train_idx: np.ndarray
    batch_size: int
    seed: int

    def make_batches(self, order: np.ndarray, batch_size: int) -> list[Batch]:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterator[Batch]:
        order = self.train_idx[np.random.default_rng([self.seed, epoch]).permutation(len(self.train_idx))]
        yield from self.make_batches(order, self.batch_size)

    def num_batches(self) -> int:
        return -(-len(self.train_idx) // self.batch_size)
