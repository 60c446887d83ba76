"""A character language model on a UTF-8 text file (`TextTask`), and `read_text`, the one reader of user text files.

`TextTask`: predict character t+1 from characters ≤ t. The corpus is split at the end into a validation part, and
each part is cut into ``batch_size`` contiguous streams; one epoch is one pass over the training streams in
truncated-BPTT windows of ``seq_length`` steps, the state carried from window to window (char-rnn's scheme).

``--data shakespeare`` (when no file of that name exists) is the corpus shipped with rnnkit, `BUNDLED`: the first
250 KB of Tiny Shakespeare (char-rnn's corpus, from Shakespeare's plays, which are in the public domain).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import validate
from ..errors import DataError
from .base import Batch, TaskBase
from .vocab import CharVocabulary, stored

BUNDLED = {"shakespeare": Path(__file__).resolve().parents[1] / "data" / "shakespeare.txt"}


def corpus_path(name: str | Path) -> Path:
    """The file ``name`` names: a path, or the name of a bundled corpus (`BUNDLED`) when no such file exists."""
    p = Path(name)
    return BUNDLED[str(name)] if not p.exists() and str(name) in BUNDLED else p


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (or a bundled corpus by name, see `corpus_path`), with one-line errors for missing,
    empty, unreadable, binary and non-UTF-8 files."""
    p = corpus_path(path)
    if not p.exists():
        raise DataError(f"data file {str(p)!r} does not exist")
    if not p.is_file():
        raise DataError(f"data path {str(p)!r} is not a regular file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"data file {str(p)!r} cannot be read: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise DataError(f"data file {str(p)!r} looks binary (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is not part of the text
    except UnicodeDecodeError as e:
        raise DataError(f"data file {str(p)!r} is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") \
            from None
    if not text.replace("\ufeff", "").strip():  # str.isspace's whitespace: NBSP, \x1c-\x1f, U+2028 too
        raise DataError(f"data file {str(p)!r} is empty (nothing but whitespace)")
    return text


class TextTask(TaskBase):
    """Character language modelling: x (B, T) character ids, target (B, T) the next character of each."""

    name = "text"
    data_options = ("data", "seq_length", "batch_size", "val_fraction")
    loss = "ce"
    loss_unit = "nats/char"
    tokens = True
    stream = True
    # forget_bias None: PyTorch's initialisation. The bias of 1 that char-rnn and Keras use (and the memory tasks
    # keep) made an LSTM-256 char model learn less per update: validation 1.673 vs 1.627 nats/char after 2,263
    # updates (tinyshakespeare, batch 32, TBPTT 100; torch itself: 1.621).
    cli_defaults = {"cell": "rnn", "seq_length": 50, "batch_size": 50, "hidden_size": 128, "num_layers": 2,
                    "lr": 2e-3, "eval_every": 250, "epochs": 10, "forget_bias": None}

    def __init__(self, path: str | Path, seq_length: int = 100, batch_size: int = 32, val_fraction: float = 0.05,
                 vocabulary: CharVocabulary | None = None):
        val_fraction = validate.val_fraction(val_fraction)
        self.path, self.seq_length, self.batch_size, self.val_fraction = str(path), seq_length, batch_size, val_fraction
        text = read_text(path)
        self.vocab = vocabulary or CharVocabulary.from_text(text)
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

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None) -> TextTask:
        """The task for `rnnkit train text` (``options``: a `DataConfig`; ``meta``: a checkpoint's, for its
        vocabulary)."""
        if not options.data:
            raise DataError("task 'text' needs --data FILE (a UTF-8 text file; '--data shakespeare' is the 250 KB "
                            "excerpt of Tiny Shakespeare shipped with rnnkit)")
        return cls(options.data, seq_length=options.seq_length, batch_size=options.batch_size,
                   val_fraction=options.val_fraction, vocabulary=stored(meta, "vocab", CharVocabulary))

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

    def vocabularies(self) -> dict[str, list[str]]:
        return {"vocab": list(self.vocab.chars)}
