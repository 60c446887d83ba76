"""The teaching kit: ``rnnkit teach student`` (the student version of the notebooks), ``rnnkit teach exercise``
(a step-backward exercise for a defined cell) and ``rnnkit teach grade``.

``student SOURCE... --out DIR`` writes, for every percent-format notebook given (a ``.py`` file with ``# %%``
cells, or every such file in a directory given), the same notebook with each ``### BEGIN SOLUTION`` …
``### END SOLUTION`` region replaced by ``raise NotImplementedError`` (`rnnkit.teaching.student_source`);
``--ipynb`` also writes each as a Jupyter notebook without outputs (needs jupytext). Nothing is overwritten: if a
file to be written exists, the command stops before writing anything.

``exercise FILE.py:NAME --out DIR`` writes ``NAME_step_backward.py``, the step-backward exercise of a cell defined
by its equations (`rnnkit.teaching_defined`), with ``--solution`` also the teacher's version with the derived
solution between the markers, and with ``--ipynb`` each as ``.ipynb``; nothing is overwritten either.

``grade NOTEBOOK...`` runs the cells tagged ``exercise`` of each notebook (a student's ``.py``, or an ``.ipynb``
read with jupytext) in a separate process stopped after ``--timeout`` seconds, and checks every exercise function
against rnnkit's layers (a defined cell's against its derived backward) in this process (`rnnkit.teaching.grade`);
it prints one line per exercise and exits with status 1 when any fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import validate
from ..errors import DataError, DependencyError
from ..teaching import DEFAULT_TIMEOUT, grade, has_solutions, is_percent_notebook, student_source
from ..training.files import atomic_write, make_directory
from .common import fail, refuse_existing
from .options import Checked

SECONDS = Checked(click.FLOAT, validate.seconds, "seconds")


def _read(path: Path) -> str:
    """A notebook's text: a regular UTF-8 file without NUL bytes (a FIFO or a device is refused, never opened)."""
    if not path.is_file():
        raise DataError(f"{str(path)!r} is not a regular file (expected a notebook)")
    try:
        text = path.read_text(encoding="utf-8")
        if "\x00" in text:
            raise DataError(f"{str(path)!r} contains NUL bytes; expected a UTF-8 notebook")
        return text
    except UnicodeDecodeError:
        raise DataError(f"{str(path)!r} is not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{str(path)!r} cannot be read: {e.strerror or e}") from None


def notebooks_in(sources) -> list[Path]:
    """The percent-format notebooks among ``sources`` (files, or directories searched for ``*.py`` notebooks)."""
    found = []
    for source in map(Path, sources):
        if not source.exists():
            fail(f"{str(source)!r} does not exist")
        if source.is_dir():
            found += [p for p in sorted(source.glob("*.py")) if is_percent_notebook(_read(p))]
        elif source.suffix != ".py" or not is_percent_notebook(_read(source)):
            fail(f"{str(source)!r} is not a jupytext percent-format notebook (a .py file with '# %%' cells)")
        else:
            found.append(source)
    if not found:
        fail(f"no percent-format notebooks in {', '.join(map(str, sources))}")
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        fail(f"two notebooks would be written as {twice[0]!r}; give each name once")
    return found


def _jupytext():
    try:
        import jupytext
    except ImportError:
        raise DependencyError("--ipynb and .ipynb notebooks need jupytext: pip install 'rnnkit[docs]'") from None
    return jupytext


@click.group("teach")
def teach():
    """Teaching kit: student versions of the notebooks, exercises for defined cells, and grading."""


@teach.command("student")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for the student versions (created if needed; no file in it is overwritten).")
@click.option("--ipynb", is_flag=True, help="Also write each as a .ipynb notebook without outputs (needs jupytext).")
def student(sources, out, ipynb):
    """Write the student version of the notebooks SOURCES (files or directories): solutions replaced by
    `raise NotImplementedError`."""
    notebooks = notebooks_in(sources)
    versions = {p.name: student_source(_read(p), str(p)) for p in notebooks}
    kinds = {p.name: "exercises removed" if has_solutions(_read(p)) else "no exercises, copied" for p in notebooks}
    write_notebooks(Path(out), versions, kinds, ipynb)


def write_notebooks(out_dir: Path, texts: dict[str, str], notes: dict[str, str], ipynb: bool) -> None:
    """Write each percent-format notebook ``texts[name]`` as ``out_dir/name`` (and as ``.ipynb`` with ``ipynb``),
    printing each with ``notes[name]``; nothing is written when any of the files exists."""
    targets = [out_dir / name for name in texts]
    if ipynb:
        jupytext = _jupytext()
        targets += [(out_dir / name).with_suffix(".ipynb") for name in texts]
    for target in targets:
        refuse_existing(target, "--out: file")
    make_directory(out_dir, "the output directory")
    for name, text in texts.items():
        atomic_write(out_dir / name, text)
        if ipynb:
            notebook = jupytext.reads(text, fmt="py:percent")
            atomic_write((out_dir / name).with_suffix(".ipynb"), jupytext.writes(notebook, fmt="ipynb"))
        click.echo(f"{out_dir / name}  ({notes[name]})")


@teach.command("exercise")
@click.argument("reference", metavar="FILE.py:NAME")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for the exercise (created if needed; no file in it is overwritten).")
@click.option("--ipynb", is_flag=True, help="Also write it as a .ipynb notebook without outputs (needs jupytext).")
@click.option("--solution", is_flag=True,
              help="Also write the teacher's version, NAME_step_backward_solution.py, with the derived solution.")
def exercise(reference, out, ipynb, solution):
    """Write a step-backward exercise for the cell NAME defined in FILE.py (rnnkit.define.cell): a notebook with
    its forward equations, what the student receives, and a function to fill in; `rnnkit teach grade` grades it
    against the derived backward and names the chain rule's path a wrong answer misses."""
    from ..define import load_cell_file
    from ..teaching_defined import exercise_name, exercise_notebook

    definition = load_cell_file(reference)
    teacher = exercise_notebook(definition, reference)
    name = exercise_name(definition)
    texts = {f"{name}.py": student_source(teacher)}
    notes = {f"{name}.py": "the exercise"}
    if solution:
        texts[f"{name}_solution.py"], notes[f"{name}_solution.py"] = teacher, "with the derived solution"
    write_notebooks(Path(out), texts, notes, ipynb)


@teach.command("grade")
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--timeout", type=SECONDS, default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds a notebook's exercises may run before they fail as timed out.")
def grade_command(notebooks, timeout):
    """Check the exercise functions of NOTEBOOKS (.py or .ipynb) against rnnkit's layers (an exercise written by
    `rnnkit teach exercise`: against its cell's derived backward, naming the chain rule's path a wrong answer misses).

    What it guarantees: each notebook's exercise cells run in a separate Python process (python -I), stopped after
    --timeout seconds, that only returns what the exercise functions return (as JSON). The inputs, the expected
    values and the comparison are computed in this process, so a submission that exits, hangs, or replaces
    rnnkit's functions or the checker cannot turn a wrong or missing answer into a PASS.

    What it does not: it is not a security sandbox. The submission runs with your rights and can read, change or
    delete your files and use the network; grade code you do not trust in a container or virtual machine."""
    from ..training.progress import note, progress

    failed = 0
    for name in progress(notebooks, desc="grade", unit="notebook"):
        path = Path(name)
        text = _read(path)
        if path.suffix == ".ipynb":
            jupytext = _jupytext()
            try:
                text = jupytext.writes(jupytext.reads(text, fmt="ipynb"), fmt="py:percent")
            except Exception as e:  # noqa: BLE001 - any unreadable notebook is one line
                fail(f"{name!r} is not a readable .ipynb notebook: {type(e).__name__}")
        if path.suffix not in (".py", ".ipynb") or not is_percent_notebook(text):
            fail(f"{name!r} is not a notebook (expected a .ipynb or a jupytext percent-format .py with '# %%' cells)")
        results = grade(text, timeout)
        if not results:
            note(f"{name}: no graded exercises", err=False)
        for result in results:
            failed += not result.passed
            note(f"{name}: {result.name:<20} {'PASS' if result.passed else 'FAIL'}  {result.message}", err=False)
    sys.exit(1 if failed else 0)
