"""Execute every notebook of this folder (jupytext percent-format ``NN_*.py``, then one per lecture deck,
``lecture_NN_*.py``) top to bottom, as CI does.

    python3 notebooks/run_all.py                      # execute all, print the time each takes
    python3 notebooks/run_all.py --out docs/notebooks  # and keep the executed .ipynb (the documentation site's)
    python3 notebooks/run_all.py 03_vanishing_gradients.py

Each notebook is converted with jupytext and run by nbclient in a fresh ``python3`` kernel, in this folder as its
working directory. The exit status is 1 when a cell of any notebook raised (its error is printed), else 0. Needs
``pip install -e '.[docs]'`` (jupytext, nbclient, ipykernel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT = 300  # seconds per cell: a notebook is meant to take well under a minute in all
#: the notebooks, in order: the numbered walk-through, then one per lecture deck (in the deck's own notation)
PATTERNS = ("[0-9][0-9]_*.py", "lecture_[0-9][0-9]_*.py")


def all_notebooks() -> list[Path]:
    """Every notebook of this folder (`PATTERNS`), in order."""
    return [path for pattern in PATTERNS for path in sorted(HERE.glob(pattern))]


def notebooks(names=()) -> list[Path]:
    """The notebooks to run: those named (relative to this folder or as paths), else `all_notebooks`."""
    if names:
        return [Path(n) if Path(n).exists() else HERE / n for n in names]
    return all_notebooks()


def execute(path: Path, timeout: int = TIMEOUT):
    """Run the notebook at ``path``; return the executed notebook (nbformat), raising nbclient's
    CellExecutionError when a cell fails."""
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return notebook


def run(paths: list[Path], out: Path | None = None) -> int:
    """Execute ``paths`` in turn (writing each executed notebook as ``out/NAME.ipynb``); the number that failed."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    failed = 0
    for path in paths:
        start = time.perf_counter()
        try:
            notebook = execute(path)
        except CellExecutionError as e:
            failed += 1
            print(f"FAILED {path.name} after {time.perf_counter() - start:.1f} s:\n{e}", flush=True)
            continue
        print(f"ok     {path.name}  {time.perf_counter() - start:6.1f} s", flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, out / path.with_suffix(".ipynb").name)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute the notebooks top to bottom.")
    parser.add_argument("names", nargs="*", help="notebooks to run (default: every NN_*.py and lecture_NN_*.py here)")
    parser.add_argument("--out", type=Path, help="directory for the executed .ipynb notebooks")
    args = parser.parse_args(argv)
    paths = notebooks(args.names)
    failed = run(paths, args.out)
    print(f"{len(paths) - failed} notebooks ran, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
