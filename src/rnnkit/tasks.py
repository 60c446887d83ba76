"""Training tasks: data, the loss, and how the model's inputs and outputs look.

A task yields `Batch`es of time-major-in-meaning, batch-first-in-layout arrays: ``x`` (B, T[, I]), ``target``
(B, T[, O]) and ``mask`` (B, T) saying which positions carry a loss. ``stream`` tasks (language modelling) give
one long batch per epoch whose rows are contiguous slices of the corpus; the trainer cuts it into truncated-BPTT
windows and carries the state across them.

* `AddingTask` — the adding problem, two-channel variant: each step holds (value ~ U(0, 1), marker ∈ {0, 1});
  exactly two markers are set, one in each half; the target, read at the last step, is the sum of the two marked
  values. Predicting the mean (1) gives MSE 1/6, the trivial baseline.
* `TextTask` — a character language model on a UTF-8 text file: predict character t+1 from characters ≤ t.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file or data setting that cannot be used (raised with a one-line explanation)."""


@dataclass
class Batch:
    x: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray | None = None  # valid steps per row, for ragged batches


class GeneratedTask:
    """Base of tasks whose data a seeded generator makes: each epoch is ``batches_per_epoch`` fresh batches of
    ``_make(rng, batch_size)``, the same for the same seed and epoch (so a resumed run sees the same data)."""

    seed = 0
    batch_size = 32
    batches_per_epoch = 100

    def _make(self, rng: np.random.Generator, n: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.batches_per_epoch):
            yield self._make(rng, self.batch_size)

    def num_batches(self) -> int:
        return self.batches_per_epoch


class AddingTask(GeneratedTask):
    name = "adding"
    loss = "mse"
    tokens = False
    stream = False
    baseline = 1.0 / 6.0

    def __init__(self, seq_length: int = 50, batch_size: int = 32, batches_per_epoch: int = 100,
                 val_size: int = 1000, seed: int = 0, dtype=np.float32):
        if seq_length < 2:
            raise DataError(f"the adding problem needs --seq-length >= 2, got {seq_length}")
        self.seq_length, self.batch_size, self.batches_per_epoch = seq_length, batch_size, batches_per_epoch
        self.seed, self.dtype = seed, np.dtype(dtype)
        self.input_size, self.output_size = 2, 1
        self.val = [self._make(np.random.default_rng([seed, 10**6]), val_size)]

    def _make(self, rng: np.random.Generator, n: int) -> Batch:
        steps = self.seq_length
        x = np.zeros((n, steps, 2), self.dtype)
        x[:, :, 0] = rng.random((n, steps))
        half = steps // 2
        first = rng.integers(0, half, n)
        second = rng.integers(half, steps, n)
        rows = np.arange(n)
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        target = np.zeros((n, steps, 1), self.dtype)
        target[:, -1, 0] = x[rows, first, 0] + x[rows, second, 0]
        mask = np.zeros((n, steps), bool)
        mask[:, -1] = True
        return Batch(x, target, mask)

    def metrics(self, model) -> dict:
        """Solved when the validation MSE is below 5% of the trivial baseline 1/6 (≈ 0.0083)."""
        model.eval()
        batch = self.val[0]
        out, _ = model.forward(batch.x.astype(model.dtype))
        model.train()
        mse = float(((out[:, -1, 0] - batch.target[:, -1, 0]) ** 2).mean())
        return {"success": float(mse < 0.05 * self.baseline)}

    def config(self) -> dict:
        return {"task": self.name, "seq_length": self.seq_length, "batch_size": self.batch_size,
                "batches_per_epoch": self.batches_per_epoch, "seed": self.seed}


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file, with one-line errors for missing, empty, binary and non-UTF-8 files."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {str(p)!r} does not exist")
    if not p.is_file():
        raise DataError(f"data path {str(p)!r} is not a regular file")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"data file {str(p)!r} is empty")
    if b"\x00" in raw:
        raise DataError(f"data file {str(p)!r} looks binary (it contains NUL bytes); expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"data file {str(p)!r} is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") \
            from None


class Vocabulary:
    """Characters ↔ integer ids (sorted characters, as char-rnn does)."""

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise DataError(f"characters not in the model's vocabulary: {''.join(unknown)[:20]!r}")
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


class TextTask:
    name = "text"
    loss = "ce"
    tokens = True
    stream = True

    def __init__(self, path: str | Path, seq_length: int = 100, batch_size: int = 32, val_fraction: float = 0.05,
                 vocabulary: Vocabulary | None = None):
        if not 0.0 < val_fraction < 0.5:
            raise DataError(f"--val-fraction must be in (0, 0.5), got {val_fraction}")
        self.path, self.seq_length, self.batch_size, self.val_fraction = str(path), seq_length, batch_size, val_fraction
        text = read_text(path)
        self.vocab = vocabulary or Vocabulary.from_text(text)
        ids = self.vocab.encode(text)
        n_val = int(len(ids) * val_fraction)
        train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
        need = batch_size * (seq_length + 1)
        if len(train) < need or len(val) < seq_length + 1:
            raise DataError(f"data file {self.path!r} has {len(ids)} characters; batch size {batch_size} with "
                            f"sequence length {seq_length} needs at least {int(need / (1 - val_fraction)) + 1}")
        self.train_stream = self._streams(train, batch_size)
        self.val_stream = self._streams(val, max(1, min(batch_size, len(val) // (seq_length + 1))))
        self.input_size = self.output_size = len(self.vocab)
        self.train_chars, self.val_chars = len(train), len(val)

    @staticmethod
    def _streams(ids: np.ndarray, rows: int) -> Batch:
        """Cut ``ids`` into ``rows`` contiguous streams; x[t] predicts target[t] = x[t + 1]."""
        width = (len(ids) - 1) // rows
        x = ids[:rows * width].reshape(rows, width)
        target = ids[1:rows * width + 1].reshape(rows, width)
        return Batch(x, target, np.ones(x.shape, bool))

    def batches(self, epoch: int) -> Iterator[Batch]:
        yield self.train_stream

    def num_batches(self) -> int:
        return 1

    @property
    def val(self) -> list[Batch]:
        return [self.val_stream]

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "seq_length": self.seq_length, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction}
