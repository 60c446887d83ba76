"""Sequence classification data: one ``label<TAB>text`` per line of a UTF-8 file; the text is split into
whitespace words (lower-cased) or characters. Each batch: x (B, T) token ids, target (B,) class ids, lengths (B,).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..sequences import pad_sequences
from .base import Batch
from .formats import FORMATS, tab_fields
from .splits import ExampleTask, chunks, length_mask, split_indices
from .text import read_text
from .vocab import LabelSet, TokenVocabulary, stored

UNITS = ("words", "chars")


def tokenize(text: str, unit: str) -> list[str]:
    """Characters of ``text`` (``unit="chars"``) or its lower-cased whitespace words."""
    return list(text) if unit == "chars" else text.lower().split()


def read_labelled_lines(path) -> tuple[list[str], list[str]]:
    """(labels, texts) from ``label<TAB>text`` lines (`rnnkit.tasks.formats`); blank lines are skipped."""
    fields = tab_fields(path, read_text(path).splitlines(), "labelled")
    if len(fields) < 2:
        raise DataError(f"{path}: needs at least 2 labelled lines, got {len(fields)}")
    return [label.strip() for _, label, _ in fields], [text for _, _, text in fields]


class ClassificationTask(ExampleTask):
    """Labelled texts → class ids; scored by the classifier's accuracy and confusion matrix."""

    name = "classify"
    data_options = ("data", "unit", "batch_size", "val_fraction")
    model_kind = "classifier"
    tokens = True
    cli_defaults = {"cell": "lstm", "seq_length": 0, "batch_size": 32, "hidden_size": 64, "num_layers": 1,
                    "lr": 3e-3, "eval_every": 100, "epochs": 10, "val_fraction": 0.1, "unit": "words"}

    def __init__(self, path, unit: str = "words", batch_size: int = 32, val_fraction: float = 0.1, seed: int = 0,
                 vocabulary: TokenVocabulary | None = None, labels: LabelSet | None = None):
        if unit not in UNITS:
            raise DataError(f"--unit must be 'words' or 'chars', got {unit!r}")
        self.path, self.unit, self.batch_size, self.val_fraction, self.seed = str(path), unit, batch_size, \
            val_fraction, seed
        names, texts = read_labelled_lines(path)
        tokens = [tokenize(t, unit) or ["<empty>"] for t in texts]
        self.train_idx, val_idx = split_indices(len(texts), val_fraction, seed, self.path, "lines")
        self.vocab = vocabulary or TokenVocabulary.build(tokens[i] for i in self.train_idx)
        self.labels = labels or LabelSet(sorted(set(names)))
        self.seqs = [self.vocab.encode(t) for t in tokens]
        self.targets = self.labels.encode(names, where=self.path)
        self.val = self.make_batches(val_idx, 256)
        self.input_size, self.output_size = len(self.vocab), len(self.labels)

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None) -> ClassificationTask:
        """The task for `rnnkit train classify` from a `DataConfig` (and a checkpoint's vocabularies)."""
        if not options.data:
            raise DataError(f"task 'classify' needs --data FILE ({FORMATS['labelled']})")
        return cls(options.data, unit=options.unit, batch_size=options.batch_size, val_fraction=options.val_fraction,
                   seed=seed, vocabulary=stored(meta, "tokens", TokenVocabulary),
                   labels=stored(meta, "labels", LabelSet))

    def make_batches(self, order: np.ndarray, batch_size: int) -> list[Batch]:
        batches = []
        for idx in chunks(order, batch_size):
            x, lengths = pad_sequences([self.seqs[i] for i in idx], padding_value=0, dtype=np.int64)
            batches.append(Batch(x, self.targets[idx], length_mask(lengths, x.shape[1]), lengths))
        return batches

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "unit": self.unit, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "seq_length": 0}

    def vocabularies(self) -> dict[str, list[str]]:
        return {"tokens": list(self.vocab.tokens), "labels": list(self.labels.labels)}
