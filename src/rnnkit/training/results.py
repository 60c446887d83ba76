"""``results.jsonl``: the append-only record of an experiment's finished runs; its table and plot are made from it.

Line 1 is the *header*: what every run in the file shares — the experiment's name, its definition (sizes, rates,
optimizer, evaluation interval) and the command's options (time budget, step budget). Each further line is one
finished run, named by its *key* (``lstm/T100/seed1``: cell, length, seed); the header and the key together fix
the run's numbers, so a key that is in the file is never run again, on this machine or any other.

A command that finds a results file checks its header first: the same experiment and options continue it (more
cells, lengths or seeds are welcome — they are new keys), anything else is refused in one line, and nothing is
overwritten. A line cut short by a kill during its append is dropped (and the file rewritten without it) before
the next append; a damaged line anywhere else is an error, never silently skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, DataError
from .files import append_line, atomic_write

NAME = "results.jsonl"
FORMAT = 1


def run_key(cell: str, length: int, seed: int) -> str:
    """The key of one run within its experiment: ``lstm/T100/seed1`` (``T0`` for a task without lengths)."""
    return f"{cell}/T{length}/seed{seed}"


def _count(v) -> bool:
    return type(v) is int and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: what every run record holds (the table and the resume read them) → (what it must be, in words; the check)
RUN_FIELDS = {
    "key": ("a string", lambda v: isinstance(v, str)),
    "cell": ("a string", lambda v: isinstance(v, str)),
    "length": ("a non-negative integer", _count),
    "seed": ("a non-negative integer", _count),
    "success": ("a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "val_loss": ("a number", _number),
    "baseline": ("a number or null", lambda v: v is None or _number(v)),
    "steps": ("a non-negative integer", _count),
    "seconds": ("a non-negative number", lambda v: _number(v) and v >= 0),
}


def check_run_record(record, where: str) -> None:
    """`DataError` naming ``where`` (file and line) unless ``record`` is a run record: every field of `RUN_FIELDS`
    present with its type and range, and its key the one its cell, length and seed make."""
    if not isinstance(record, dict):
        raise DataError(f"{where} is damaged: a run record must be a JSON object, got {type(record).__name__}")
    missing = [f for f in RUN_FIELDS if f not in record]
    if missing:
        raise DataError(f"{where} is damaged: a run record lacks {', '.join(missing)}")
    for name, (expected, ok) in RUN_FIELDS.items():
        if not ok(record[name]):
            raise DataError(f"{where} is damaged: {name} must be {expected}, got {record[name]!r:.40}")
    if record["key"] != run_key(record["cell"], record["length"], record["seed"]):
        raise DataError(f"{where} is damaged: key {record['key']!r:.40} is not the key of its cell, length and seed "
                        f"({run_key(record['cell'], record['length'], record['seed'])!r:.40})")


def make_header(experiment: str, definition: dict, options: dict) -> dict:
    """The header line: the experiment's name, its definition and the command's options (JSON-normalised, so a
    header read back compares equal)."""
    header = {"rnnkit_results": FORMAT, "experiment": experiment, "definition": definition, "options": options}
    return json.loads(json.dumps(header))


def read_results(path: Path) -> tuple[dict, dict[str, dict], bool]:
    """(header, runs by key, whether a last line cut short by a kill was dropped). `DataError` for a file that is
    not a results file or has a damaged complete line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{str(path)!r} is not UTF-8 text (byte {e.start}); expected an rnnkit results file") from None
    torn = lines.pop() != ""  # every complete line ends with a newline: what follows the last one is torn
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{str(path)!r} line {number} is damaged (expected one JSON record per line, got "
                            f"{line[:40]!r})") from None
    if not records or not isinstance(records[0], dict) or records[0].get("rnnkit_results") != FORMAT:
        raise DataError(f"{str(path)!r} is not an rnnkit results file (expected a first line "
                        f'{{"rnnkit_results": {FORMAT}, ...}})')
    for number, record in enumerate(records[1:], 2):
        check_run_record(record, f"{str(path)!r} line {number}")
    runs = {r["key"]: r for r in records[1:]}
    return records[0], runs, torn


def differences(found: dict, asked: dict) -> list[str]:
    """``name found (asked: ...)`` for each setting in which two headers differ."""
    if found.get("experiment") != asked["experiment"]:
        return [f"experiment {found.get('experiment')!r} (asked: {asked['experiment']!r})"]
    diffs = []
    for part in ("definition", "options"):
        mine, theirs = asked[part], found.get(part, {})
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                diffs.append(f"{name} {theirs.get(name)} (asked: {mine.get(name)})")
    return diffs


class ResultsFile:
    """The results file of one experiment directory, opened to continue it: ``runs`` (finished runs by key) and
    `append` (one finished run, flushed and fsynced)."""

    def __init__(self, path: Path, header: dict, runs: dict[str, dict]):
        self.path, self.header, self.runs = path, header, runs

    @classmethod
    def open(cls, out_dir: Path, header: dict) -> ResultsFile:
        """Create ``out_dir/results.jsonl`` with ``header``, or continue the one there if its header is the same
        (dropping a last line cut short); a `ConfigError` naming the differences otherwise."""
        path = out_dir / NAME
        if not path.exists():
            atomic_write(path, json.dumps(header) + "\n")
            return cls(path, header, {})
        found, runs, torn = read_results(path)
        diffs = differences(found, header)
        if diffs:
            raise ConfigError(f"--out {str(out_dir)!r} holds results of another experiment configuration: "
                              f"{'; '.join(diffs)}; give the same options to continue it, or another --out to "
                              "start a new one (nothing is overwritten)")
        if torn:
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in [found, *runs.values()]))
        return cls(path, header, runs)

    def append(self, record: dict) -> None:
        """Add a finished run (one line, one write, flushed to disk before returning)."""
        append_line(self.path, json.dumps(record) + "\n", sync=True)
        self.runs[record["key"]] = record
