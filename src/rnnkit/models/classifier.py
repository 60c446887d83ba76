"""Many-to-one sequence classification: tokens → recurrent encoder → pooling over valid steps → class logits.

Pooling (over the valid steps of each sequence, from the last layer):

* ``last``: the final state, [h_n(forward) | h_n(backward)] for a bidirectional encoder (the backward
  direction's final state is its output at time 0, so both ends of the sequence are summarised);
* ``mean``: Σ_t h_t / L;  δh_t = δf / L for t < L;
* ``max``: f_k = max_t h_t,k;  δ flows only to the arg-max step of each feature.

Data: `rnnkit.tasks.classify.ClassificationTask` (one ``label<TAB>text`` per line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..layers import Dropout, Embedding, Linear
from ..losses import CrossEntropyLoss
from ..module import Module, as_rng, check_dtype, check_probability
from ..recurrent.states import hidden_part
from ..tasks.base import Batch
from .configs import JSONConfig, check_option_ranges, check_sizes, option
from .protocol import WholeSequenceModel, batched, inference
from .sequence import RECURRENT_LAYERS, check_encoder_cell

POOLINGS = ("last", "mean", "max")


@dataclass
class ClassifierConfig(JSONConfig):
    """A `SequenceClassifier` (stored in checkpoints). Fields shared with `ModelConfig` take its flags; the
    `option` fields here are the classifier's own flags."""

    vocab_size: int
    num_classes: int
    embedding_size: int = 64
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = option(True, "classify: encoder direction.", negative="--unidirectional")
    pooling: str = option("last", "classify: how the steps are summarised.", choices=POOLINGS)
    dropout: float = 0.0
    dtype: str = "float32"
    kind: ClassVar[str] = "classifier"

    def __post_init__(self):
        check_encoder_cell(self.cell)
        check_sizes(self, "vocab_size", "num_classes", "embedding_size", "hidden_size", "num_layers")
        check_probability("dropout", self.dropout)
        check_option_ranges(self)
        check_dtype(self.dtype)

    @classmethod
    def check_cell(cls, cell: str) -> None:
        check_encoder_cell(cell, "task 'classify'")

    def parameter_count(self) -> int:
        """The model's number of parameters, computed without building it (`rnnkit.models.footprint`)."""
        layer = RECURRENT_LAYERS[self.cell]
        rnn = layer.parameter_count(self.embedding_size, self.hidden_size, self.num_layers, self.bidirectional)
        features = (2 if self.bidirectional else 1) * self.hidden_size
        return self.vocab_size * self.embedding_size + rnn + (features + 1) * self.num_classes

    @classmethod
    def for_task(cls, task, **options) -> ClassifierConfig:
        return cls(len(task.vocab), len(task.labels), **options)


class SequenceClassifier(WholeSequenceModel, Module):
    """forward(ids (B, T), lengths (B,) = None) → logits (B, C) — ids (T,) → logits (C,) for one unbatched
    sequence; backward(δlogits) → None (token inputs)."""

    def __init__(self, config: ClassifierConfig, rng=None):
        super().__init__()
        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        self.embed = Embedding(config.vocab_size, config.embedding_size, padding_idx=0, dtype=dtype, rng=rng)
        self.rnn = RECURRENT_LAYERS[config.cell](config.embedding_size, config.hidden_size,
                                                 num_layers=config.num_layers, bidirectional=config.bidirectional,
                                                 dropout=config.dropout, dtype=dtype, rng=rng)
        self.drop = Dropout(config.dropout, rng=rng) if config.dropout else None
        self.head = Linear(self.rnn.output_size, config.num_classes, dtype=dtype, rng=rng)
        self.loss = CrossEntropyLoss()

    def _pool(self, out, final, lengths):
        """(features (B, F), the arg-max steps (B, F) for max pooling or None)."""
        mode, d = self.config.pooling, self.rnn.num_directions
        if mode == "last":
            h = hidden_part(final)[-d:]  # the last layer's directions
            return np.concatenate(list(h), axis=1), None
        mask = (np.arange(out.shape[1])[None, :] < lengths[:, None])[..., None]
        if mode == "mean":
            return (out * mask).sum(axis=1) / lengths[:, None].astype(out.dtype), None
        argmax = np.where(mask, out, -np.inf).argmax(axis=1)
        return np.take_along_axis(out, argmax[:, None, :], axis=1)[:, 0], argmax

    def _pool_backward(self, dfeat, out_shape, final, lengths, argmax):
        mode = self.config.pooling
        if mode == "last":
            d, width = self.rnn.num_directions, dfeat.shape[1] // self.rnn.num_directions
            parts = final if isinstance(final, tuple) else (final,)
            dstate = [np.zeros_like(p) for p in parts]
            for k in range(d):
                dstate[0][len(dstate[0]) - d + k] = dfeat[:, k * width:(k + 1) * width]
            return None, (tuple(dstate) if isinstance(final, tuple) else dstate[0])
        dout = np.zeros(out_shape, dfeat.dtype)
        if mode == "mean":
            mask = (np.arange(out_shape[1])[None, :] < lengths[:, None])[..., None]
            dout += mask * (dfeat / lengths[:, None].astype(dfeat.dtype))[:, None, :]
        else:
            np.put_along_axis(dout, argmax[:, None, :], dfeat[:, None, :], axis=1)
        return dout, None

    def forward(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        ids, lengths, unbatched = batched(ids, lengths, self.config.vocab_size)
        out, final = self.rnn.forward(self.embed.forward(ids), lengths=lengths)
        feat, argmax = self._pool(out, final, lengths)
        if self.drop is not None:
            feat = self.drop.forward(feat)
        self.save_for_backward(unbatched, (out.shape, final, lengths, argmax))
        logits = self.head.forward(feat)
        return logits[0] if unbatched else logits

    def backward(self, dlogits: np.ndarray) -> None:
        unbatched, pooled = self.saved_for_backward()
        dfeat = self.head.backward(dlogits[None] if unbatched else dlogits)
        if self.drop is not None:
            dfeat = self.drop.backward(dfeat)
        dout, dstate = self._pool_backward(dfeat, *pooled)
        dx, _ = self.rnn.backward(dout, dstate)
        return self.embed.backward(dx)

    # -- the TrainableModel protocol ------------------------------------------------------------------
    def train_batch(self, batch: Batch, window=None, state=None) -> float:
        """Cross-entropy of the logits against the class ids, backpropagated (whole sequences only)."""
        self.check_whole(batch, window)
        self.train()
        logits = self.forward(batch.x, batch.lengths)
        loss = self.loss.forward(logits, batch.target)
        if np.isfinite(loss):
            self.backward(self.loss.backward())
        return loss

    def predict(self, ids, lengths) -> np.ndarray:
        """Class ids (B,) of a batch of token ids (B, T) with lengths (B,)."""
        with inference(self):
            return self.forward(ids, lengths).argmax(axis=1)

    def evaluate(self, task) -> dict:
        """``val_loss`` (mean cross-entropy per sequence), ``accuracy`` and the ``confusion`` matrix (true × predicted)
        over ``task.val``."""
        loss, total, correct = 0.0, 0, 0
        confusion = np.zeros((self.config.num_classes,) * 2, np.int64)
        with inference(self):
            for batch in task.val:
                logits = self.forward(batch.x, batch.lengths)
                loss += CrossEntropyLoss("sum").forward(logits, batch.target)
                pred = logits.argmax(axis=1)
                np.add.at(confusion, (batch.target, pred), 1)
                total += len(pred)
                correct += int((pred == batch.target).sum())
        return {"val_loss": loss / max(total, 1), "accuracy": correct / max(total, 1), "confusion": confusion}
