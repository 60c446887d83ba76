"""Vocabularies: characters of a language model, tokens of word-level tasks (with padding and unknown), labels.

* `CharVocabulary` — the characters of a corpus, sorted (as char-rnn does); no padding, no unknown: a character
  outside it is an error;
* `TokenVocabulary` — tokens ↔ ids with id 0 = ``<pad>`` and id 1 = ``<unk>`` (tokens not seen in training);
* `LabelSet` — class or tag names ↔ ids, no padding entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..errors import DataError

PAD, UNK = "<pad>", "<unk>"


class CharVocabulary:
    """Characters ↔ integer ids (sorted characters, as char-rnn does)."""

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocabulary:
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


class TokenVocabulary:
    """Tokens ↔ ids. Id 0 is padding, id 1 stands for tokens not seen in training."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_count: int = 1,
              reserved: tuple[str, ...] = ()) -> TokenVocabulary:
        """Tokens seen at least ``min_count`` times, most frequent first (ties in first-seen order). A token
        spelled like a special one (<pad>, <unk>, or ``reserved``) is a `DataError`: it would silently become
        padding, the unknown token or an end of sequence."""
        counts = Counter(tok for seq in sequences for tok in seq)
        clash = sorted(set(counts) & {PAD, UNK, *reserved})
        if clash:
            raise DataError(f"the data contains {', '.join(map(repr, clash))}, which rnnkit reserves for its special "
                            f"tokens ({', '.join((PAD, UNK, *reserved))}); rename them in the data")
        return cls(tok for tok, n in counts.most_common() if n >= min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of ``tokens``; a token not in the vocabulary, or spelled like padding, is <unk> (1)."""
        return np.array([self.index.get(t, 1) if t != PAD else 1 for t in tokens], dtype=np.int64)

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
            raise DataError(f"{where}: label {e.args[0]!r} was not seen in training (known: "
                            f"{', '.join(self.labels[:10])})") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.labels[i] for i in ids]


def stored(meta: dict | None, key: str, cls):
    """The vocabulary a checkpoint's ``meta[key]`` holds, as ``cls``, or None."""
    if meta and meta.get(key) is not None:
        return cls(meta[key])  # a TokenVocabulary list starts with <pad>, <unk>, which it re-adds itself
    return None
