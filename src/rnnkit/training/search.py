"""`rnnkit search`: hyperparameter search with Optuna, its trials run on the executors of `rnnkit.training.executors`.

The study lives in ``--out/journal.log`` (Optuna's `JournalFileBackend` behind a `JournalStorage`): an append-only
log with file locks, so several processes — on one machine, or on several that share the directory — can work on
one study. ``--trials N`` is the study's total: each process asks for a new trial (under ``--out/.search.lock``)
only while the study holds fewer than N, whoever made them; the same command run again continues the study (a
trial left running by a killed process of this host is marked failed and not counted, `fail_orphans`). The
first process records the search's configuration (task, space, fixed flags, objective) in the study; a process
with another configuration is refused in one line.

Each trial is a plain dict (its *spec*: task, fixed settings, sampled parameters, run directory, where the
journal is) that a worker turns into an ``rnnkit train`` run of its own directory (``trials/trial-0007``:
checkpoint, metrics.jsonl, loss.png). At each validation the worker reports the objective to the study and stops
a hopeless trial (`PruningHook`: Optuna's `MedianPruner` on the validation curve); the process that asked for the
trial tells the study its end. Optuna is optional: ``pip install 'rnnkit[search]'``.

The space is a line of ``name=log(a,b)``, ``name=uniform(a,b)``, ``name=int(a,b)`` or ``name=[v1,v2,...]`` over the
field names of the ``rnnkit train`` flags (`parse_space`).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, DependencyError
from .files import open_no_link

JOURNAL = "journal.log"
STUDY = "rnnkit-search"
KINDS = ("log", "uniform", "int")
_ITEM = re.compile(r"\s*([A-Za-z_][\w-]*)\s*=\s*(?:(\w+)\(([^()]*)\)|\[([^\[\]]*)\])\s*")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``kind`` is ``log``/``uniform`` (a float range, log-uniform or uniform), ``int`` (an
    integer range; log-uniform when its field is an int and ``log`` was asked) or ``choice``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    integer: bool = False


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise DependencyError("rnnkit search needs Optuna: pip install 'rnnkit[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def parse_space(text: str, fields: dict[str, tuple[type, Callable[[str], object]]]) -> list[Dimension]:
    """The dimensions of ``--space``; ``fields``: field name → (its type, a converter of a written value that raises
    `ConfigError` for a bad one). One-line `ConfigError` for bad grammar, an unknown name or a bad value."""
    dims, position = [], 0
    for match in _ITEM.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        dims.append(_dimension(match, fields))
    if position != len(text) or not dims:
        rest = text[position:].strip() or text
        raise ConfigError(f"--space: cannot read {rest[:40]!r} (expected name=log(a,b), name=uniform(a,b), "
                          "name=int(a,b) or name=[v1,v2,...], separated by spaces)")
    names = [d.name for d in dims]
    if len(set(names)) < len(names):
        raise ConfigError(f"--space names a setting twice: {sorted({n for n in names if names.count(n) > 1})}")
    return dims


def _dimension(match: re.Match, fields: dict) -> Dimension:
    name, kind, args, items = match.group(1).replace("-", "_"), match.group(2), match.group(3), match.group(4)
    if name not in fields:
        raise ConfigError(f"--space: {name!r} is not a setting of rnnkit train (expected one of its flags' field "
                          f"names, such as lr, hidden_size, dropout)")
    kind_of, convert = fields[name]
    if items is not None:
        choices = tuple(convert(v.strip()) for v in items.split(",") if v.strip())
        if not choices:
            raise ConfigError(f"--space: {name}=[] lists no values (expected [v1,v2,...])")
        return Dimension(name, "choice", choices=choices)
    if kind not in KINDS:
        raise ConfigError(f"--space: {name}={kind}(...) is not a distribution (expected log, uniform or int)")
    if kind_of not in (int, float) or (kind == "int" and kind_of is not int):
        want = "int(a,b) or log(a,b)" if kind_of is int else "log(a,b) or uniform(a,b)" if kind_of is float \
            else "a list [v1,v2,...]"
        raise ConfigError(f"--space: {name} is a {kind_of.__name__} setting; expected {want}, got {kind}(...)")
    bounds = [v.strip() for v in args.split(",")]
    if len(bounds) != 2:
        raise ConfigError(f"--space: {name}={kind}({args}) needs two bounds, got {len(bounds)}")
    low, high = (convert(v) for v in bounds)
    if not low < high or (kind == "log" and low <= 0):
        raise ConfigError(f"--space: {name}={kind}({args}) needs {'0 < ' if kind == 'log' else ''}a < b")
    return Dimension(name, kind, low, high, integer=kind_of is int)


def suggest(trial, dims: list[Dimension]) -> dict:
    """The trial's value of each dimension."""
    params = {}
    for d in dims:
        if d.kind == "choice":
            params[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif d.integer:
            params[d.name] = trial.suggest_int(d.name, d.low, d.high, log=d.kind == "log")
        else:
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.kind == "log")
    return params


def storage_of(out_dir: Path):
    """The study's storage: Optuna's journal file in ``out_dir`` (file locks let several processes share it)."""
    optuna_module()  # a one-line error without Optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = out_dir / JOURNAL
    os.close(open_no_link(journal, "a"))  # created or checked here: Optuna opens it by name and would follow a link
    return JournalStorage(JournalFileBackend(str(journal)))


def pruner(prune: bool):
    optuna = optuna_module()
    return optuna.pruners.MedianPruner(n_startup_trials=4) if prune else optuna.pruners.NopPruner()


def open_study(out_dir: Path, config: dict):
    """Create the study in ``out_dir`` or continue the one there; `ConfigError` if it was made for another search
    configuration (``config``: task, space, fixed settings, objective, direction, pruning)."""
    optuna = optuna_module()
    study = optuna.create_study(storage=storage_of(out_dir), study_name=STUDY, direction=config["direction"],
                                load_if_exists=True, pruner=pruner(config["prune"]))
    found = study.user_attrs.get("config")
    if found is None:
        study.set_user_attr("config", config)
    elif found != config:
        diffs = [f"{k} {found.get(k)!r} (asked: {config[k]!r})" for k in config if found.get(k) != config[k]]
        raise ConfigError(f"--out {str(out_dir)!r} holds a search of another configuration: {'; '.join(diffs)}; "
                          "give the same options to continue it, or another --out (nothing is overwritten)")
    return study


def space_record(dims: list[Dimension]) -> list[dict]:
    """The space as JSON (for the study's configuration)."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(d).items()} for d in dims]


@contextmanager
def exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (blocking): one process at a time counts and asks for trials."""
    import fcntl

    fd = open_no_link(lock_path, "lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def trial_specs(study, out_dir: Path, trials: int, dims: list[Dimension], base: dict,
                asked: dict) -> Iterator[dict]:
    """A spec per new trial while the study (all processes together) holds fewer than ``trials``; each asked trial
    is kept in ``asked`` (number → trial) for `tell`."""
    while True:
        with exclusive(out_dir / ".search.lock"):
            fail_orphans(study)
            if counted_trials(study) >= trials:
                return
            trial = study.ask()
            trial.set_user_attr("owner", owner())
        asked[trial.number] = trial
        run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
        yield {**base, "trial": trial.number, "params": suggest(trial, dims), "run_dir": str(run_dir.resolve()),
               "journal_dir": str(out_dir.resolve())}


def owner() -> dict:
    """The process that asks for a trial and tells its end: host and process id."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_orphans(study) -> None:
    """Mark FAIL (``orphaned``) the running trials whose asking process, on this host, has ended (a search killed
    mid-trial): nobody will tell their end. Trials asked on other hosts cannot be checked from here."""
    optuna = optuna_module()
    here = socket.gethostname()
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = frozen.user_attrs.get("owner") or {}
        if who.get("host") == here and isinstance(who.get("pid"), int) and not _alive(who["pid"]):
            optuna.trial.Trial(study, frozen._trial_id).set_user_attr("orphaned", True)
            study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)


def counted_trials(study) -> int:
    """The trials that count toward ``--trials``: all but those orphaned by a killed search (never run to an end)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("orphaned"))


def tell(study, trial, result: dict) -> None:
    """Record a finished trial: its value (complete), its last reported value (pruned) or its error (failed)."""
    optuna = optuna_module()
    for key in ("steps", "seconds", "run_dir", "error"):
        if key in result:
            trial.set_user_attr(key, result[key])
    if result["state"] == "complete":
        study.tell(trial, result["value"])
    elif result["state"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


class PruningHook:
    """`Trainer.stop_when` for a trial on a worker: at each validation, report the objective to the study at the
    trainer's step, and stop the trial (``pruned``) when the pruner says it is hopeless."""

    def __init__(self, spec: dict, trainer):
        optuna = optuna_module()
        storage = storage_of(Path(spec["journal_dir"]))
        study = optuna.load_study(study_name=STUDY, storage=storage, pruner=pruner(spec["prune"]))
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(STUDY),
                                                                   spec["trial"])
        self.trial, self.trainer, self.objective = optuna.trial.Trial(study, trial_id), trainer, spec["objective"]
        self.pruned = False

    def __call__(self, metrics: dict) -> bool:
        trainer = self.trainer
        self.trial.report(objective_value(metrics, self.objective), trainer.updates)
        ending = trainer.finished() or trainer.elapsed >= trainer.deadline  # a trial at its budget is complete
        self.pruned = not ending and self.trial.should_prune()
        return self.pruned


def objective_value(metrics: dict, name: str) -> float:
    if name not in metrics:
        scalars = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
        raise ConfigError(f"--objective {name!r} is not a validation metric of this task (expected one of: {scalars})")
    return float(metrics[name])


def run_search(study, out_dir: Path, trials: int, dims: list[Dimension], base: dict,
               run_trial: Callable[[dict], dict], executor, log=print) -> None:
    """Ask, run and tell trials until the study holds ``trials``: at most as many at once as ``executor`` runs
    (`rnnkit.training.executors.slots`); ``run_trial`` is a module-level function of a spec (it pickles). A bar
    over the study's trials on a terminal (``log`` lines are best printed through `progress.note`)."""
    from .executors import run_windowed, slots
    from .progress import progress

    asked: dict = {}
    specs = trial_specs(study, out_dir, trials, dims, base, asked)
    bar = progress(total=trials, initial=min(counted_trials(study), trials), desc="search", unit="trial")
    with bar:  # the study's trials, those of other processes on it included at the start
        for spec, result in run_windowed(executor, run_trial, specs, slots(executor)):
            tell(study, asked.pop(spec["trial"]), result)
            bar.update(1)
            log(f"trial {spec['trial']}: {trial_outcome(spec, result, base['objective'])}")


def trial_outcome(spec: dict, result: dict, objective: str) -> str:
    """``lr 0.003, hidden_size 64: val_loss 1.2345``, ``…: pruned at update 200`` or ``…: failed: why``."""
    shown = ", ".join(f"{k} {format_value(v)}" for k, v in spec["params"].items())
    outcome = f"{objective} {result['value']:.4f}" if result["state"] == "complete" else \
        f"pruned at update {result['steps']}" if result["state"] == "pruned" else f"failed: {result['error']}"
    return f"{shown}: {outcome}"


def format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}


def summary(study, dims: list[Dimension], objective: str) -> str:
    """A Markdown table of the study's trials, the best first (then pruned, failed and running ones)."""
    sign = -1 if study.direction.name == "MAXIMIZE" else 1
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: (
        ORDER.get(t.state.name, 5), sign * t.value if t.value is not None else 0.0, t.number))
    header = ["trial", "state", objective, "updates", "seconds", *(d.name for d in dims)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in trials:
        last = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                    if t.intermediate_values else None)
        cells = [str(t.number), t.state.name.lower(), "–" if last is None else f"{last:.4f}",
                 str(t.user_attrs.get("steps", "–")), format_value(t.user_attrs.get("seconds", "–")),
                 *(format_value(t.params[d.name]) if d.name in t.params else "–" for d in dims)]
        lines.append("| " + " | ".join(cells) + " |")
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return "\n".join(lines) + "\n\n" + f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in
                                                                            counts.items()) + "\n"


def best_trial(study):
    """The best complete trial, or None when no trial has completed."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return study.best_trial if complete else None
