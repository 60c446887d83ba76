"""Sequence tagging model: a BiLSTM(-CRF) tagger with optional character features.

Model: word embedding [+ character features: a character BiLSTM over each word, its two final states
concatenated] → bidirectional recurrent layer → linear emission scores (B, T, K) → CRF negative log-likelihood
and Viterbi decoding (or, with ``crf=False``, per-token softmax cross-entropy and arg-max).

Data and entity scores: `rnnkit.tasks.tagging` (CoNLL columns, BIO/IOB2 chunks as conlleval reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import validate
from ..crf import CRF
from ..errors import ConfigError, ShapeError
from ..layers import Embedding, Linear
from ..losses import CrossEntropyLoss
from ..module import Module, as_rng, check_dtype
from ..recurrent import LSTM
from ..tasks.tagging import TagBatch, entity_scores
from .configs import JSONConfig, check_always_bidirectional, check_option_ranges, check_sizes, option
from .protocol import WholeSequenceModel, batched, inference
from .sequence import RECURRENT_LAYERS, check_encoder_cell


@dataclass
class TaggerConfig(JSONConfig):
    """A `Tagger` (stored in checkpoints); ``crf`` is the tagger's own flag, the shared fields take `ModelConfig`'s."""

    vocab_size: int
    num_tags: int
    char_vocab_size: int = 0  # 0: no character features
    embedding_size: int = 50
    char_embedding_size: int = 16
    char_hidden_size: int = 16
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    crf: bool = option(True, "tagging: CRF output layer or per-token softmax.", negative="--no-crf")
    tag_names: list[str] | None = None  # for entity scores and for writing predictions
    dtype: str = "float32"
    bidirectional: bool = True  # always: the encoder reads each sentence both ways
    kind: ClassVar[str] = "tagger"

    def __post_init__(self):
        check_always_bidirectional(self)
        check_encoder_cell(self.cell)
        check_sizes(self, "vocab_size", "num_tags", "embedding_size", "char_embedding_size", "char_hidden_size",
                    "hidden_size", "num_layers")
        check_sizes(self, "char_vocab_size", low=0)
        check_option_ranges(self)
        check_dtype(self.dtype)
        self.check_tag_names()

    def check_tag_names(self) -> None:
        """``tag_names``: None, or ``num_tags`` distinct strings (a name per tag id)."""
        names = self.tag_names
        if names is None:
            return
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"tag_names must be a list of non-empty strings, got {names!r:.80}")
        if len(names) != self.num_tags:
            raise ConfigError(f"tag_names must name each of the {self.num_tags} tags, got {len(names)} names")
        if len(set(names)) < len(names):
            raise ConfigError(f"tag_names must be distinct, got {sorted({n for n in names if names.count(n) > 1})} "
                              "more than once")

    @classmethod
    def check_cell(cls, cell: str) -> None:
        check_encoder_cell(cell, "task 'tagging'")

    def parameter_count(self) -> int:
        """The model's number of parameters, computed without building it (`rnnkit.models.footprint`)."""
        count, features = self.vocab_size * self.embedding_size, self.embedding_size
        if self.char_vocab_size:
            count += self.char_vocab_size * self.char_embedding_size
            count += LSTM.parameter_count(self.char_embedding_size, self.char_hidden_size, 1, True)
            features += 2 * self.char_hidden_size
        k = self.num_tags
        count += RECURRENT_LAYERS[self.cell].parameter_count(features, self.hidden_size, self.num_layers,
                                                             self.bidirectional)
        return count + (2 * self.hidden_size + 1) * k + ((k + 2) * k if self.crf else 0)

    @classmethod
    def for_task(cls, task, **options) -> TaggerConfig:
        chars = len(task.char_vocab) if task.char_vocab else 0
        return cls(len(task.vocab), len(task.labels), char_vocab_size=chars, tag_names=list(task.labels.labels),
                   **options)


class Tagger(WholeSequenceModel, Module):
    """forward(words (B, T), lengths (B,) = None, chars=None, char_lengths=None) → emissions (B, T, K) — words (T,)
    → emissions (T, K) for one unbatched sentence (``chars`` keep their layout: one row per valid word)."""

    def __init__(self, config: TaggerConfig, rng=None):
        super().__init__()
        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        self.embed = Embedding(config.vocab_size, config.embedding_size, padding_idx=0, dtype=dtype, rng=rng)
        features = config.embedding_size
        if config.char_vocab_size:
            self.char_embed = Embedding(config.char_vocab_size, config.char_embedding_size, padding_idx=0,
                                        dtype=dtype, rng=rng)
            self.char_rnn = LSTM(config.char_embedding_size, config.char_hidden_size, bidirectional=True,
                                 dtype=dtype, rng=rng)
            features += 2 * config.char_hidden_size
        self.rnn = RECURRENT_LAYERS[config.cell](features, config.hidden_size, num_layers=config.num_layers,
                                                 bidirectional=config.bidirectional, dtype=dtype, rng=rng)
        self.emit = Linear(self.rnn.output_size, config.num_tags, dtype=dtype, rng=rng)
        self.crf = CRF(config.num_tags, dtype=dtype, rng=rng) if config.crf else None

    def forward(self, words, lengths=None, chars=None, char_lengths=None):
        words, lengths, unbatched = batched(words, lengths, self.config.vocab_size, "words")
        x = self.embed.forward(words)
        mask = np.arange(words.shape[1])[None, :] < lengths[:, None]
        if self.config.char_vocab_size:
            chars, char_lengths = self._checked_chars(chars, char_lengths, int(mask.sum()))
            _, (h, _) = self.char_rnn.forward(self.char_embed.forward(chars), lengths=char_lengths)
            feats = np.zeros(words.shape + (h.shape[0] * h.shape[2],), x.dtype)
            feats[mask] = np.concatenate([h[0], h[1]], axis=1)
            x = np.concatenate([x, feats], axis=2)
        self.save_for_backward(mask, unbatched)
        out, _ = self.rnn.forward(x, lengths=lengths)
        emissions = self.emit.forward(out)
        return emissions[0] if unbatched else emissions

    def _checked_chars(self, chars, char_lengths, words: int):
        """(chars (W, C), char_lengths (W,)): one row of character ids per valid word, or a one-line error naming
        ``chars`` or ``char_lengths``."""
        chars = validate.token_ids(chars, "chars", self.config.char_vocab_size, ndims=(2,))
        if len(chars) != words:
            raise ShapeError(f"chars must have one row per valid word ({words}), got shape {chars.shape}")
        lengths = np.full(words, chars.shape[1]) if char_lengths is None else char_lengths
        return chars, validate.sequence_lengths(lengths, *chars.shape, name="char_lengths")

    def backward(self, demissions):
        mask, unbatched = self.saved_for_backward()
        dx, _ = self.rnn.backward(self.emit.backward(demissions[None] if unbatched else demissions))
        e = self.config.embedding_size
        if self.config.char_vocab_size:
            dfeat = dx[..., e:][mask]
            hc = self.config.char_hidden_size
            dh = np.stack([dfeat[:, :hc], dfeat[:, hc:]])
            dchars, _ = self.char_rnn.backward(None, (dh, np.zeros_like(dh)))
            self.char_embed.backward(dchars)
        self.embed.backward(np.ascontiguousarray(dx[..., :e]))
        return None

    def _inputs(self, batch: TagBatch):
        return batch.x, batch.lengths, batch.chars, batch.char_lengths

    def train_batch(self, batch: TagBatch, window=None, state=None) -> float:
        """CRF negative log-likelihood (mean per sentence) or per-token cross-entropy, backpropagated."""
        self.check_whole(batch, window)
        self.train()
        emissions = self.forward(*self._inputs(batch))
        if self.crf is not None:
            nll = self.crf.forward(emissions, batch.target, batch.mask)
            loss = float(nll.mean())
            if np.isfinite(loss):
                self.backward(self.crf.backward(np.full(len(nll), 1.0 / len(nll), emissions.dtype)))
            return loss
        objective = CrossEntropyLoss()
        loss = objective.forward(emissions, batch.target, mask=batch.mask)
        if np.isfinite(loss):
            self.backward(objective.backward())
        return loss

    def _paths(self, emissions, batch) -> list[np.ndarray]:
        if self.crf is not None:
            return self.crf.decode(emissions, batch.mask)
        return [emissions[b, :n].argmax(axis=1) for b, n in enumerate(batch.lengths)]

    def predict(self, batch: TagBatch) -> list[np.ndarray]:
        """Best tag ids per sentence (Viterbi with a CRF, arg-max otherwise)."""
        with inference(self):
            return self._paths(self.forward(*self._inputs(batch)), batch)

    def _batch_loss(self, emissions, batch) -> tuple[float, int]:
        if self.crf is not None:
            return float(self.crf.forward(emissions, batch.target, batch.mask).sum()), len(batch.lengths)
        return CrossEntropyLoss("sum").forward(emissions, batch.target, mask=batch.mask), int(batch.mask.sum())

    def evaluate(self, task) -> dict:
        """``val_loss`` (per sentence with a CRF, per token without) and entity precision, recall, F1 and token
        accuracy over ``task.val``."""
        total, count, gold, pred = 0.0, 0, [], []
        names = self.config.tag_names or [str(i) for i in range(self.config.num_tags)]
        with inference(self):
            for batch in task.val:
                emissions = self.forward(*self._inputs(batch))
                loss, n = self._batch_loss(emissions, batch)
                total, count = total + loss, count + n
                for b, path in enumerate(self._paths(emissions, batch)):
                    gold.append([names[i] for i in batch.target[b, :batch.lengths[b]]])
                    pred.append([names[i] for i in path])
        return {"val_loss": total / max(count, 1), **entity_scores(gold, pred)}
