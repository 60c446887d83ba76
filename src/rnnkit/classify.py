"""Many-to-one sequence classification: tokens → recurrent encoder → pooling over valid steps → class logits.

Pooling (over the valid steps of each sequence, from the last layer):

* ``last``: the final state, [h_n(forward) | h_n(backward)] for a bidirectional encoder (the backward
  direction's final state is its output at time 0, so both ends of the sequence are summarised);
* ``mean``: Σ_t h_t / L;  δh_t = δf / L for t < L;
* ``max``: f_k = max_t h_t,k;  δ flows only to the arg-max step of each feature.

Data (`ClassificationTask`): a UTF-8 file with one ``label<TAB>text`` per line; the text is split into
whitespace words (lower-cased) or characters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .configs import JSONConfig
from .layers import Dropout, Embedding, Linear
from .losses import CrossEntropyLoss
from .module import Module, as_rng, check_dtype
from .recurrent.layer import hidden_part
from .sequences import pad_sequences
from .tasks import Batch, DataError, read_text
from .vocab import LabelSet, TokenVocabulary

POOLINGS = ("last", "mean", "max")


@dataclass
class ClassifierConfig(JSONConfig):
    vocab_size: int
    num_classes: int
    embedding_size: int = 64
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "last"
    dropout: float = 0.0
    dtype: str = "float32"
    kind: str = "classifier"

    def __post_init__(self):
        from .models import check_encoder_cell

        check_encoder_cell(self.cell)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check_dtype(self.dtype)


class SequenceClassifier(Module):
    """forward(ids (B, T), lengths (B,)) → logits (B, C); backward(δlogits) → None (token inputs)."""

    def __init__(self, config: ClassifierConfig, rng=None):
        super().__init__()
        from .models import CELLS

        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        self.embed = Embedding(config.vocab_size, config.embedding_size, padding_idx=0, dtype=dtype, rng=rng)
        self.rnn = CELLS[config.cell](config.embedding_size, config.hidden_size, num_layers=config.num_layers,
                                      bidirectional=config.bidirectional, dropout=config.dropout, dtype=dtype, rng=rng)
        self.drop = Dropout(config.dropout, rng=rng) if config.dropout else None
        self.head = Linear(self.rnn.output_size, config.num_classes, dtype=dtype, rng=rng)
        self.loss = CrossEntropyLoss()

    def _pool(self, out, final, lengths):
        mode, d = self.config.pooling, self.rnn.num_directions
        if mode == "last":
            h = hidden_part(final)[-d:]  # the last layer's directions
            return np.concatenate(list(h), axis=1)
        mask = (np.arange(out.shape[1])[None, :] < lengths[:, None])[..., None]
        if mode == "mean":
            return (out * mask).sum(axis=1) / lengths[:, None].astype(out.dtype)
        masked = np.where(mask, out, -np.inf)
        self._argmax = masked.argmax(axis=1)
        return np.take_along_axis(out, self._argmax[:, None, :], axis=1)[:, 0]

    def _pool_backward(self, dfeat, out_shape, final, lengths):
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
            np.put_along_axis(dout, self._argmax[:, None, :], dfeat[:, None, :], axis=1)
        return dout, None

    def forward(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out, final = self.rnn.forward(self.embed.forward(ids), lengths=lengths)
        feat = self._pool(out, final, lengths)
        if self.drop is not None:
            feat = self.drop.forward(feat)
        self._ctx = (out.shape, final, lengths)
        return self.head.forward(feat)

    def backward(self, dlogits: np.ndarray) -> None:
        dfeat = self.head.backward(dlogits)
        if self.drop is not None:
            dfeat = self.drop.backward(dfeat)
        out_shape, final, lengths = self._ctx
        dout, dstate = self._pool_backward(dfeat, out_shape, final, lengths)
        dx, _ = self.rnn.backward(dout, dstate)
        return self.embed.backward(dx)

    # -- used by the trainer --------------------------------------------------------------------------
    def train_batch(self, batch: Batch) -> float:
        self.train()
        logits = self.forward(batch.x, batch.lengths)
        loss = self.loss.forward(logits, batch.target)
        self.backward(self.loss.backward())
        return loss

    def predict(self, ids, lengths) -> np.ndarray:
        self.eval()
        return self.forward(ids, lengths).argmax(axis=1)

    def evaluate(self, batches: list[Batch]) -> dict:
        self.eval()
        loss, total, correct = 0.0, 0, 0
        confusion = np.zeros((self.config.num_classes,) * 2, np.int64)
        for batch in batches:
            logits = self.forward(batch.x, batch.lengths)
            loss += CrossEntropyLoss("sum").forward(logits, batch.target)
            pred = logits.argmax(axis=1)
            np.add.at(confusion, (batch.target, pred), 1)
            total += len(pred)
            correct += int((pred == batch.target).sum())
        self.train()
        return {"val_loss": loss / max(total, 1), "accuracy": correct / max(total, 1), "confusion": confusion}


def tokenize(text: str, unit: str) -> list[str]:
    return list(text) if unit == "chars" else text.lower().split()


def read_labelled_lines(path) -> tuple[list[str], list[str]]:
    """(labels, texts) from ``label<TAB>text`` lines; blank lines are skipped."""
    labels, texts = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab or not label.strip() or not text.strip():
            raise DataError(f"{path}:{number}: expected 'label<TAB>text', got {line[:60]!r}")
        labels.append(label.strip())
        texts.append(text)
    if len(labels) < 2:
        raise DataError(f"{path}: needs at least 2 labelled lines, got {len(labels)}")
    return labels, texts


def make_batches(seqs: list[np.ndarray], targets: np.ndarray, batch_size: int, order: np.ndarray) -> list[Batch]:
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, lengths = pad_sequences([seqs[i] for i in idx], padding_value=0, dtype=np.int64)
        batches.append(Batch(x, targets[idx], np.arange(x.shape[1])[None, :] < lengths[:, None], lengths))
    return batches


class ClassificationTask:
    name = "classify"
    stream = False
    seq_length = 0

    def __init__(self, path, unit: str = "words", batch_size: int = 32, val_fraction: float = 0.1, seed: int = 0,
                 vocabulary: TokenVocabulary | None = None, labels: LabelSet | None = None):
        if unit not in ("words", "chars"):
            raise DataError(f"--unit must be 'words' or 'chars', got {unit!r}")
        self.path, self.unit, self.batch_size, self.val_fraction, self.seed = str(path), unit, batch_size, \
            val_fraction, seed
        names, texts = read_labelled_lines(path)
        tokens = [tokenize(t, unit) or ["<empty>"] for t in texts]
        order = np.random.default_rng(seed).permutation(len(texts))
        n_val = max(1, int(len(texts) * val_fraction))
        val_idx, train_idx = order[:n_val], order[n_val:]
        if len(train_idx) == 0:
            raise DataError(f"{path}: too few lines to split off {val_fraction:.0%} for validation")
        self.vocab = vocabulary or TokenVocabulary.build(tokens[i] for i in train_idx)
        self.labels = labels or LabelSet(sorted(set(names)))
        self.seqs = [self.vocab.encode(t) for t in tokens]
        self.targets = self.labels.encode(names, where=self.path)
        self.train_idx = train_idx
        self.val = make_batches(self.seqs, self.targets, 256, val_idx)
        self.input_size, self.output_size = len(self.vocab), len(self.labels)

    def batches(self, epoch: int):
        order = self.train_idx[np.random.default_rng([self.seed, epoch]).permutation(len(self.train_idx))]
        yield from make_batches(self.seqs, self.targets, self.batch_size, order)

    def num_batches(self) -> int:
        return -(-len(self.train_idx) // self.batch_size)

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "unit": self.unit, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "seq_length": 0}
