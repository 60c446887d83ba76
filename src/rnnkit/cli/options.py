"""Command-line options generated from the config dataclasses, and the values a run resolves from them.

Every setting of ``rnnkit train`` is an `rnnkit.models.configs.option` field of one dataclass — `ModelConfig`
(and the classifier's, tagger's and seq2seq's own fields), `DataConfig` or `TrainConfig` — so its flag, its help,
its check when a run is resumed and its place in the config all come from that one field. A flag's value enters a
run only when it is given on the command line; otherwise the task's defaults (``cli_defaults``), the cell's
(`CELL_DEFAULTS`) and the dataclass's own apply, in that order.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, Field

import click
from click.core import ParameterSource

from .. import validate
from ..errors import ConfigError
from ..models.classifier import ClassifierConfig
from ..models.configs import flag, option_fields
from ..models.seq2seq import Seq2SeqConfig
from ..models.sequence import ModelConfig
from ..models.tagger import TaggerConfig
from ..tasks.registry import TASKS
from ..training.data import DataConfig
from ..training.trainer import TrainConfig

MODEL_CONFIGS = (ModelConfig, ClassifierConfig, TaggerConfig, Seq2SeqConfig)
SETTINGS = (*MODEL_CONFIGS, DataConfig, TrainConfig)  # the order of the options in --help


def option_table() -> dict[str, tuple[type, Field]]:
    """Field name → (the dataclass that defines its option, the field); the first definition of a name wins."""
    table: dict[str, tuple[type, Field]] = {}
    for cls in SETTINGS:
        for f in option_fields(cls):
            table.setdefault(f.name, (cls, f))
    return table


def field_type(cls, f: Field) -> type:
    """The field's type without ``| None``."""
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def default_of(f: Field):
    """The command line's default of an option field (its ``cli_default``, else the dataclass default)."""
    if f.metadata["cli_default"] is not MISSING:
        return f.metadata["cli_default"]
    return None if f.default is MISSING else f.default


def _default_text(name: str, f: Field) -> str:
    """``[default: 0.0]`` or ``[reber: 16; adding, copy: 64; ...]``: the dataclass's default and the tasks' own."""
    per_task: dict = {}
    for task_name, cls in TASKS.items():
        if name in cls.cli_defaults:
            per_task.setdefault(cls.cli_defaults[name], []).append(task_name)
    parts = []
    if sum(len(names) for names in per_task.values()) < len(TASKS) and default_of(f) is not None:
        parts.append(f"default: {default_of(f)}")
    parts += [f"{', '.join(names)}: {value}" for value, names in per_task.items()]
    return f" [{'; '.join(parts)}]" if parts else ""


class FiniteFloat(click.FloatRange):
    """A float flag (optionally ranged) that refuses ``nan`` and ``inf``: every float flag is of this type."""

    name = "float"

    def convert(self, value, param, ctx):
        if not math.isfinite(click.FLOAT.convert(value, param, ctx)):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return super().convert(value, param, ctx)

    def _describe_range(self) -> str:  # the help shows no range for an unbounded float
        return "" if self.min is None and self.max is None else super()._describe_range()


class Checked(click.ParamType):
    """A flag whose value is checked by the library's own check of its kind (`rnnkit.validate`), so a flag and the
    argument of the same name refuse the same values with the same words (``--seed -1``, ``-t nan``)."""

    def __init__(self, base: click.ParamType, check, metavar: str, **bounds):
        self.base, self.check, self.name, self.bounds = base, check, metavar, bounds

    def convert(self, value, param, ctx):
        converted = self.base.convert(value, param, ctx)
        name = max(param.opts, key=len) if param is not None else self.name
        try:
            return self.check(converted, name, **self.bounds)
        except ConfigError as e:
            self.fail(str(e).removeprefix(f"{name} "), param, ctx)


#: the value flags of every command, one type per kind of value
SEED = Checked(click.INT, validate.seed, "seed")
TEMPERATURE = Checked(click.FLOAT, validate.temperature, "temperature")
TOLERANCE = Checked(click.FLOAT, validate.tolerance, "tolerance")
BEAM_WIDTH = Checked(click.INT, validate.count, "width", high=validate.MAX_BEAM)
SCHEDULER = Checked(click.STRING, validate.scheduler_address, "tcp://HOST:PORT")
SAMPLE_LENGTH = Checked(click.INT, validate.count, "length", low=0, high=validate.MAX_SAMPLE_LENGTH)


def click_type(cls, f: Field):
    """The click type of a config field's flag: a path, a choice, a range from its limits, or its Python type."""
    meta, kind = f.metadata, field_type(cls, f)
    if meta["path"]:
        return click.Path(dir_okay=False)
    if meta["choices"] is not None:
        return click.Choice([str(c) for c in meta["choices"]])
    ranged = meta["low"] is not None or meta["high"] is not None
    if kind is int:
        return click.IntRange(meta["low"], meta["high"], min_open=meta["low_open"], max_open=meta["high_open"]) \
            if ranged else click.INT
    if kind is float:
        return FiniteFloat(meta["low"], meta["high"], min_open=meta["low_open"], max_open=meta["high_open"])
    return click.STRING


def click_option(cls, f: Field):
    """The click option of one field: ``--name`` (+ its other flags), typed and ranged as the field says."""
    meta = f.metadata
    help_text = meta["help"] + _default_text(f.name, f)
    if meta["cells"] is not None:
        help_text += f" (--cell {'/'.join(meta['cells'])} only)"
    if field_type(cls, f) is bool:
        names = [f"{flag(f.name)}/{meta['negative']}" if meta["negative"] else flag(f.name), *meta["flags"]]
        return click.option(*names, f.name, is_flag=True, default=None, help=help_text)
    return click.option(flag(f.name), *meta["flags"], f.name, type=click_type(cls, f), default=None,
                        help=help_text)


def with_options(command):
    """Decorate ``command`` with one option per setting field, in `SETTINGS` order."""
    for cls, f in reversed(list(option_table().values())):
        command = click_option(cls, f)(command)
    return command


def given(ctx: click.Context, values: dict) -> dict:
    """The settings given on the command line (not defaulted), by field name."""
    table = option_table()
    return {name: value for name, value in values.items() if name in table
            and ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
