"""``rnnkit train``: resolve a run's settings, build its task and model, train, report.

A run's settings come from, in order of precedence: the flags given on the command line; when resuming, the
checkpoint (a model or data flag that differs from it is an error; training flags given anew win); the task's
defaults; the cell's defaults; the dataclass defaults (see `rnnkit.cli.options`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from ..define.files import with_cell_file
from ..errors import ConfigError
from ..models.configs import field_names, fields_of, flag
from ..models.registry import (
    build_model,
    check_description,
    check_training_fits,
    kind_of,
    model_classes,
    model_from_meta,
)
from ..models.sequence import CELL_DEFAULTS, ModelConfig
from ..tasks.registry import DEFAULT_TASK, TASKS, make_task
from ..training import checkpoint
from ..training.data import DATA_FILES, DataConfig, check_same_data, stored_data_paths
from ..training.files import LOCK_NAME, hold_run_directory, make_directory
from ..training.trainer import TrainConfig, Trainer
from .common import fail
from .options import MODEL_CONFIGS, given, option_table, with_options


@dataclass
class Run:
    """A run's directory and the checkpoints it starts from: ``saved`` (resumed) or ``base`` (--init-from)."""

    task: str
    out: Path
    saved: tuple | None = None
    base: tuple | None = None
    allow_other_data: bool = False
    reset_optimizer: bool = False

    @property
    def meta(self) -> dict | None:
        """The meta of the checkpoint whose vocabularies the task must reuse."""
        source = self.saved or self.base
        return source[0] if source else None


@click.command()
@click.argument("task", type=click.Choice(list(TASKS)), default=DEFAULT_TASK, metavar="[TASK]")
@with_options
@click.option("--out", "out", type=click.Path(file_okay=False), help="Run directory [runs/<task>-<time>].")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out exactly where it stopped.")
@click.option("--init-from", type=click.Path(), help="Start from the weights (and config) of a checkpoint.")
@click.option("--allow-other-data", is_flag=True, help="With --resume: continue on a --data file other than the "
              "checkpoint's, or one whose content has changed (refused otherwise).")
@click.option("--reset-optimizer", is_flag=True, help="With --resume: continue with a fresh optimizer state (refused "
              "otherwise when the checkpoint has none).")
@click.pass_context
def train(ctx, task, out, resume, init_from, allow_other_data, reset_optimizer, **values):
    """Train a model on TASK: 'reber' (the embedded Reber grammar, default), 'adding' / 'adding1997' / 'copy'
    (memory benchmarks), 'text' (a character language model), 'classify' (label<TAB>text lines), 'tagging'
    (CoNLL columns), 'seq2seq' (source<TAB>target lines; without --data, the built-in digit reversal) or 'ctc'
    (unaligned transcription of generated noisy frames with the CTC loss)."""
    check_run_flags(resume, init_from, out, reset_optimizer)
    with claimed_run_directory(run_directory(task, out)) as run_dir:
        run = open_run(task, run_dir, resume, init_from, reset_optimizer)
        if resume and ctx.get_parameter_source("task") is not ParameterSource.DEFAULT and task != run.task:
            fail(f"--resume: {str(run_dir)!r} holds a {run.task!r} run, not {task!r} (omit TASK to continue it)")
        run.allow_other_data, run.reset_optimizer = allow_other_data, reset_optimizer
        train_run(run, given(ctx, values))


def train_run(run: Run, explicit: dict) -> None:
    """Build the task, the model and the trainer of ``run``; train; report."""
    trainer = build_trainer(run, explicit)
    the_task, model = trainer.task, trainer.model
    if run.saved:
        trainer.restore(*run.saved, reset_optimizer=run.reset_optimizer)
    click.echo(f"rnnkit: training {type(model).__name__}/{model.config.cell.upper()} ({model.num_parameters():,} "
               f"parameters) on '{run.task}' → {run.out}", err=True)
    before = trainer.updates
    trainer.fit()
    if run.saved and trainer.updates == before and trainer.finished():
        click.echo(f"rnnkit: nothing to do: the run in {run.out} had already finished (its epochs, --max-steps or "
                   "its task's success); it is left as it was", err=True)
    report(trainer, the_task, run.out)


def build_trainer(run: Run, explicit: dict) -> Trainer:
    """The `Trainer` of ``run`` with its task and model, from the settings ``explicit`` gives (by field name) and
    the defaults (`resolve`); `rnnkit search` builds each trial with it."""
    settings = resolve(run, explicit)
    data = DataConfig(**fields_of(DataConfig, settings))
    train_config = TrainConfig(**fields_of(TrainConfig, settings))
    the_task = make_task(run.task, data, seed=train_config.seed, dtype=settings.get("dtype", "float32"),
                         meta=run.meta)
    model = make_model(run, the_task, settings, train_config.seed)
    return Trainer(model, the_task, train_config, run.out)


def check_run_flags(resume: bool, init_from: str | None, out: str | None, reset_optimizer: bool) -> None:
    """One-line error for a combination of --resume, --init-from, --out and --reset-optimizer that cannot be."""
    if resume and init_from:
        fail("--resume and --init-from cannot be combined (resume continues --out; init-from starts a new run)")
    if resume and not out:
        fail("--resume needs --out, the run directory to continue")
    if reset_optimizer and not resume:
        fail("--reset-optimizer applies to --resume (a new run starts with a fresh optimizer anyway)")


def run_directory(task: str, out: str | None) -> Path:
    """--out, or ``runs/<task>-<time>``; a one-line error if it exists and is not a directory."""
    run_dir = Path(out) if out else Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and not run_dir.is_dir():
        fail(f"--out {str(run_dir)!r} exists and is not a directory")
    return run_dir


@contextmanager
def claimed_run_directory(run_dir: Path):
    """Create ``run_dir`` if needed and hold its lock for the block — before anything in it is checked or written,
    so a second process on it is refused ("in use by process N") and cannot replace what this one finds. A
    directory made here that holds nothing but the lock when the block fails is removed again."""
    created = not run_dir.exists()
    make_directory(run_dir)
    try:
        with hold_run_directory(run_dir):
            yield run_dir
    except BaseException:
        if created:
            _remove_if_unused(run_dir)
        raise


def _remove_if_unused(run_dir: Path) -> None:
    """Remove ``run_dir`` if it holds nothing but a lock file (a run that failed before writing anything)."""
    try:
        if {p.name for p in run_dir.iterdir()} <= {LOCK_NAME}:
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass  # another process uses it now, or it is gone: leave it


def open_run(task: str, run_dir: Path, resume: bool, init_from: str | None, reset_optimizer: bool = False) -> Run:
    """Load the checkpoints --resume and --init-from name, with ``run_dir`` locked (`claimed_run_directory`): a
    checkpoint found there is refused without --resume."""
    has_checkpoint = run_dir.is_dir() and checkpoint.exists(run_dir)
    if has_checkpoint and not resume:
        fail(f"{str(run_dir)!r} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if resume and not has_checkpoint:
        fail(f"--resume: no checkpoint in {str(run_dir)!r}")
    saved = checkpoint.load(run_dir) if resume else None
    base = checkpoint.load(init_from) if init_from else None
    for loaded in (saved, base):
        if loaded:
            check_description(loaded[0])
    return Run(saved[0]["task"]["task"] if saved else task, run_dir, saved, base)


def resolve(run: Run, explicit: dict) -> dict:
    """Every setting the run sets by field name: explicit flags over the checkpoint over the task's and the cell's
    defaults (a setting absent here takes its dataclass default)."""
    task_cls = TASKS[run.task]
    explicit = with_cell_file(explicit)
    cell = explicit.get("cell") or (run.saved[0]["model"].get("cell") if run.saved else None) \
        or task_cls.cli_defaults.get("cell", "rnn")
    check_applicable(run.task, cell, explicit)
    settings = defaults(task_cls, cell)
    if run.saved:
        settings.update(from_checkpoint(run.saved[0], explicit, run.allow_other_data))
    settings.update(explicit)
    if run.base:
        check_same_model(run.base[0]["model"], explicit)
    if run.saved and not run.allow_other_data:
        check_same_data(run.saved[0]["task"], settings)
    return settings


def defaults(task_cls, cell: str) -> dict:
    """The command line's own defaults for ``cell`` (``cli_default``), the task's, and the cell's."""
    settings = {}
    for name, (_, f) in option_table().items():
        cells = f.metadata["cells"]
        if f.metadata["cli_default"] is not MISSING and (cells is None or cell in cells):
            settings[name] = f.metadata["cli_default"]
    settings.update(task_cls.cli_defaults)
    settings.update(CELL_DEFAULTS.get(cell, {}))
    settings["cell"] = cell
    return settings


def check_applicable(task: str, cell: str, explicit: dict) -> None:
    """One-line error for a model flag the task's model does not have, or one that belongs to another cell."""
    config_cls, model_cls = model_classes(TASKS[task].model_kind)
    model_flags = set().union(*(field_names(c) for c in MODEL_CONFIGS)) - field_names(config_cls)
    for name in sorted(set(explicit) & model_flags):
        raise ConfigError(f"{flag(name)} is not a setting of task {task!r} (its model is a {model_cls.__name__})")
    data_flags = field_names(DataConfig) - set(TASKS[task].data_options)
    for name in sorted(set(explicit) & data_flags):
        if name == "data":
            takers = ", ".join(n for n, t in TASKS.items() if "data" in t.data_options)
            raise ConfigError(f"task {task!r} generates its own data; --data is for {takers}")
        raise ConfigError(f"{flag(name)} is not a setting of task {task!r} (its data settings: "
                          f"{', '.join(flag(n) for n in TASKS[task].data_options)})")
    if config_cls is ModelConfig:
        ModelConfig.check_cell(cell, set(explicit))
    else:
        config_cls.check_cell(cell)


def from_checkpoint(meta: dict, explicit: dict, allow_other_data: bool = False) -> dict:
    """The settings a resumed run keeps from its checkpoint (its data files by their absolute paths); a model or
    data flag that differs is an error (a data file only without ``allow_other_data``)."""
    kept = {**meta["model"], **fields_of(DataConfig, meta["task"]),
            **stored_data_paths(meta["task"])}
    conflicts = sorted(k for k in explicit if k in kept and not _same_setting(k, kept[k], explicit[k])
                       and not (allow_other_data and k in DATA_FILES))
    if conflicts:
        fail("--resume keeps the checkpoint's model and data; these flags differ from it: " + ", ".join(
            f"{flag(k)} {explicit[k]} (checkpoint: {kept[k]})" for k in conflicts)
            + (" (--allow-other-data continues on other data)" if set(conflicts) & set(DATA_FILES) else ""))
    resumable = {f.name for f in fields(TrainConfig) if f.metadata.get("resume", True)}
    kept.update({k: v for k, v in meta["train"].items() if k in resumable})
    return kept


def check_same_model(model: dict, explicit: dict) -> None:
    """--init-from builds the checkpoint's model: a model flag that differs from it is an error, not ignored."""
    conflicts = sorted(k for k in explicit if k in model and explicit[k] != model[k])
    if conflicts:
        fail("--init-from keeps the checkpoint's model; these flags differ from it: " + ", ".join(
            f"{flag(k)} {explicit[k]} (checkpoint: {model[k]})" for k in conflicts))


def _same_setting(name: str, kept, given) -> bool:
    """Whether a flag repeats the checkpoint's setting (data files compare by their absolute paths)."""
    if name in DATA_FILES and isinstance(kept, str) and isinstance(given, str):
        return Path(kept).resolve() == Path(given).resolve()
    return kept == given


def make_model(run: Run, task, settings: dict, seed: int):
    """The run's model: the checkpoint's (resumed: its weights come with `Trainer.restore`), the --init-from
    checkpoint's config and weights, or a new one for ``task``."""
    source = run.saved or run.base
    if source:
        check_training_fits(model_classes(kind_of(source[0]))[0].from_dict(source[0]["model"]), task)
    if run.saved:
        return model_from_meta(run.saved[0])
    if run.base:
        meta, state = run.base[0], run.base[1]
        if kind_of(meta) != task.model_kind:
            fail(f"--init-from holds a {kind_of(meta)} model; task {run.task!r} needs a {task.model_kind} model")
        sizes = (meta["model"].get("input_size"), meta["model"].get("output_size"))
        if kind_of(meta) == "sequence" and sizes != (task.input_size, task.output_size):
            fail(f"--init-from model has input/output sizes {sizes}, the task needs "
                 f"({task.input_size}, {task.output_size})")
        return model_from_meta(meta, state)
    return build_model(task, settings, rng=np.random.default_rng(seed))


def report(trainer: Trainer, task, run_dir: Path) -> None:
    """Print the one-line summary of a finished run (and a classifier's confusion matrix)."""
    scalars = {k: v for k, v in trainer.last_eval.items() if np.ndim(v) == 0}
    summary = f"done: {trainer.updates} updates in {trainer.elapsed:.1f} s"
    if scalars:
        summary += ", validation " + ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in scalars.items())
        if task.baseline:
            summary += f" (trivial baseline {task.baseline:.4f})"
    click.echo(summary + f"; checkpoint: {run_dir / checkpoint.NAME}")
    click.echo(f"written: {run_dir / 'metrics.jsonl'} (losses and scores per step), {run_dir / 'loss.png'} (the "
               "loss curves)")
    if "confusion" in trainer.last_eval:
        names = task.labels.labels
        click.echo("confusion matrix (rows: true, columns: predicted): " + ", ".join(names))
        for name, row in zip(names, trainer.last_eval["confusion"]):
            click.echo(f"  {name:>12} " + " ".join(f"{v:6d}" for v in row))
