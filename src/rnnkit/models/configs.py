"""Configs defined once: `JSONConfig` (to/from the dicts stored in checkpoints) and `option` (a dataclass field
that is also a command-line option).

A field made with ``option(...)`` carries, in its metadata, everything the command line needs: the help text,
extra flag names (``--rnn-size`` beside ``--hidden-size``), the name of the negative form of a boolean
(``--reset-before``), allowed choices or a numeric range, and for per-cell model settings the cells it belongs
to. `rnnkit.cli.options` turns these fields into click options, and the resume check and the construction of the
config read the same fields, so adding a setting is adding one field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, fields
from typing import Any

from ..errors import CheckpointError, ConfigError

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", *, flags: tuple[str, ...] = (), negative: str | None = None,
           choices: tuple | None = None, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, cells: tuple[str, ...] | None = None,
           resume: bool = True, path: bool = False, cli_default: Any = MISSING):
    """A dataclass field that is also a command-line option ``--<name-with-dashes>``.

    ``flags``: more names for it (``("--rnn-size",)``); ``negative``: the off-form of a boolean
    (``"--reset-before"``); ``choices``; ``low``/``high`` (with ``low_open``/``high_open``): a numeric range;
    ``cells``: the recurrent cells the setting belongs to (None: every cell); ``resume=False``: a setting a resumed
    run takes from the command line, not from its checkpoint (progress bars, threads); ``path``: a file name;
    ``cli_default``: the command line's default where it differs from the library's (an LSTM's forget bias).
    """
    metadata = {"cli": True, "help": help, "flags": flags, "negative": negative, "choices": choices, "low": low,
                "high": high, "low_open": low_open, "high_open": high_open, "cells": cells, "resume": resume,
                "path": path, "cli_default": cli_default}
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are command-line options."""
    return [f for f in fields(cls) if f.metadata.get("cli")]


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def flag(name: str) -> str:
    """The command-line spelling of a field name: ``hidden_size`` → ``--hidden-size``."""
    return "--" + name.replace("_", "-")


def check_range(config, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """`ConfigError` unless ``config.<name>`` lies in the range (open or closed at each end)."""
    value = getattr(config, name)
    ok = value == value  # not NaN
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in {left}{'-inf' if low is None else low}, "
                          f"{'inf' if high is None else high}{right}, got {value}")


def check_option_ranges(config) -> None:
    """Check every `option` field of ``config`` against its declared choices and range."""
    for f in option_fields(type(config)):
        meta, value = f.metadata, getattr(config, f.name)
        if value is None:
            continue
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta["low"] is not None or meta["high"] is not None:
            check_range(config, f.name, meta["low"], meta["high"], meta["low_open"], meta["high_open"])


class JSONConfig:
    """Mixin for dataclass configs: ``to_dict()`` for meta.json, ``from_dict()`` that names unknown keys."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        unknown = sorted(set(data) - field_names(cls))
        if unknown:
            raise CheckpointError(f"unknown {cls.__name__} keys {unknown} (a checkpoint from another rnnkit version?)")
        return cls(**data)
