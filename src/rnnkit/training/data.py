"""`DataConfig`: the data settings of a run — where a task's data comes from and how it is batched.

One field per ``rnnkit train`` option (see `rnnkit.models.configs.option`); each task reads the fields it uses in
its ``from_options`` and ignores the rest.

A checkpoint records which files it was trained on: `data_identity` gives each data file's absolute path and
SHA-256 (stored beside the task's settings), and `check_same_data` refuses a resumed run whose files differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .. import validate
from ..errors import DataError
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
    val_fraction: float = option(0.05, f"Share of the data for validation, in (0, {validate.MAX_VAL_FRACTION:g}).")
    unit: str = option("words", "classify/seq2seq: split text into words or characters.", choices=UNITS)
    char_features: bool = option(True, "tagging: add a character BiLSTM per word.", negative="--no-char-features")

    def __post_init__(self):
        validate.val_fraction(self.val_fraction, "--val-fraction")


DATA_FILES = ("data", "val_data")  # the settings that name data files


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_identity(settings: dict) -> dict:
    """``{"data_path": <absolute path>, "data_sha256": <hash>}`` (and ``val_data_*``) of each data file named in
    ``settings`` that exists (a bundled corpus name such as 'shakespeare' is not a file and has none)."""
    identity = {}
    for key in DATA_FILES:
        value = settings.get(key)
        if isinstance(value, str) and Path(value).is_file():
            identity[f"{key}_path"] = str(Path(value).resolve())
            identity[f"{key}_sha256"] = file_sha256(value)
    return identity


def stored_data_paths(stored: dict) -> dict:
    """The absolute data paths a checkpoint's task description records, by setting name (``data``...)."""
    return {key: stored[f"{key}_path"] for key in DATA_FILES if isinstance(stored.get(f"{key}_path"), str)}


def check_same_data(stored: dict, settings: dict) -> None:
    """`DataError` unless every data file the checkpoint recorded (absolute path and SHA-256 in ``stored``, its
    task description) is the file ``settings`` names, with the same content."""
    for key in DATA_FILES:
        path, sha = stored.get(f"{key}_path"), stored.get(f"{key}_sha256")
        if not isinstance(path, str) or not isinstance(sha, str):
            continue
        given = settings.get(key)
        flag = "--" + key.replace("_", "-")
        if not isinstance(given, str) or Path(given).resolve() != Path(path):
            raise DataError(f"--resume: the checkpoint was trained on {flag} {path!r}, got {given!r} (pass "
                            "--allow-other-data to continue on another file)")
        if not Path(given).is_file():
            raise DataError(f"--resume: the checkpoint's {flag} file {path!r} is missing (pass --allow-other-data "
                            "with another --data to continue on another file)")
        if file_sha256(given) != sha:
            raise DataError(f"--resume: {flag} {path!r} has changed since the checkpoint (SHA-256 {sha[:12]}..., "
                            f"now {file_sha256(given)[:12]}...); pass --allow-other-data to continue on it")
