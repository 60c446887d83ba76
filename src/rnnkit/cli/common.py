"""What the commands share: one-line errors, loading a checkpoint of the right kind, refusing to overwrite."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..training.checkpoint import load_model


def fail(message: str) -> None:
    """Stop the command with ``rnnkit: error: <message>`` and exit status 2."""
    raise ConfigError(message)


def load_kind(path: str, kind: str | None = None):
    """(meta, model) of the checkpoint at ``path``; with ``kind``, a one-line error when it holds another kind."""
    return load_model(path, kind)


def load_char_model(path: str):
    """(meta, model, vocabulary) of a character language model (a `SequenceModel` with a character vocabulary)."""
    from ..tasks.vocab import CharVocabulary

    meta, model = load_kind(path, "sequence")
    if not meta.get("vocab"):
        fail(f"{path!r} is not a character model (task {meta['task'].get('task')!r})")
    return meta, model, CharVocabulary(meta["vocab"])


def refuse_existing(path, flag: str) -> None:
    """One-line error if ``path`` exists: commands never overwrite a file."""
    if path and Path(path).exists():
        fail(f"{flag} {str(path)!r} already exists; choose another name (nothing is overwritten)")
