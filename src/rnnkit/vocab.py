"""Token vocabularies for word- or character-level tasks, with padding (id 0) and unknown (id 1) entries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"


class TokenVocabulary:
    """Tokens ↔ ids. Id 0 is padding, id 1 stands for tokens not seen in training."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> TokenVocabulary:
        """Tokens seen at least ``min_count`` times, most frequent first (ties in first-seen order)."""
        counts = Counter(tok for seq in sequences for tok in seq)
        return cls(tok for tok, n in counts.most_common() if n >= min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        return np.array([self.index.get(t, 1) for t in tokens], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]


class LabelSet:
    """Class or tag names ↔ ids (no padding entry), in first-seen order unless given."""

    def __init__(self, labels: Iterable[str]):
        self.labels = list(dict.fromkeys(labels))
        self.index = {label: i for i, label in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, labels: Iterable[str], where: str = "data") -> np.ndarray:
        try:
            return np.array([self.index[label] for label in labels], dtype=np.int64)
        except KeyError as e:
            from .tasks import DataError

            raise DataError(f"{where}: label {e.args[0]!r} was not seen in training (known: "
                            f"{', '.join(self.labels[:10])})") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.labels[i] for i in ids]
