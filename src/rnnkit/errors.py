"""The errors rnnkit raises for bad input, one type per kind of mistake.

Every error a user can cause — a wrong shape or dtype, an unreadable file, a nonsensical option, a damaged
checkpoint, a backward without its forward — is an `RnnkitError` with a one-line message that names what was
expected and what was received. The command line prints such errors as ``rnnkit: error: ...`` and exits with
status 2; any other exception is a bug in rnnkit: an internal error, reported in one line that names the file its
traceback is written to (exit status 70).

The types also derive from the built-in exception a Python user would try first (``ValueError`` for a bad value,
``TypeError`` for a bad type), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class RnnkitError(Exception):
    """Base of every error caused by what the user asked for."""


class ShapeError(RnnkitError, ValueError):
    """An array of the wrong shape, rank, size or content (NaN, out-of-range indices)."""


class DTypeError(RnnkitError, TypeError):
    """An array of the wrong dtype, or something that is not an array."""


class ConfigError(RnnkitError, ValueError):
    """An option or combination of options that cannot be used (a layer argument, a flag, a config field)."""


class StateDictError(RnnkitError, KeyError):
    """A state dict whose names do not match the module's (missing or unexpected entries)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(RnnkitError, ValueError):
    """A data file or data setting that cannot be used."""


class CheckpointError(RnnkitError, ValueError):
    """A checkpoint that is missing, unreadable, damaged or incompatible with what was asked."""


class TrainingError(RnnkitError, RuntimeError):
    """Training cannot go on (for example a non-finite loss); the last good checkpoint is left intact."""


class TrainingInterrupted(TrainingError):
    """Training stopped by a signal (SIGINT, SIGTERM, SIGHUP) after finishing its update and writing a checkpoint;
    ``exit_status`` is the shell's 128 + the signal's number."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class DependencyError(RnnkitError, ImportError):
    """An optional package the call needs is not installed (the message says how to install it)."""


class UsageError(RnnkitError, RuntimeError):
    """An API call out of order: for example ``backward()`` with no matching ``forward()``."""
