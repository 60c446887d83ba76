"""Sequence tagging: a BiLSTM(-CRF) tagger over CoNLL-format data, with entity-level precision/recall/F1.

Model: word embedding [+ character features: a character BiLSTM over each word, its two final states
concatenated] → bidirectional recurrent layer → linear emission scores (B, T, K) → CRF negative log-likelihood
and Viterbi decoding (or, with ``crf=False``, per-token softmax cross-entropy and arg-max).

Data: CoNLL columns — one ``token ... tag`` line per token (the first column is the token, the last the tag),
a blank line between sentences, ``-DOCSTART-`` lines ignored. Entities are read from BIO/IOB2 tags as conlleval
does: a chunk starts at ``B-X``, or at ``I-X`` after a tag of another type or ``O``, and runs over the
following ``I-X``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .configs import JSONConfig
from .crf import CRF
from .layers import Embedding, Linear
from .losses import CrossEntropyLoss
from .module import Module, as_rng, check_dtype
from .recurrent import LSTM
from .sequences import pad_sequences
from .tasks import Batch, DataError, read_text
from .vocab import LabelSet, TokenVocabulary


# -- data -------------------------------------------------------------------------------------------------
def read_conll(path, require_tags: bool = True) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, tags) from a CoNLL-format file; tags are empty lists when ``require_tags`` is false and the
    file has a single column."""
    sentences, tags, words, labels = [], [], [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if words:
                sentences.append(words)
                tags.append(labels)
            words, labels = [], []
            continue
        if require_tags and len(cols) < 2:
            raise DataError(f"{path}:{number}: expected 'token ... tag' columns, got {line[:60]!r}")
        words.append(cols[0])
        if len(cols) >= 2:
            labels.append(cols[-1])
    if words:
        sentences.append(words)
        tags.append(labels)
    if not sentences:
        raise DataError(f"{path}: no sentences found (expected CoNLL columns with blank lines between sentences)")
    return sentences, tags


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entity chunks (type, start, end exclusive) of a BIO/IOB2 tag sequence, as conlleval reads them."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, start = label, i
    return spans


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Micro-averaged entity precision, recall and F1 over sentences (and token accuracy)."""
    tp = n_pred = n_gold = 0
    correct_tokens = total_tokens = 0
    for g, p in zip(gold, predicted):
        gs, ps = entity_spans(g), entity_spans(p)
        tp, n_pred, n_gold = tp + len(gs & ps), n_pred + len(ps), n_gold + len(gs)
        correct_tokens += sum(a == b for a, b in zip(g, p))
        total_tokens += len(g)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "token_accuracy": correct_tokens / max(total_tokens, 1)}


# -- model ------------------------------------------------------------------------------------------------
@dataclass
class TaggerConfig(JSONConfig):
    vocab_size: int
    num_tags: int
    char_vocab_size: int = 0  # 0: no character features
    embedding_size: int = 50
    char_embedding_size: int = 16
    char_hidden_size: int = 16
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    crf: bool = True
    tag_names: list[str] | None = None  # for entity scores and for writing predictions
    dtype: str = "float32"
    kind: str = "tagger"

    def __post_init__(self):
        from .models import check_encoder_cell

        check_encoder_cell(self.cell)
        check_dtype(self.dtype)


@dataclass
class TagBatch(Batch):
    chars: np.ndarray | None = None  # (N, L) character ids of the N valid words, row-major over (B, T)
    char_lengths: np.ndarray | None = None


class Tagger(Module):
    """forward(words (B, T), lengths, chars=None, char_lengths=None) → emissions (B, T, K)."""

    def __init__(self, config: TaggerConfig, rng=None):
        super().__init__()
        from .models import CELLS

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
        self.rnn = CELLS[config.cell](features, config.hidden_size, num_layers=config.num_layers, bidirectional=True,
                                      dtype=dtype, rng=rng)
        self.emit = Linear(self.rnn.output_size, config.num_tags, dtype=dtype, rng=rng)
        self.crf = CRF(config.num_tags, dtype=dtype, rng=rng) if config.crf else None

    def forward(self, words, lengths, chars=None, char_lengths=None):
        x = self.embed.forward(words)
        mask = np.arange(words.shape[1])[None, :] < lengths[:, None]
        if self.config.char_vocab_size:
            _, (h, _) = self.char_rnn.forward(self.char_embed.forward(chars), lengths=char_lengths)
            feats = np.zeros(words.shape + (h.shape[0] * h.shape[2],), x.dtype)
            feats[mask] = np.concatenate([h[0], h[1]], axis=1)
            x = np.concatenate([x, feats], axis=2)
        self._mask = mask
        out, _ = self.rnn.forward(x, lengths=lengths)
        return self.emit.forward(out)

    def backward(self, demissions):
        dx, _ = self.rnn.backward(self.emit.backward(demissions))
        e = self.config.embedding_size
        if self.config.char_vocab_size:
            dfeat = dx[..., e:][self._mask]
            hc = self.config.char_hidden_size
            dh = np.stack([dfeat[:, :hc], dfeat[:, hc:]])
            dchars, _ = self.char_rnn.backward(None, (dh, np.zeros_like(dh)))
            self.char_embed.backward(dchars)
        self.embed.backward(np.ascontiguousarray(dx[..., :e]))
        return None

    def _inputs(self, batch: TagBatch):
        return batch.x, batch.lengths, batch.chars, batch.char_lengths

    def train_batch(self, batch: TagBatch) -> float:
        self.train()
        emissions = self.forward(*self._inputs(batch))
        if self.crf is not None:
            nll = self.crf.forward(emissions, batch.target, batch.mask)
            demissions = self.crf.backward(np.full(len(nll), 1.0 / len(nll), emissions.dtype))
            self.backward(demissions)
            return float(nll.mean())
        loss = CrossEntropyLoss()
        value = loss.forward(emissions, batch.target, mask=batch.mask)
        self.backward(loss.backward())
        return value

    def predict(self, batch: TagBatch) -> list[np.ndarray]:
        """Best tag ids per sentence (Viterbi with a CRF, arg-max otherwise)."""
        self.eval()
        emissions = self.forward(*self._inputs(batch))
        if self.crf is not None:
            return self.crf.decode(emissions, batch.mask)
        best = emissions.argmax(axis=2)
        return [best[b, :n] for b, n in enumerate(batch.lengths)]

    def evaluate(self, batches: list[TagBatch], tag_names: list[str] | None = None) -> dict:
        self.eval()
        total, count, gold, pred = 0.0, 0, [], []
        for batch in batches:
            emissions = self.forward(*self._inputs(batch))
            if self.crf is not None:
                total += float(self.crf.forward(emissions, batch.target, batch.mask).sum())
                count += len(batch.lengths)
                paths = self.crf.decode(emissions, batch.mask)
            else:
                total += CrossEntropyLoss("sum").forward(emissions, batch.target, mask=batch.mask)
                count += int(batch.mask.sum())
                paths = [emissions[b, :n].argmax(axis=1) for b, n in enumerate(batch.lengths)]
            names = tag_names or self.config.tag_names or [str(i) for i in range(self.config.num_tags)]
            for b, path in enumerate(paths):
                n = batch.lengths[b]
                gold.append([names[i] for i in batch.target[b, :n]])
                pred.append([names[i] for i in path])
        self.train()
        return {"val_loss": total / max(count, 1), **entity_scores(gold, pred)}


# -- task -------------------------------------------------------------------------------------------------
def encode_sentences(sentences, words: TokenVocabulary, chars: TokenVocabulary | None):
    seqs = [words.encode(s) for s in sentences]
    char_seqs = [[chars.encode(w) for w in s] for s in sentences] if chars is not None else None
    return seqs, char_seqs


def make_tag_batches(seqs, char_seqs, tag_seqs, order, batch_size) -> list[TagBatch]:
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, lengths = pad_sequences([seqs[i] for i in idx], dtype=np.int64)
        target, _ = pad_sequences([tag_seqs[i] for i in idx], dtype=np.int64)
        mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
        chars = char_lengths = None
        if char_seqs is not None:
            chars, char_lengths = pad_sequences([w for i in idx for w in char_seqs[i]], dtype=np.int64)
        batches.append(TagBatch(x, target, mask, lengths, chars, char_lengths))
    return batches


class TaggingTask:
    name = "tagging"
    stream = False
    seq_length = 0

    def __init__(self, path, val_path=None, batch_size: int = 16, val_fraction: float = 0.1, seed: int = 0,
                 char_features: bool = True, vocabulary=None, char_vocabulary=None, labels=None):
        self.path, self.val_path, self.batch_size, self.seed = str(path), val_path, batch_size, seed
        self.val_fraction, self.char_features = val_fraction, char_features
        sentences, tags = read_conll(path)
        order = np.random.default_rng(seed).permutation(len(sentences))
        if val_path:
            train_idx = order
            val_sentences, val_tags = read_conll(val_path)
        else:
            n_val = max(1, int(len(sentences) * val_fraction))
            if len(sentences) - n_val < 1:
                raise DataError(f"{path}: too few sentences ({len(sentences)}) to split off a validation part")
            train_idx = order[n_val:]
            val_sentences, val_tags = [sentences[i] for i in order[:n_val]], [tags[i] for i in order[:n_val]]
        train_sentences = [sentences[i] for i in train_idx]
        self.vocab = vocabulary or TokenVocabulary.build(train_sentences)
        self.char_vocab = None
        if char_features:
            self.char_vocab = char_vocabulary or TokenVocabulary.build(list(w) for s in train_sentences for w in s)
        self.labels = labels or LabelSet(sorted({t for s in tags for t in s}))
        seqs, char_seqs = encode_sentences(train_sentences, self.vocab, self.char_vocab)
        tag_seqs = [self.labels.encode(tags[i], where=self.path) for i in train_idx]
        self.train = (seqs, char_seqs, tag_seqs)
        vseqs, vchars = encode_sentences(val_sentences, self.vocab, self.char_vocab)
        vtags = [self.labels.encode(t, where=str(val_path or path)) for t in val_tags]
        self.val = make_tag_batches(vseqs, vchars, vtags, np.arange(len(vseqs)), 64)
        self.input_size, self.output_size = len(self.vocab), len(self.labels)

    def batches(self, epoch: int):
        seqs, char_seqs, tag_seqs = self.train
        order = np.random.default_rng([self.seed, epoch]).permutation(len(seqs))
        yield from make_tag_batches(seqs, char_seqs, tag_seqs, order, self.batch_size)

    def num_batches(self) -> int:
        return -(-len(self.train[0]) // self.batch_size)

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "val_data": self.val_path, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "char_features": self.char_features,
                "seq_length": 0}
