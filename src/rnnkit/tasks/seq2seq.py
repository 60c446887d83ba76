"""Sequence-to-sequence data: ``source<TAB>target`` lines (or the built-in digit reversal), and `Seq2SeqTask`.

A `PairBatch` holds the decoder's teacher-forcing input x = [<bos>, y_1 … y_n] (B, T), its target
[y_1 … y_n, <eos>] (B, T), mask (B, T) over the target's valid steps, lengths (B,) = n + 2, and the ``source``
(B, S) token ids with ``source_lengths`` (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..sequences import pad_sequences
from .base import Batch
from .classify import UNITS, tokenize
from .formats import tab_fields
from .splits import ExampleTask, chunks, length_mask, split_indices
from .text import read_text
from .vocab import TokenVocabulary, stored

BOS, EOS = "<bos>", "<eos>"
BOS_ID, EOS_ID = 2, 3  # after <pad>, <unk> in the target vocabulary


@dataclass
class PairBatch(Batch):
    """A `Batch` of target sequences with the source sequences they translate."""

    source: np.ndarray | None = None
    source_lengths: np.ndarray | None = None


def build_target_vocabulary(sequences) -> TokenVocabulary:
    """Target tokens with <bos> = 2 and <eos> = 3 after <pad>, <unk>."""
    built = TokenVocabulary.build(sequences, reserved=(BOS, EOS))
    return TokenVocabulary([BOS, EOS] + built.tokens[2:])


def reversal_pairs(count: int, rng: np.random.Generator, low: int = 4, high: int = 12) -> list[tuple[str, str]]:
    """The built-in task: a random digit string and its reverse."""
    pairs = []
    for _ in range(count):
        s = "".join(rng.choice(list("0123456789"), rng.integers(low, high + 1)))
        pairs.append((s, s[::-1]))
    return pairs


def read_pairs(path) -> list[tuple[str, str]]:
    """(source, target) pairs from ``source<TAB>target`` lines (`rnnkit.tasks.formats`); blank lines are skipped."""
    pairs = [(src, tgt) for _, src, tgt in tab_fields(path, read_text(path).splitlines(), "pairs")]
    if len(pairs) < 2:
        raise DataError(f"{path}: needs at least 2 'source<TAB>target' lines, got {len(pairs)}")
    return pairs


def make_pair_batches(src, tgt, order, batch_size) -> list[PairBatch]:
    """`PairBatch`es of the pairs ``order`` names, ``batch_size`` at a time."""
    batches = []
    for idx in chunks(order, batch_size):
        source, source_lengths = pad_sequences([src[i] for i in idx], dtype=np.int64)
        full, lengths = pad_sequences([np.concatenate([[BOS_ID], tgt[i], [EOS_ID]]) for i in idx], dtype=np.int64)
        target_in, target_out = full[:, :-1], full[:, 1:]
        mask = length_mask(lengths - 1, target_out.shape[1])
        batches.append(PairBatch(target_in, target_out, mask, lengths, source, source_lengths))
    return batches


class Seq2SeqTask(ExampleTask):
    """Source → target token sequences; scored by the model's exact-match rate of decoded outputs."""

    name = "seq2seq"
    data_options = ("data", "unit", "batch_size", "val_fraction")
    model_kind = "seq2seq"
    tokens = True
    cli_defaults = {"cell": "lstm", "seq_length": 0, "batch_size": 64, "hidden_size": 128, "num_layers": 1,
                    "lr": 3e-3, "eval_every": 250, "epochs": 10, "val_fraction": 0.1, "unit": "chars"}

    def __init__(self, path=None, unit: str = "chars", batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0, vocabulary=None, target_vocabulary=None, synthetic_size: int = 20000):
        if unit not in UNITS:
            raise DataError(f"--unit must be 'words' or 'chars', got {unit!r}")
        self.path = str(path) if path else None
        self.unit, self.batch_size, self.val_fraction, self.seed = unit, batch_size, val_fraction, seed
        pairs = read_pairs(path) if path else reversal_pairs(synthetic_size, np.random.default_rng([seed, 7]))
        src_tok = [tokenize(s, unit) for s, _ in pairs]
        tgt_tok = [tokenize(t, unit) for _, t in pairs]
        self.train_idx, val_idx = split_indices(len(pairs), val_fraction, seed, str(path), "pairs")
        self.vocab = vocabulary or TokenVocabulary.build(src_tok[i] for i in self.train_idx)
        self.target_vocab = target_vocabulary or build_target_vocabulary(tgt_tok[i] for i in self.train_idx)
        self.src = [self.vocab.encode(s) for s in src_tok]
        self.tgt = [self.target_vocab.encode(t) for t in tgt_tok]
        self.val = self.make_batches(val_idx, 250)
        self.input_size, self.output_size = len(self.vocab), len(self.target_vocab)

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None) -> Seq2SeqTask:
        """The task for `rnnkit train seq2seq` from a `DataConfig` (and a checkpoint's vocabularies)."""
        return cls(options.data, unit=options.unit, batch_size=options.batch_size, val_fraction=options.val_fraction,
                   seed=seed, vocabulary=stored(meta, "tokens", TokenVocabulary),
                   target_vocabulary=stored(meta, "target_tokens", TokenVocabulary))

    def make_batches(self, order: np.ndarray, batch_size: int) -> list[PairBatch]:
        return make_pair_batches(self.src, self.tgt, order, batch_size)

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "unit": self.unit, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "seq_length": 0}

    def vocabularies(self) -> dict[str, list[str]]:
        return {"tokens": list(self.vocab.tokens), "target_tokens": list(self.target_vocab.tokens)}
