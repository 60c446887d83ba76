"""Sequence tagging data: CoNLL columns, entity chunks and their scores, and `TaggingTask`.

CoNLL columns: one ``token ... tag`` line per token (the first column is the token, the last the tag), a blank line
between sentences, ``-DOCSTART-`` lines ignored. Entities are read from BIO/IOB2 tags as conlleval does: a chunk
starts at ``B-X``, or at ``I-X`` after a tag of another type or ``O``, and runs over the following ``I-X``.

A `TagBatch` holds x (B, T) word ids, target (B, T) tag ids, mask (B, T), lengths (B,) and, with character
features, ``chars`` (N, L): the character ids of the N valid words in row-major (B, T) order, ``char_lengths`` (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..sequences import pad_sequences
from .base import Batch
from .formats import FORMATS, conll_columns
from .splits import ExampleTask, chunks, length_mask, split_indices
from .text import read_text
from .vocab import LabelSet, TokenVocabulary, stored


def read_conll(path, require_tags: bool = True) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, tags) from a CoNLL-format file (`rnnkit.tasks.formats`: a file in another format is refused at
    its first offending line); tags are empty lists when ``require_tags`` is false and the file has one column."""
    sentences, tags, words, labels = [], [], [], []
    for cols in conll_columns(path, read_text(path).splitlines(), require_tags) + [[]]:
        if not cols or cols[0] == "-DOCSTART-":
            if words:
                sentences.append(words)
                tags.append(labels)
            words, labels = [], []
            continue
        words.append(cols[0])
        if len(cols) >= 2:
            labels.append(cols[-1])
    if not sentences:
        raise DataError(f"{path}: no sentences found (expected {FORMATS['conll']})")
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


@dataclass
class TagBatch(Batch):
    """A `Batch` of sentences, with the characters of their words for the character features."""

    chars: np.ndarray | None = None  # (N, L) character ids of the N valid words, row-major over (B, T)
    char_lengths: np.ndarray | None = None


def encode_sentences(sentences, words: TokenVocabulary, chars: TokenVocabulary | None):
    """Word ids per sentence, and (with ``chars``) character ids per word per sentence."""
    seqs = [words.encode(s) for s in sentences]
    char_seqs = [[chars.encode(w) for w in s] for s in sentences] if chars is not None else None
    return seqs, char_seqs


def make_tag_batches(seqs, char_seqs, tag_seqs, order, batch_size) -> list[TagBatch]:
    """`TagBatch`es of the sentences ``order`` names, ``batch_size`` at a time."""
    batches = []
    for idx in chunks(order, batch_size):
        x, lengths = pad_sequences([seqs[i] for i in idx], dtype=np.int64)
        target, _ = pad_sequences([tag_seqs[i] for i in idx], dtype=np.int64)
        chars = char_lengths = None
        if char_seqs is not None:
            chars, char_lengths = pad_sequences([w for i in idx for w in char_seqs[i]], dtype=np.int64)
        batches.append(TagBatch(x, target, length_mask(lengths, x.shape[1]), lengths, chars, char_lengths))
    return batches


class TaggingTask(ExampleTask):
    """CoNLL sentences → tag ids; scored by the tagger's entity precision, recall and F1."""

    name = "tagging"
    data_options = ("data", "val_data", "batch_size", "val_fraction", "char_features")
    model_kind = "tagger"
    tokens = True
    cli_defaults = {"cell": "lstm", "seq_length": 0, "batch_size": 16, "hidden_size": 64, "num_layers": 1,
                    "lr": 3e-3, "eval_every": 100, "epochs": 10, "val_fraction": 0.1, "embedding_size": 64}

    def __init__(self, path, val_path=None, batch_size: int = 16, val_fraction: float = 0.1, seed: int = 0,
                 char_features: bool = True, vocabulary=None, char_vocabulary=None, labels=None):
        self.path, self.val_path, self.batch_size, self.seed = str(path), val_path, batch_size, seed
        self.val_fraction, self.char_features = val_fraction, char_features
        sentences, tags = read_conll(path)
        if val_path:
            self.train_idx = np.random.default_rng(seed).permutation(len(sentences))
            val_sentences, val_tags = read_conll(val_path)
        else:
            self.train_idx, val_idx = split_indices(len(sentences), val_fraction, seed, self.path, "sentences")
            val_sentences, val_tags = [sentences[i] for i in val_idx], [tags[i] for i in val_idx]
        train_sentences = [sentences[i] for i in self.train_idx]
        self.vocab = vocabulary or TokenVocabulary.build(train_sentences)
        self.char_vocab = None
        if char_features:
            self.char_vocab = char_vocabulary or TokenVocabulary.build(list(w) for s in train_sentences for w in s)
        self.labels = labels or LabelSet(sorted({t for s in tags for t in s}))
        self.seqs, self.char_seqs = encode_sentences(sentences, self.vocab, self.char_vocab)
        self.tag_seqs = [self.labels.encode(t, where=self.path) for t in tags]
        vseqs, vchars = encode_sentences(val_sentences, self.vocab, self.char_vocab)
        vtags = [self.labels.encode(t, where=str(val_path or path)) for t in val_tags]
        self.val = make_tag_batches(vseqs, vchars, vtags, np.arange(len(vseqs)), 64)
        self.input_size, self.output_size = len(self.vocab), len(self.labels)

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None) -> TaggingTask:
        """The task for `rnnkit train tagging` from a `DataConfig` (and a checkpoint's vocabularies)."""
        if not options.data:
            raise DataError(f"task 'tagging' needs --data FILE ({FORMATS['conll']})")
        return cls(options.data, val_path=options.val_data, batch_size=options.batch_size,
                   val_fraction=options.val_fraction, seed=seed, char_features=options.char_features,
                   vocabulary=stored(meta, "tokens", TokenVocabulary),
                   char_vocabulary=stored(meta, "chars_vocab", TokenVocabulary),
                   labels=stored(meta, "labels", LabelSet))

    def make_batches(self, order: np.ndarray, batch_size: int) -> list[TagBatch]:
        return make_tag_batches(self.seqs, self.char_seqs, self.tag_seqs, order, batch_size)

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "val_data": self.val_path, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "char_features": self.char_features,
                "seq_length": 0}

    def vocabularies(self) -> dict[str, list[str]]:
        out = {"tokens": list(self.vocab.tokens), "labels": list(self.labels.labels)}
        if self.char_vocab is not None:
            out["chars_vocab"] = list(self.char_vocab.tokens)
        return out
