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
import math
import numbers
import types
import typing
from dataclasses import asdict, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..module import MAX_COUNT, MAX_SIZE, check_bool, check_int

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


def fields_of(cls, values: dict) -> dict:
    """The entries of ``values`` that are fields of the dataclass ``cls`` (the one place this filter is written)."""
    names = field_names(cls)
    return {k: v for k, v in values.items() if k in names}


def flag(name: str) -> str:
    """The command-line spelling of a field name: ``hidden_size`` → ``--hidden-size``."""
    return "--" + name.replace("_", "-")


def check_range(config, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """`ConfigError` unless ``config.<name>`` lies in the range (open or closed at each end)."""
    value = getattr(config, name)
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and value == value  # not NaN
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in {left}{'-inf' if low is None else low}, "
                          f"{'inf' if high is None else high}{right}, got {value!r}")


def check_option_ranges(config, skip_defaults: bool = False) -> None:
    """Check every `option` field of ``config`` against its declared choices and range; a float must be finite.
    ``skip_defaults``: a field at its dataclass default (such as 0 for "the task's own") is not range-checked."""
    hints = typing.get_type_hints(type(config))
    for f in option_fields(type(config)):
        meta, value = f.metadata, getattr(config, f.name)
        if isinstance(f.default, bool):  # a switch: 'yes', 1 or None would pass as truthy or falsy
            check_bool(f.name, value)
        if value is None and type(None) not in _allowed_types(hints[f.name]):  # None is not "off" or "default"
            raise ConfigError(f"{f.name} must be {getattr(hints[f.name], '__name__', hints[f.name])}, got None")
        if value is None or (skip_defaults and value == f.default and type(value) is type(f.default)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta["low"] is not None or meta["high"] is not None:
            check_range(config, f.name, meta["low"], meta["high"], meta["low_open"], meta["high_open"])


#: the fields that count repetitions (at most `rnnkit.module.MAX_COUNT`; any other size: `rnnkit.module.MAX_SIZE`)
REPETITIONS = ("num_layers", "depth", "rounds")


def largest(name: str) -> int:
    """The largest value a size or count field ``name`` may have (the layers' own limits, `rnnkit.module`)."""
    return MAX_COUNT if name in REPETITIONS else MAX_SIZE


def check_sizes(config, *names: str, low: int = 1) -> None:
    """A one-line `ConfigError` naming the field unless each field ``names`` of ``config`` is an integer in [low,
    `largest`]. A model checks its own sizes so that the error names the field the user wrote (``vocab_size``),
    not the argument of a layer inside it (``num_embeddings``)."""
    for name in names:
        check_int(name, getattr(config, name), low, largest(name))


def check_always_bidirectional(config) -> None:
    """`ConfigError` unless ``config.bidirectional`` is True (a model whose encoder always reads both ways)."""
    if config.bidirectional is not True:
        raise ConfigError(f"a {config.kind} model's encoder is always bidirectional, got bidirectional="
                          f"{config.bidirectional!r}")


def _allowed_types(hint) -> tuple:
    """The JSON value types a field's type hint allows (``float`` allows an int; ``X | None`` allows None)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _allowed_types(arg))
    if hint is type(None):
        return (type(None),)
    if hint is float:
        return (float, int)
    origin = typing.get_origin(hint) or hint
    return (list, tuple) if origin in (list, tuple) else (origin,) if isinstance(origin, type) else (object,)


def check_value(cls, name: str, value, hint) -> None:
    """`CheckpointError` unless ``value`` (from JSON) has the field's type: a finite float, a non-negative int
    within `largest`, a bool only where a bool is expected."""
    allowed = _allowed_types(hint)
    where = f"checkpoint {cls.__name__}.{name}"
    wrong_bool = isinstance(value, bool) and bool not in allowed
    if wrong_bool or not isinstance(value, allowed):
        expected = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in allowed}))
        raise CheckpointError(f"{where} must be {expected}, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{where} must be a finite number, got {value}")
    if type(value) is int and float not in allowed:  # a count or a size
        most = largest(name)
        if not 0 <= value <= most:
            raise CheckpointError(f"{where} must be in [0, {most}], got {str(value)[:40]}")
    if isinstance(value, (list, tuple)) and not all(isinstance(v, str) for v in value):
        raise CheckpointError(f"{where} must be a list of strings")


class JSONConfig:
    """Mixin for dataclass configs: ``to_dict()`` for meta.json, ``from_dict()`` that validates a stored one.

    On every model config ``kind`` is a class attribute (the model kind of `rnnkit.models.registry`, stored once as
    ``meta["kind"]``, not among the fields) and ``bidirectional`` a field (always True where the model's encoder
    reads both ways)."""

    kind: ClassVar[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The config a checkpoint describes, or a one-line `CheckpointError` naming the first thing wrong with the
        description: not an object, unknown or missing keys, a value of the wrong type, a non-finite float, a size
        out of range, or a setting the config refuses — all checked before anything is allocated."""
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {cls.__name__} must be a JSON object, got {type(data).__name__}")
        data = without_stored_kind(cls, data)
        unknown = sorted(set(data) - field_names(cls))
        if unknown:
            raise CheckpointError(f"unknown {cls.__name__} keys {unknown} (a checkpoint from another rnnkit version?)")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name in data:
                check_value(cls, f.name, data[f.name], hints[f.name])
            elif f.default is MISSING and f.default_factory is MISSING:
                raise CheckpointError(f"checkpoint {cls.__name__} lacks {f.name!r}")
        try:
            config = cls(**data)
            check_option_ranges(config, skip_defaults=True)
        except ConfigError as e:
            raise CheckpointError(f"checkpoint {cls.__name__}: {e}") from None
        return config


def without_stored_kind(cls, data: dict) -> dict:
    """``data`` without a ``kind`` entry: older checkpoints stored their model kind among a config's fields too
    (every kind but "sequence"); it must be ``cls.kind`` (a `CheckpointError` otherwise)."""
    if "kind" not in data:
        return data
    if data["kind"] != getattr(cls, "kind", None):
        raise CheckpointError(f"checkpoint {cls.__name__}.kind must be {getattr(cls, 'kind', None)!r}, got "
                              f"{data['kind']!r:.60}")
    return {name: value for name, value in data.items() if name != "kind"}
