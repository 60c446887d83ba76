"""`rnnkit experiment NAME`: small, repeatable comparisons of cells on the memory benchmarks.

Each experiment trains every (cell, length, seed) combination with the same budget, stops a run early once the
task's success criterion holds, and reports per (cell, length): success rate over seeds, the task's own score,
mean final validation loss against the trivial baseline, and mean time — printed, written as Markdown, and
plotted as a PNG.

Runs are independent and described by plain dicts (`run_spec`), so any `concurrent.futures.Executor` runs them
(`rnnkit.training.executors`: this process, a local process pool, a Dask cluster). Each finished run is appended
to ``results.jsonl`` in the experiment's directory (`rnnkit.training.results`), under its key (cell, length,
seed; the experiment and options are the file's header); the same command run again skips the keys already
there, and the table, JSON and plot are regenerated from the file at any time (`write_report`). A run trains with
one BLAS thread from its seed, so with a step budget (``max_steps``) its numbers depend on its key alone (its
wall time aside); a run cut by the time budget depends on the machine's speed, and its record says so.

Besides the cells of `rnnkit.models.RECURRENT_LAYERS`, an experiment may compare *variants*: ``rnn-nobptt`` is the
vanilla RNN trained as Elman (1990) and the Elman rows of Hochreiter & Schmidhuber (1997) were — the previous state
enters each step as a constant input (``detach_state``), so no error is propagated back through time.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, TrainingInterrupted
from ..models.sequence import CELL_DEFAULTS, ModelConfig, SequenceModel
from ..tasks.memory import Adding1997Task, AddingTask, CopyTask, ReberTask
from .executors import open_executor, run_windowed, slots
from .files import atomic_write, hold_run_directory, make_directory, refuse_link
from .plotting import pyplot, save_figure
from .progress import progress
from .results import NAME as RESULTS
from .results import ResultsFile, make_header, read_results, run_key
from .trainer import TrainConfig, Trainer

# variant label → (cell, ModelConfig overrides); any other label is a cell name with no overrides
VARIANTS = {"rnn-nobptt": ("rnn", {"detach_state": True})}


def variant(label: str) -> tuple[str, dict]:
    return VARIANTS.get(label, (label, {}))


@dataclass
class Experiment:
    name: str
    description: str
    cells: tuple[str, ...]  # cells or variant labels
    lengths: tuple[int, ...]
    seeds: int
    hidden_size: int
    lr: float | dict[str, float]  # one rate, or rates by cell label / base cell, with a "default"
    epochs: int
    eval_every: int
    make_task: Callable  # (length, seed) → task
    time_budget: float = 60.0  # seconds of training per run (default of --time-budget)
    optimizer: str = "adam"
    momentum: float = 0.0
    score: tuple[str, str] | None = None  # (column title, key of task.metrics()) shown beside the success rate
    published: str = ""

    def lr_for(self, label: str) -> float:
        """The rate for a cell label: its own, else its base cell's (rnn-nobptt → rnn), else the default."""
        if not isinstance(self.lr, dict):
            return self.lr
        return self.lr.get(label, self.lr.get(variant(label)[0], self.lr["default"]))

    def definition(self) -> dict:
        """What fixes a run's numbers besides its key and options (a results file's header records it)."""
        return {"description": self.description, "hidden_size": self.hidden_size, "lr": self.lr,
                "epochs": self.epochs, "eval_every": self.eval_every, "optimizer": self.optimizer,
                "momentum": self.momentum}


# Learning rates are per cell where one rate does not suit all: each is the best of a small sweep (recorded in
# docs/experiments.md). The vanilla RNN diverges at the gated cells' rates (its loss ends above the baseline), and
# the "rnn-nobptt" variant gets the RNN's rate, so its failure is the missing gradient through time, not the rate.
EXPERIMENTS = {
    "reber": Experiment(
        name="reber",
        description="Embedded Reber grammar (Hochreiter & Schmidhuber 1997, Exp. 1): 256 train / 256 test strings; "
        "SGD, momentum 0.9, batches of 16; rnn-nobptt = the RNN trained as Elman (1990), without backpropagation "
        "through time",
        cells=("rnn-nobptt", "rnn", "lstm", "gru"), lengths=(0,), seeds=5, hidden_size=16,
        lr={"rnn": 0.3, "default": 1.0}, epochs=10**6, eval_every=160,
        make_task=lambda length, seed: ReberTask(seed=seed), time_budget=30.0, optimizer="sgd", momentum=0.9,
        score=("test strings correct", "test_strings_correct"),
        published="1997, Table 1: Elman nets (Elman's training, no BPTT) 0% success; RTRL ≤ 33%; LSTM 97–100%."),
    "adding": Experiment(
        name="adding",
        description="Adding problem, two-channel variant (target X1 + X2, trivial MSE 1/6; solved: MSE < 5% of it)",
        cells=("rnn", "lstm", "gru"), lengths=(20, 100), seeds=2, hidden_size=64,
        lr={"rnn": 3e-3, "default": 1e-2}, epochs=10**6, eval_every=100,
        make_task=lambda length, seed: AddingTask(seq_length=length, seed=seed), time_budget=75.0,
        published="Le et al. 2015: tanh RNN fails beyond T ≈ 100–150; LSTM solves T = 150–400."),
    "adding1997": Experiment(
        name="adding1997",
        description="Adding problem as in 1997, Exp. 4 (|error| < 0.04 on all test sequences)",
        cells=("rnn", "lstm", "gru"), lengths=(20, 50), seeds=2, hidden_size=32, lr=3e-3, epochs=10**6,
        eval_every=500, make_task=lambda length, seed: Adding1997Task(seq_length=length, seed=seed),
        score=("test sequences correct", "correct"),
        published="1997, Table 7: LSTM solves T = 100 (2560 test sequences, 1 error at most)."),
    "copy": Experiment(
        name="copy",
        description="Copying memory (Arjovsky et al. 2016): recall 10 symbols after T blanks (chance recall 1/8)",
        cells=("rnn", "lstm", "gru"), lengths=(10, 50), seeds=2, hidden_size=128,
        lr={"rnn": 1e-3, "default": 1e-2}, epochs=10**6, eval_every=200,
        make_task=lambda length, seed: CopyTask(seq_length=length, seed=seed), time_budget=60.0,
        score=("recall accuracy", "recall_accuracy"),
        published="Arjovsky et al. 2016: LSTM and tanh RNN stay at the baseline for T = 100–500 (uRNN solves it)."),
}


def run_one(exp: Experiment, label: str, length: int, seed: int, out_dir: Path, time_budget: float,
            max_steps: int = 0, definition: dict | None = None) -> dict:
    """Train one (cell, length, seed) into ``out_dir/<label>-T<length>-seed<seed>`` with one BLAS thread; its result
    as a plain dict (``stopped``: what ended it — ``success``, ``steps``, ``time`` or ``epochs``). ``definition``:
    the dict of a defined cell (`rnnkit.define`, ``--cell-file``) that ``label`` names."""
    task = exp.make_task(length, seed)
    cell, overrides = ("defined", {"definition": definition}) if definition else variant(label)
    config = ModelConfig(task.input_size, task.output_size, tokens=task.tokens, cell=cell,
                         hidden_size=exp.hidden_size, forget_bias=1.0 if cell in ("lstm", "lnlstm") else None,
                         **{**CELL_DEFAULTS.get(cell, {}), **overrides})
    model = SequenceModel(config, rng=np.random.default_rng(seed), loss=task.loss)
    train_config = TrainConfig(optimizer=exp.optimizer, lr=exp.lr_for(label), momentum=exp.momentum,
                               epochs=exp.epochs, eval_every=exp.eval_every, seed=seed, time_limit=time_budget,
                               max_steps=max_steps, threads=1, progress=False)
    trainer = Trainer(model, task, train_config, out_dir / f"{label}-T{length}-seed{seed}")
    started = time.perf_counter()
    trainer.fit()
    metrics = trainer.last_eval
    success = float(metrics.get("success", 0.0))
    return {"key": run_key(label, length, seed), "cell": label, "length": length, "seed": seed, "success": success,
            "val_loss": float(metrics["val_loss"]), "baseline": task.baseline,
            "steps": trainer.updates, "seconds": time.perf_counter() - started,
            "stopped": stopped_by(trainer, success, max_steps, time_budget),
            **{k: float(v) for k, v in metrics.items() if k not in ("success", "val_loss") and np.ndim(v) == 0}}


def stopped_by(trainer: Trainer, success: float, max_steps: int, time_budget: float) -> str:
    """What ended a run: its success, the step budget, the time budget, or the experiment's epochs."""
    if success == 1.0:
        return "success"
    if max_steps and trainer.updates >= max_steps:
        return "steps"
    if time_budget and trainer.elapsed >= time_budget:
        return "time"
    return "epochs"


def run_spec(spec: dict) -> dict:
    """`run_one` from a plain dict — what a pool process or a Dask worker receives: the experiment's name (its
    definition is looked up here; its task factory does not pickle), ``cell``, ``length``, ``seed``,
    ``time_budget``, ``max_steps``, ``runs_dir`` (where the run's directory goes) and ``definitions`` (defined
    cells by label, as text: `rnnkit.define.Definition.to_dict`)."""
    exp = EXPERIMENTS[spec["experiment"]]
    return run_one(exp, spec["cell"], spec["length"], spec["seed"], Path(spec["runs_dir"]), spec["time_budget"],
                   spec["max_steps"], spec.get("definitions", {}).get(spec["cell"]))


def grid(exp: Experiment, seeds: int, options: dict, runs_dir: Path) -> list[dict]:
    """The spec of every run of the grid (lengths × cells × seeds), in that order."""
    return [{"experiment": exp.name, "cell": cell, "length": length, "seed": seed, **options,
             "runs_dir": str(runs_dir.resolve())}
            for length in exp.lengths for cell in exp.cells for seed in range(seeds)]


def in_grid_order(exp: Experiment, runs: list[dict]) -> list[dict]:
    """``runs`` sorted by cell (the experiment's order first), length and seed: the same order however they ran."""
    cells = [*exp.cells, *sorted({r["cell"] for r in runs} - set(exp.cells))]
    return sorted(runs, key=lambda r: (cells.index(r["cell"]), r["length"], r["seed"]))


def summarize(exp: Experiment, runs: list[dict]) -> list[dict]:
    rows = []
    runs = in_grid_order(exp, runs)
    for cell in dict.fromkeys(r["cell"] for r in runs):
        for length in sorted({r["length"] for r in runs}):
            mine = [r for r in runs if r["cell"] == cell and r["length"] == length]
            if not mine:
                continue
            mean = {key: float(np.mean([r.get(key, np.nan) for r in mine]))
                    for key in ("success", "val_loss", "seconds", "steps", *(exp.score[1:] if exp.score else ()))}
            rows.append({"cell": cell, "length": length, "seeds": len(mine), "success_rate": mean["success"],
                         "score": mean[exp.score[1]] if exp.score else None, "val_loss": mean["val_loss"],
                         "baseline": mine[0]["baseline"], "seconds": mean["seconds"], "steps": mean["steps"],
                         "time_stopped": sum(r.get("stopped") == "time" for r in mine)})
    return rows


def markdown(exp: Experiment, rows: list[dict]) -> str:
    score = [exp.score[0]] if exp.score else []
    header = ["cell", "T", "seeds", "success rate", *score, "final val loss", "trivial baseline", "loss / baseline",
              "mean time (s)", "mean updates"]
    lines = [f"# Experiment: {exp.name}", "", exp.description, "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for r in rows:
        base = r["baseline"]
        cells = [r["cell"], str(r["length"] or "–"), str(r["seeds"]), f"{r['success_rate']:.0%}",
                 *([f"{r['score']:.1%}"] if exp.score else []), f"{r['val_loss']:.4f}",
                 "–" if base is None else f"{base:.4f}", "–" if base is None else f"{r['val_loss'] / base:.2f}",
                 f"{r['seconds']:.1f}", f"{r['steps']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    timed = sum(r.get("time_stopped", 0) for r in rows)
    if timed:
        lines += ["", f"{timed} of {sum(r['seeds'] for r in rows)} runs ended on the time budget: their numbers "
                  "depend on the machine's speed (with --max-steps, a run's numbers depend on its key alone)."]
    if exp.published:
        lines += ["", f"Published: {exp.published}"]
    return "\n".join(lines) + "\n"


def plot(exp: Experiment, rows: list[dict], png: Path) -> None:
    save_figure(experiment_figure(exp, rows), png)


def experiment_figure(exp: Experiment, rows: list[dict]):
    """Two panels per (cell, length) row: the success rate (and the task's score) over seeds, each bar labelled
    with its value so that a 0 shows, and the final validation loss against the trivial baseline."""
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.8), dpi=110)
    x = np.arange(len(rows))
    _success_panel(axes[0], exp, rows, x)
    if all(r["baseline"] is not None for r in rows):  # loss relative to the trivial baseline: 1 = learned nothing
        axes[1].bar(x, [r["val_loss"] / r["baseline"] for r in rows], color="tab:blue")
        axes[1].axhline(1.0, color="k", lw=1.5, ls="--", label="trivial baseline")
        axes[1].set_ylabel("final validation loss / trivial baseline")
        axes[1].legend(fontsize=7, loc="upper left")
    else:
        axes[1].bar(x, [r["val_loss"] for r in rows], color="tab:blue")
        axes[1].set_ylabel("final validation loss")
    axes[1].set_title("final validation loss", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, [row_label(r) for r in rows], rotation=45, fontsize=8)
    fig.suptitle(textwrap.fill(exp.description, 120), fontsize=8)
    return fig


def _success_panel(ax, exp: Experiment, rows: list[dict], x: np.ndarray) -> None:
    """Success rates (and scores) as bars labelled in percent; the title says when every success rate is 0."""
    width = 0.4 if exp.score else 0.8
    bars = [ax.bar(x - (width / 2 if exp.score else 0), [r["success_rate"] for r in rows], width,
                   color="tab:green", label="success rate over seeds")]
    if exp.score:
        bars.append(ax.bar(x + width / 2, [r["score"] for r in rows], width, color="tab:olive", label=exp.score[0]))
    for group in bars:
        ax.bar_label(group, labels=[f"{v:.0%}" for v in group.datavalues], fontsize=7, padding=1)
    ax.axhline(0.0, color="tab:green", lw=1.5)  # the baseline of bars of height 0
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("share of seeds" + (f" / {exp.score[0]}" if exp.score else ""))
    none = all(r["success_rate"] == 0 for r in rows)
    ax.set_title("success rate over seeds" + (": all 0" if none else ""), fontsize=9)
    if none:
        ax.text(0.5, 0.45, "no run met the success criterion", ha="center", transform=ax.transAxes, fontsize=8,
                color="tab:green")
    ax.legend(fontsize=7, ncol=2, loc="upper center")


def row_label(r: dict) -> str:
    """``lstm T=100``, or the cell alone for an experiment without lengths (the Reber grammar)."""
    return r["cell"] + (f" T={r['length']}" if r["length"] else "")


def run_experiment(name: str, out_dir: Path, seeds: int | None = None, lengths=None, cells=None,
                   time_budget: float | None = None, max_steps: int = 0, jobs: int | None = 1,
                   scheduler: str | None = None, log=print, definitions: dict | None = None) -> list[dict]:
    """Run the grid's runs that ``out_dir/results.jsonl`` does not hold yet, on a Dask cluster (``scheduler``) or
    ``jobs`` local processes; as each finishes, append it there and rewrite the table ``<name>.md``; at the end
    write ``<name>.md``, ``<name>.json`` and ``<name>.png`` from all the runs in the file. Returns the summary.
    A bar counts the runs on a terminal; ``log`` prints a line per finished run (`rnnkit.training.progress.note`
    keeps it above the bar).
    ``definitions``: defined cells by label (their dicts), compared after the cells; the results header records
    them, so a changed definition is another configuration."""
    exp = EXPERIMENTS[name]  # the shared definition stays as it is; overrides make a copy
    cells = (tuple(cells) if cells else exp.cells) + tuple(definitions or ())
    exp = replace(exp, lengths=tuple(lengths) if lengths else exp.lengths, cells=cells)
    options = {"time_budget": float(time_budget or exp.time_budget), "max_steps": int(max_steps)}
    if definitions:
        options["definitions"] = dict(definitions)
    make_directory(out_dir, "the experiment directory")
    with hold_run_directory(out_dir):
        refuse_foreign_reports(name, out_dir)
        results = ResultsFile.open(out_dir, make_header(name, exp.definition(), options))
        wanted = grid(exp, seeds or exp.seeds, options, out_dir / "runs")
        todo = [s for s in wanted if run_key(s["cell"], s["length"], s["seed"]) not in results.runs]
        if len(todo) < len(wanted):
            log(f"{len(wanted) - len(todo)} of {len(wanted)} runs are in {out_dir / RESULTS} already; "
                f"running the other {len(todo)}")
        try:
            with open_executor(scheduler, jobs) as executor:
                runs = run_windowed(executor, run_spec, todo, slots(executor))
                for done, (_, r) in enumerate(progress(runs, total=len(todo), desc=name, unit="run"), 1):
                    results.append(r)
                    atomic_write(out_dir / f"{name}.md", markdown(exp, summarize(exp, list(results.runs.values()))))
                    log(f"{row_label(r):>12} seed {r['seed']}: success {r['success']:.0f}  val loss "
                        f"{r['val_loss']:.4f}  {r['steps']} steps  {r['seconds']:.1f} s  ({done} of {len(todo)} runs)")
        except TrainingInterrupted as e:
            raise interrupted(e, results) from None
        return write_report(exp, out_dir, list(results.runs.values()))


def interrupted(stop: TrainingInterrupted, results: ResultsFile) -> TrainingInterrupted:
    """The experiment's own message for a run stopped by a signal: what is kept and how to continue (the same
    command again; an experiment has no --resume)."""
    name = signal.Signals(stop.exit_status - 128).name
    return TrainingInterrupted(f"experiment stopped by {name}; its {len(results.runs)} finished runs are in "
                               f"{results.path} (the same command continues the grid, starting the interrupted run "
                               "again)", stop.exit_status)


def refuse_foreign_reports(name: str, out_dir: Path) -> None:
    """One-line error if ``out_dir`` holds an experiment's table, JSON or plot but no results file they were made
    from (an earlier experiment's, or another program's): they are never overwritten; or if any of them is a link."""
    for path in (out_dir / RESULTS, *(out_dir / f"{name}{suffix}" for suffix in (".md", ".json", ".png"))):
        refuse_link(path)  # before any run: each is written at the end
    if (out_dir / RESULTS).exists():
        return
    for suffix in (".md", ".json", ".jsonl", ".png"):
        path = out_dir / f"{name}{suffix}"
        if path.exists():
            raise ConfigError(f"--out: {str(path)!r} already exists and was not made from a {RESULTS} there; "
                              "choose another --out (nothing is overwritten)")


def report_experiment(name: str, out_dir: Path) -> list[dict]:
    """Regenerate ``<name>.md``, ``<name>.json`` and ``<name>.png`` from ``out_dir/results.jsonl`` (while its runs
    go on, too); returns the summary."""
    path = out_dir / RESULTS
    if not path.exists():
        raise ConfigError(f"--report: no {RESULTS} in --out {str(out_dir)!r} (expected the directory of an "
                          f"experiment {name!r})")
    header, runs, _ = read_results(path)
    if header.get("experiment") != name:
        raise ConfigError(f"--report: {str(path)!r} holds experiment {header.get('experiment')!r}, not {name!r}")
    return write_report(EXPERIMENTS[name], out_dir, list(runs.values()))


def write_report(exp: Experiment, out_dir: Path, runs: list[dict]) -> list[dict]:
    """``<name>.json`` (every run, in grid order, and the summary), ``<name>.md`` and ``<name>.png``."""
    runs = in_grid_order(exp, runs)
    rows = summarize(exp, runs)
    atomic_write(out_dir / f"{exp.name}.json", json.dumps({"runs": runs, "summary": rows}, indent=1))
    atomic_write(out_dir / f"{exp.name}.md", markdown(exp, rows))
    if rows:
        plot(exp, rows, out_dir / f"{exp.name}.png")
    return rows
