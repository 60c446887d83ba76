"""``rnnkit search TASK --trials N --space '...'``: a hyperparameter search whose trials are ``rnnkit train`` runs.

Every flag of ``rnnkit train`` given here is fixed for all trials; ``--space`` names the settings searched (by
their field names: ``lr=log(1e-4,1e-1) hidden_size=[64,128,256]``). A trial is built exactly as ``rnnkit train``
builds a run (`rnnkit.cli.train.build_trainer`), in its own directory under ``--out/trials``; the study, its
journal and the locking are in `rnnkit.training.search`. At the end: a table of all trials and the best one as a
ready ``rnnkit train`` command line.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from ..errors import ConfigError, RnnkitError, TrainingInterrupted
from ..models.configs import fields_of, flag
from ..tasks.registry import TASKS
from ..training.data import DataConfig
from ..training.files import atomic_write, make_directory, refuse_link
from ..training.trainer import TrainConfig
from .common import fail
from .options import SCHEDULER, click_type, field_type, given, option_table, with_options
from .train import Run, build_trainer, resolve


@click.command()
@click.argument("task", type=click.Choice(list(TASKS)), metavar="TASK")
@with_options
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials in the study, counting those of every process sharing --out.")
@click.option("--space", required=True, help="Settings searched, by field name: name=log(a,b), name=uniform(a,b), "
              "name=int(a,b), name=[v1,v2,...], separated by spaces.")
@click.option("--objective", default="val_loss", show_default=True,
              help="The validation metric optimised (val_loss, or a task metric such as recall_accuracy).")
@click.option("--direction", type=click.Choice(["minimize", "maximize"]),
              help="[minimize for a loss, maximize otherwise]")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Stop trials whose validation curve is worse than the median of earlier trials at that update.")
@click.option("--out", "out", type=click.Path(file_okay=False), help="The study's directory: journal.log, "
              "trials/, search.md; several processes may share it [searches/TASK].")
@click.option("--jobs", type=click.IntRange(min=1), help="Trials at once, one process each [all cores].")
@click.option("--scheduler", type=SCHEDULER, metavar="tcp://HOST:PORT", help="Run the trials on this Dask cluster "
              "(pip install 'rnnkit[dask]'; its workers must see --out, as on a shared file system).")
@click.pass_context
def search(ctx, task, trials, space, objective, direction, prune, out, jobs, scheduler, **values):
    """Search hyperparameters of TASK with Optuna: --trials runs of `rnnkit train` with settings drawn from
    --space, the other train flags given here fixed; print a table of the trials and the best as a command line."""
    from ..training.executors import open_executor
    from ..training.progress import note
    from ..training.search import best_trial, open_study, parse_space, run_search, space_record, summary

    if jobs and scheduler:
        fail(f"--jobs and --scheduler cannot be combined (the Dask cluster's workers decide, got --jobs {jobs})")
    fixed, target = given(ctx, values), Path(out) if out else Path("searches") / task
    dims = parse_space(space, space_fields())
    if clash := sorted(set(fixed) & {d.name for d in dims}):
        fail(f"{', '.join(flag(n) for n in clash)} is both fixed and searched (--space); give it once")
    check_trials_apply(task, target, fixed, dims)
    check_objective(task, fixed, dims, objective)
    direction = objective_direction(objective, direction)
    config = {"task": task, "space": space_record(dims), "fixed": fixed, "objective": objective,
              "direction": direction, "prune": prune}
    for name in ("search.md", ".search.lock", "journal.log"):  # refused before any trial runs
        refuse_link(target / name)
    if (target / "search.md").exists() and not (target / "journal.log").exists():
        fail(f"--out {str(target)!r} holds a search.md that no search there wrote (no journal.log); choose another "
             "--out (nothing is overwritten)")
    make_directory(target, "the search directory")
    study = open_study(target, config)
    base = {"task": task, "fixed": fixed, "objective": objective, "prune": prune}
    with open_executor(scheduler, jobs) as executor:
        run_search(study, target, trials, dims, base, run_trial, executor, log=note)
    best = best_trial(study)
    text = f"# Search: {task}, {objective} ({direction})\n\n" + summary(study, dims, objective)
    if best is not None:
        text += (f"\nBest: trial {best.number}, {objective} {best.value:.4f} (run directory "
                 f"{best.user_attrs.get('run_dir')})\n\n    {train_command(task, {**fixed, **best.params})}\n")
    atomic_write(target / "search.md", text)
    click.echo(text)
    click.echo(f"written: {target / 'search.md'} (the study: {target / 'journal.log'})", err=True)


def space_fields() -> dict:
    """Field name → (type, converter) for `parse_space`: a written value is checked as its flag would check it."""
    fields = {}
    for name, (cls, f) in option_table().items():
        kind = field_type(cls, f)
        param_type = click.BOOL if kind is bool else click_type(cls, f)

        def convert(text: str, name=name, param_type=param_type):
            try:
                return param_type.convert(text, None, None)
            except click.BadParameter as e:
                raise ConfigError(f"--space: {name}={text}: {e.message}") from None

        fields[name] = (kind, convert)
    return fields


#: words in a metric's name that say which way is better (``--direction`` decides for other names)
LOWER_IS_BETTER = ("loss", "error", "perplexity", "bits")
HIGHER_IS_BETTER = ("accuracy", "success", "correct", "f1", "precision", "recall")


def objective_direction(objective: str, given: str | None) -> str:
    """``--direction``, or the one the objective's name implies; one line asking for it when the name is silent."""
    if given:
        return given
    if any(word in objective for word in LOWER_IS_BETTER):
        return "minimize"
    if any(word in objective for word in HIGHER_IS_BETTER):
        return "maximize"
    fail(f"--objective {objective!r} does not say whether lower or higher is better: add --direction minimize or "
         "--direction maximize")


def check_objective(task: str, fixed: dict, dims, objective: str) -> None:
    """One line before any trial runs (and before the study records it) unless ``objective`` is a validation
    metric of the task: one untrained model of the space's first point is validated once, nothing written."""
    from ..training.search import objective_value

    explicit = {"progress": False, **fixed, **{d.name: d.choices[0] if d.kind == "choice" else d.low for d in dims}}
    objective_value(build_trainer(Run(task, None), explicit).evaluate(), objective)


def check_trials_apply(task: str, out: Path, fixed: dict, dims) -> None:
    """One-line error before any trial runs if a fixed or searched setting does not apply to the task (or to a
    searched cell), checked with each searched cell and the low end of every range."""
    cells = next((d.choices for d in dims if d.name == "cell"), (None,))
    for cell in cells:
        explicit = {**fixed, **{d.name: d.choices[0] if d.kind == "choice" else d.low for d in dims}}
        if cell is not None:
            explicit["cell"] = cell
        settings = resolve(Run(task, out), explicit)
        DataConfig(**fields_of(DataConfig, settings))
        TrainConfig(**fields_of(TrainConfig, settings))


def run_trial(spec: dict) -> dict:
    """One trial on a worker: ``rnnkit train`` with the fixed settings and the trial's parameters, in its own
    directory, reporting to the study at each validation (and stopped there if pruned); a plain-dict result."""
    from ..training.search import PruningHook, objective_value

    explicit = {"progress": False, "threads": 1, **spec["fixed"], **spec["params"]}
    try:
        trainer = build_trainer(Run(spec["task"], Path(spec["run_dir"])), explicit)
        hook = trainer.stop_when = PruningHook(spec, trainer)
        trainer.fit()
        value = objective_value(trainer.last_eval, spec["objective"])
    except TrainingInterrupted:
        raise
    except RnnkitError as e:
        return {"state": "fail", "error": str(e).strip().splitlines()[0], "run_dir": spec["run_dir"]}
    return {"state": "pruned" if hook.pruned else "complete", "value": value, "steps": trainer.updates,
            "seconds": round(trainer.elapsed, 2), "run_dir": spec["run_dir"]}


def train_command(task: str, settings: dict) -> str:
    """``rnnkit train TASK --flag value ...`` for ``settings`` (by field name)."""
    table, words = option_table(), ["rnnkit", "train", task]
    for name, value in settings.items():
        meta = table[name][1].metadata
        if isinstance(value, bool):
            words += [flag(name)] if value else [meta["negative"]] if meta["negative"] else []
        else:
            words += [flag(name), f"{value:.6g}" if isinstance(value, float) else shlex.quote(str(value))]
    return " ".join(words)
