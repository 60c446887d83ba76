"""`DataConfig`: the data settings of a run — where a task's data comes from and how it is batched.

One field per ``rnnkit train`` option (see `rnnkit.models.configs.option`); each task reads the fields it uses in
its ``from_options`` and ignores the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..models.configs import JSONConfig, option
from ..tasks.classify import UNITS


@dataclass
class DataConfig(JSONConfig):
    """Where a task's data comes from and how it is cut into batches."""

    data: str | None = option(None, "Data file: UTF-8 text (text; 'shakespeare' is a bundled corpus), "
                              "label<TAB>text lines (classify), CoNLL columns (tagging), source<TAB>target lines "
                              "(seq2seq).", path=True)
    val_data: str | None = option(None, "tagging: a separate CoNLL validation file.", path=True)
    seq_length: int = option(0, "Sequence / BPTT chunk length (memory tasks: the delay T).", low=2)
    batch_size: int = option(32, "Sequences per batch.", low=1)
    val_fraction: float = option(0.05, "Share of the data for validation, in (0, 0.5).")
    unit: str = option("words", "classify/seq2seq: split text into words or characters.", choices=UNITS)
    char_features: bool = option(True, "tagging: add a character BiLSTM per word.", negative="--no-char-features")

    def __post_init__(self):
        if not 0 < self.val_fraction < 0.5:
            raise ConfigError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}")
