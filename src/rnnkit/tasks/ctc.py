"""Unaligned transcription for CTC: synthetic "frame" sequences and `FrameTranscriptionTask` (``rnnkit train ctc``).

A sequence is a random string of n ∈ [min_symbols, max_symbols] symbols from an alphabet of K (labels 1..K; 0 is
the CTC blank). Each symbol spans a random number of frames in [min_frames, max_frames]; silence frames come
before, between (0 to max_silence, at least one between two equal neighbours, so that "aa" is not "a") and after
the symbols. A frame is its symbol's prototype — a fixed random N(0, I) vector of ``features`` numbers per
symbol, the zero vector for silence — plus N(0, noise² I). No alignment is given: the target is the symbol string.

A `CTCBatch` holds x (B, T, F) frames, lengths (B,) frames per sequence, mask (B, T) of the valid frames, target
(B, S) the labels padded with 0, and target_lengths (B,). The score is the label error rate: the edit distance
between decoded and true strings, summed over sequences, divided by the number of true labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..sequences import pad_sequences
from .base import Batch, GeneratedTask
from .memory import refuse_data
from .splits import length_mask

SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
GENERATOR_SETTINGS = ("min_symbols", "max_symbols", "min_frames", "max_frames", "max_silence", "noise")


@dataclass
class CTCBatch(Batch):
    """A `Batch` of frame sequences and their unaligned label strings."""

    target_lengths: np.ndarray | None = None  # (B,) labels per sequence


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (insertions, deletions and substitutions cost 1)."""
    a, b = list(a), list(b)
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def label_errors(decoded, batch: CTCBatch) -> tuple[int, int, int]:
    """(edit distance summed over the batch, true labels, sequences decoded exactly) of decoded label arrays."""
    errors = labels = exact = 0
    for row, hypothesis in enumerate(decoded):
        truth = batch.target[row, :batch.target_lengths[row]]
        distance = edit_distance(hypothesis.tolist(), truth.tolist())
        errors, labels, exact = errors + distance, labels + len(truth), exact + (distance == 0)
    return errors, labels, exact


@dataclass
class FrameGenerator:
    """How sequences are drawn (see the module's docstring); ``prototypes`` (K + 1, F), row 0 the silence."""

    prototypes: np.ndarray
    min_symbols: int = 2
    max_symbols: int = 8
    min_frames: int = 2
    max_frames: int = 5
    max_silence: int = 2
    noise: float = 0.9

    def sequence(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(frames (T, F), labels (n,)) of one random sequence."""
        symbols = len(self.prototypes) - 1
        labels = rng.integers(1, symbols + 1, int(rng.integers(self.min_symbols, self.max_symbols + 1)))
        pieces, spans = [0], [int(rng.integers(0, self.max_silence + 1))]  # leading silence
        for i, label in enumerate(labels):
            if i > 0:
                repeat = label == labels[i - 1]
                pieces.append(0)
                spans.append(int(rng.integers(1 if repeat else 0, self.max_silence + 1)))
            pieces.append(int(label))
            spans.append(int(rng.integers(self.min_frames, self.max_frames + 1)))
        pieces.append(0)
        spans.append(int(rng.integers(0, self.max_silence + 1)))
        ids = np.repeat(pieces, spans)
        frames = self.prototypes[ids] + self.noise * rng.standard_normal((len(ids), self.prototypes.shape[1]))
        return frames, labels.astype(np.int64)

    def batch(self, rng: np.random.Generator, n: int, dtype) -> CTCBatch:
        drawn = [self.sequence(rng) for _ in range(n)]
        x, lengths = pad_sequences([f for f, _ in drawn], dtype=dtype)
        target, target_lengths = pad_sequences([labels for _, labels in drawn], dtype=np.int64)
        return CTCBatch(x, target, length_mask(lengths, x.shape[1]), lengths, target_lengths)


def check_generator_settings(settings: dict) -> None:
    """The `FrameGenerator` settings given (the others at their defaults) describe sequences that can be drawn: a
    `DataError` naming the rule otherwise."""
    g = {name: settings.get(name, FrameGenerator.__dataclass_fields__[name].default) for name in GENERATOR_SETTINGS}
    if not 0 <= g["noise"] < math.inf:
        raise DataError(f"task 'ctc' needs a finite noise >= 0, got {g['noise']}")
    if not (1 <= g["min_symbols"] <= g["max_symbols"] and 1 <= g["min_frames"] <= g["max_frames"]
            and g["max_silence"] >= 1):
        raise DataError(f"task 'ctc' needs 1 <= min_symbols <= max_symbols, 1 <= min_frames <= max_frames and "
                        f"max_silence >= 1, got {g['min_symbols']}, {g['max_symbols']}, {g['min_frames']}, "
                        f"{g['max_frames']}, {g['max_silence']}")


def longest_sequence(settings: dict) -> int:
    """The most frames one sequence can have: every symbol at ``max_frames`` and the most silence around each."""
    g = {name: settings.get(name, FrameGenerator.__dataclass_fields__[name].default) for name in GENERATOR_SETTINGS}
    return g["max_symbols"] * g["max_frames"] + (g["max_symbols"] + 1) * g["max_silence"]


def stored_settings(config: dict) -> dict:
    """The task's settings in a stored `FrameTranscriptionTask.config`; `DataError` for one of the wrong type."""
    settings = {k: config[k] for k in ("batch_size", "seed", "num_symbols", "features", *GENERATOR_SETTINGS)
                if k in config}
    for name, value in settings.items():
        kinds = (int, float) if name == "noise" else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise DataError(f"task 'ctc' setting {name} must be {'a number' if name == 'noise' else 'an integer'}, "
                            f"got {value!r:.40}")
    return settings


class FrameTranscriptionTask(GeneratedTask):
    """Noisy frames of symbol strings → the strings, without alignments; scored by the label error rate of the
    model's greedy decoding (`rnnkit.models.transcriber.Transcriber`). On the command line only ``--batch-size``
    and ``--seed`` choose the data; from Python, ``num_symbols``, ``features`` and the `FrameGenerator` settings
    (``min_symbols`` … ``noise``) too. Validation: ``val_size`` sequences drawn apart from the training ones."""

    name = "ctc"
    model_kind = "transcriber"
    data_options = ("batch_size",)  # the only data flag: the task generates its own data
    cli_defaults = {"cell": "lstm", "seq_length": 0, "batch_size": 32, "hidden_size": 64, "num_layers": 1,
                    "lr": 5e-3, "eval_every": 100, "epochs": 8}

    def __init__(self, batch_size: int = 32, seed: int = 0, num_symbols: int = 10, features: int = 10,
                 batches_per_epoch: int = 100, val_size: int = 512, dtype=np.float32, **generator):
        if not 1 <= num_symbols <= len(SYMBOLS):
            raise DataError(f"task 'ctc' needs num_symbols in [1, {len(SYMBOLS)}], got {num_symbols}")
        if features < 1:
            raise DataError(f"task 'ctc' needs features >= 1, got {features}")
        self.batch_size, self.seed, self.batches_per_epoch = batch_size, seed, batches_per_epoch
        self.num_symbols, self.features, self.dtype = num_symbols, features, np.dtype(dtype)
        prototypes = np.random.default_rng([seed, 5]).standard_normal((num_symbols + 1, features))
        prototypes[0] = 0.0  # silence
        self.generator = FrameGenerator(prototypes, **generator)
        self.check_generator()
        self.symbols = list(SYMBOLS[:num_symbols])
        self.input_size, self.output_size = features, num_symbols + 1  # + the blank, class 0
        rng = np.random.default_rng([seed, 10**6])
        self.val = [self._make(rng, min(128, val_size - start)) for start in range(0, val_size, 128)]

    def check_generator(self) -> None:
        check_generator_settings({name: getattr(self.generator, name) for name in GENERATOR_SETTINGS})

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None) -> FrameTranscriptionTask:
        """The task for `rnnkit train ctc` from a `DataConfig` (it generates its own data); resumed or started
        ``--init-from`` a ctc checkpoint, with that checkpoint's symbols, features and generator."""
        refuse_data(options, cls.name)
        stored = meta.get("task", {}) if isinstance(meta, dict) else {}
        kept = stored_settings(stored) if isinstance(stored, dict) and stored.get("task") == cls.name else {}
        kept.update(batch_size=options.batch_size, seed=seed)
        return cls(dtype=np.dtype(dtype), **kept)

    @classmethod
    def from_config(cls, config: dict, val_size: int = 0, dtype=np.float32) -> FrameTranscriptionTask:
        """The task a checkpoint describes (its ``meta["task"]``, written by `config`): the same symbols,
        prototypes and generator."""
        return cls(val_size=val_size, dtype=dtype, **stored_settings(config))

    def _make(self, rng: np.random.Generator, n: int) -> CTCBatch:
        return self.generator.batch(rng, n, self.dtype)

    def config(self) -> dict:
        g = self.generator
        return {"task": self.name, "batch_size": self.batch_size, "seed": self.seed, "seq_length": 0,
                "num_symbols": self.num_symbols, "features": self.features,
                **{name: getattr(g, name) for name in GENERATOR_SETTINGS}}

    def vocabularies(self) -> dict[str, list[str]]:
        return {"symbols": ["<blank>", *self.symbols]}
