"""Studying models: ``experiment`` (cells compared on a benchmark), ``diagnose`` (gradient flow), ``visualize``
(hidden units of a character model)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..recurrent import catalog
from ..tasks.registry import GENERATED_TASKS, make_task
from ..training.data import DataConfig
from ..training.experiments import EXPERIMENTS, VARIANTS
from ..training.files import atomic_write
from .common import fail, load_char_model, load_kind, refuse_existing
from .options import SCHEDULER, SEED


@click.command()
@click.argument("name", type=click.Choice(list(EXPERIMENTS)), metavar="NAME")
@click.option("--out", "out", type=click.Path(file_okay=False), help="The experiment's directory: results.jsonl, "
              "NAME.md, NAME.json, NAME.png, runs/ [experiments/NAME].")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds per (cell, length) [experiment's own].")
@click.option("--length", "lengths", type=click.IntRange(min=1), multiple=True, help="Sequence length(s) T.")
@click.option("--cell", "cells", type=click.Choice((*VARIANTS, *catalog.names("encoder"))), multiple=True,
              help="Cells to compare [experiment's own]; rnn-nobptt = the RNN trained without BPTT, as Elman (1990).")
@click.option("--cell-file", "cell_files", multiple=True, metavar="FILE.py:NAME",
              help="A cell defined by its equations (rnnkit.define), compared after the experiment's cells (or "
                   "--cell's) under its definition's name; may be repeated.")
@click.option("--time-budget", type=click.FloatRange(min=1),
              help="Seconds of training per run; a run also stops once it succeeds ["
                   + ", ".join(f"{name} {e.time_budget:g}" for name, e in EXPERIMENTS.items()) + "].")
@click.option("--max-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Updates per run (0: none): a run's numbers then depend on its cell, length and seed alone, on "
                   "any machine, unless the time budget ends it first.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs in parallel, one process and one BLAS thread each [all cores].")
@click.option("--scheduler", type=SCHEDULER, metavar="tcp://HOST:PORT",
              help="Run on the Dask cluster of this scheduler instead of local processes (pip install "
                   "'rnnkit[dask]'; the workers need rnnkit installed).")
@click.option("--report", is_flag=True, help="Only rewrite NAME.md, NAME.json and NAME.png from --out's "
              "results.jsonl (also while its runs go on) and print the table.")
def experiment(name, out, seeds, lengths, cells, cell_files, time_budget, max_steps, jobs, scheduler, report):
    """Compare cells on a memory benchmark (several seeds and lengths); write NAME.md and NAME.png to --out.
    Each finished run is appended to results.jsonl; the same command run again continues where it stopped (it
    skips the runs there); another experiment configuration in the same --out is refused."""
    from ..training.experiments import markdown, report_experiment, run_experiment
    from ..training.progress import note

    if jobs and scheduler:
        fail(f"--jobs and --scheduler cannot be combined (the Dask cluster's workers decide, got --jobs {jobs})")
    target = Path(out) if out else Path("experiments") / name
    if report:
        rows = report_experiment(name, target)
    else:
        rows = run_experiment(name, target, seeds=seeds, lengths=lengths, cells=cells, time_budget=time_budget,
                              max_steps=max_steps, jobs=jobs, scheduler=scheduler,
                              log=note,
                              definitions=_defined_cells(cell_files, cells))
    click.echo(markdown(EXPERIMENTS[name], rows))
    click.echo(f"written: {target / (name + '.md')}, {target / (name + '.png')} (from {target / 'results.jsonl'})",
               err=True)


def _defined_cells(references, cells) -> dict:
    """The definitions of --cell-file by their names (the runs' labels); a name that is also a cell compared, or
    given twice, is a one-line error."""
    from ..define import load_cell_file

    definitions = {}
    for reference in references:
        definition = load_cell_file(reference)
        if definition.name in (*catalog.names(), *VARIANTS, *cells, *definitions):
            fail(f"--cell-file {reference}: the cell is named {definition.name!r}, which names another cell of the "
                 "experiment (give the definition another name)")
        definitions[definition.name] = definition.to_dict()
    return definitions


@click.command()
@click.argument("checkpoints", nargs=-1, type=click.Path())
@click.option("--cell", "cells", type=click.Choice(catalog.names("encoder")), multiple=True,
              help="Freshly initialised models of these cells (in addition to any CHECKPOINTS).")
@click.option("--task", "task_name", type=click.Choice(GENERATED_TASKS), default="adding", show_default=True,
              help="Data for fresh models (checkpoints use their own task's data).")
@click.option("--seq-length", type=click.IntRange(min=2), default=100, show_default=True,
              help="Sequence length T of the --task data for fresh --cell models.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Units of the fresh --cell models.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the fresh models' weights and of the data.")
@click.option("--out", "out", type=click.Path(file_okay=False), default="diagnostics", show_default=True,
              help="Directory for grad_norms.png (one panel per task) and saturation.png (gate activations and "
                   "spectral radii); an existing one is never overwritten.")
def diagnose(checkpoints, cells, task_name, seq_length, hidden_size, seed, out):
    """Plot ‖∂L/∂h_t‖ against t, gate saturation, and spectral radii for CHECKPOINTS (each on its own task and
    length) and/or fresh --cell models (on --task with --seq-length)."""
    from ..training.diagnostics import diagnose as run_diagnose

    if not checkpoints and not cells:
        fail("give CHECKPOINTS and/or --cell (e.g. --cell rnn --cell lstm)")
    target = Path(out)
    if (target / "grad_norms.png").exists():
        fail(f"{str(target)!r} already holds diagnostics; choose another --out (nothing is overwritten)")
    models, tasks = {}, {}
    names = [Path(path).name for path in checkpoints]
    for path, name in zip(checkpoints, names):
        task, model = _diagnosed_checkpoint(path, seed)
        label = f"{name if names.count(name) == 1 else path} ({model.config.cell})"
        models[label], tasks[label] = model, task
    if cells:
        task = make_task(task_name, DataConfig(seq_length=seq_length, batch_size=64), seed=seed, dtype="float64")
        for label, model in _fresh_models(cells, task, hidden_size, seed).items():
            models[label], tasks[label] = model, task
    summary = run_diagnose(models, tasks, target)
    for label, s in summary.items():
        sat = ", ".join(f"{g} {v:.0%}" for g, v in s["saturation"].items())
        rho = ", ".join(f"{g} {v:.2f}" for g, v in s["spectral_radius"].items())
        click.echo(f"{label} on {s['task']}: ‖∂L/∂h‖ at t=0 is {s['grad_norm_first_step']:.2e} vs "
                   f"{s['grad_norm_last_step']:.2e} at the loss (ratio {s['decay_first_over_last']:.1e}); "
                   f"saturated: {sat}; spectral radius: {rho}")
    click.echo(f"plots: {target / 'grad_norms.png'}, {target / 'saturation.png'}", err=True)


def _diagnosed_checkpoint(path: str, seed: int):
    """(the checkpoint's own task, its model) for `diagnose`."""
    meta, model = load_kind(path, "sequence")
    name = meta["task"]["task"]
    if name not in GENERATED_TASKS:
        fail(f"{path!r}: diagnose takes models of the {', '.join(GENERATED_TASKS)} tasks")
    data = DataConfig(seq_length=meta["task"].get("seq_length", 0), batch_size=64)
    model.bind_task(task := make_task(name, data, seed=meta["task"].get("seed", seed), dtype="float64"))
    return task, model


def _fresh_models(cells, task, hidden_size: int, seed: int) -> dict:
    """Freshly initialised models of ``cells`` for ``task`` (LSTMs with forget bias 1, as ``rnnkit train``)."""
    from ..models.sequence import CELL_DEFAULTS, ModelConfig, SequenceModel

    models = {}
    for cell in cells:
        config = ModelConfig.for_task(task, cell=cell, hidden_size=hidden_size,
                                      forget_bias=1.0 if cell in catalog.names(option="forget_bias") else None,
                                      **CELL_DEFAULTS.get(cell, {}))
        models[f"{cell} (initial)"] = SequenceModel(config, rng=np.random.default_rng(seed), loss=task.loss)
    return models


@click.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path())
@click.option("--text", "text", default=None, help="The text to colour (default: the first 1000 characters of "
              "--text-file).")
@click.option("--text-file", type=click.Path(dir_okay=False), help="Read the text from a UTF-8 file.")
@click.option("--unit", "units", type=click.IntRange(min=0), multiple=True,
              help="A hidden unit to colour by, from 0 to the model's hidden size − 1 (repeatable; default: the "
              "first 8 units).")
@click.option("--length", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Characters taken from --text-file.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="units.html", show_default=True,
              help="The HTML page to write (an existing file is never overwritten).")
def visualize(checkpoint_path, text, text_file, units, length, out):
    """Write an HTML page colouring a text by hidden-unit activations of a character-model CHECKPOINT."""
    from ..tasks.text import read_text
    from ..training.visualize import unit_page

    if (text is None) == (text_file is None):
        fail("give exactly one of --text or --text-file")
    refuse_existing(out, "--out")
    _, model, vocab = load_char_model(checkpoint_path)
    if text_file:
        text = read_text(text_file)[:length]
    kept = "".join(ch for ch in text if ch in vocab.index)
    if len(kept) < len(text):
        click.echo(f"rnnkit: note: dropped {len(text) - len(kept)} characters that are not in the model's "
                   "vocabulary", err=True)
    page = unit_page(model, vocab, kept, list(units) or list(range(min(8, model.config.hidden_size))),
                     title=f"hidden units of {checkpoint_path}")
    atomic_write(out, page)
    click.echo(f"written: {out}", err=True)
