"""The ``rnnkit`` command: ``train``; ``sample``, ``eval``, ``classify``, ``tag``, ``translate``, ``transcribe``,
``export``; ``experiment``, ``search``, ``diagnose``, ``visualize``; ``gradcheck``, ``bench``, ``info``; ``teach``.

One module per command group — `train`, `apply` (using a trained model), `study` (experiments and diagnostics),
`check` (gradients and speed) — with the shared helpers in `common` and the options generated from the config
dataclasses in `options`. The submodules never import this package, so there is no import cycle.

Errors caused by the user (an `rnnkit.errors.RnnkitError`: flags, data, checkpoints) and click's usage errors
print one line, ``rnnkit: error: ...``, and exit with status 2; nothing already on disk is overwritten. Any other
exception is a bug in rnnkit (an internal error): one line says so and names the file its traceback is written to
(``internal-error-<time>.txt`` in the run directory ``--out`` when it exists, else a temporary file), and the exit
status is 70. ``RNNKIT_DEBUG=1`` re-raises every error with its traceback instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from .._startup import started
from ..errors import RnnkitError, TrainingInterrupted
from . import apply, check, derive, search, study, teach, train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rnnkit")
def cli():
    """rnnkit: recurrent neural networks from first principles (NumPy)."""


COMMANDS = (train.train, apply.sample, apply.evaluate, apply.classify, apply.tag, apply.translate, apply.transcribe,
            apply.export, study.experiment, search.search, study.diagnose, study.visualize, check.gradcheck_command,
            check.bench, check.info, teach.teach, derive.derive)
for command in COMMANDS:
    cli.add_command(command)


def restart_with_best_blas() -> None:
    """Restart the command once with ``OPENBLAS_CORETYPE`` set where OpenBLAS chose narrower kernels than this CPU
    safely supports (see `rnnkit.machine`); never when the user set it or ``RNNKIT_BLAS_AUTO=0``."""
    from ..machine import environment_with_best_blas

    env = environment_with_best_blas()
    if env is not None:
        click.echo(f"rnnkit: note: restarting with OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}: OpenBLAS chose "
                   "narrower kernels than this CPU supports (RNNKIT_BLAS_AUTO=0 turns this off)", err=True)
        os.execve(sys.executable, [sys.executable, "-m", "rnnkit", *sys.argv[1:]], env)


INTERNAL_ERROR_STATUS = 70  # EX_SOFTWARE of sysexits.h


def run_directory_of(argv: list[str]) -> Path | None:
    """The existing directory given as ``--out`` in ``argv``, if any."""
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--out="):
            value = arg.partition("=")[2]
        else:
            continue
        if value and Path(value).is_dir():
            return Path(value)
    return None


def report_internal_error(error: BaseException, argv: list[str]) -> None:
    """Write ``error``'s traceback to a new file (``internal-error-*.txt`` in the run directory if there is one,
    else a temporary file; created exclusively, never through a symlink), print one line naming it, exit 70."""
    text = f"rnnkit {' '.join(argv)}\n" + "".join(traceback.format_exception(type(error), error,
                                                                             error.__traceback__))
    run_dir = run_directory_of(argv)
    try:
        fd, name = tempfile.mkstemp(prefix="internal-error-" if run_dir else "rnnkit-internal-error-",
                                    suffix=".txt", dir=run_dir)
    except OSError:  # the run directory is not writable
        fd, name = tempfile.mkstemp(prefix="rnnkit-internal-error-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"rnnkit: internal error (a bug in rnnkit, not in your input): {type(error).__name__}; "
               f"traceback written to {name}", err=True)
    sys.exit(INTERNAL_ERROR_STATUS)


def main(argv=None) -> None:
    """Entry point: one-line errors with exit status 2 for user errors; any other exception is an internal error
    (exit status 70, its traceback written to a file). Run as a program (``argv`` None), it first makes sure
    OpenBLAS uses the widest kernels the CPU supports."""
    if argv is None:
        restart_with_best_blas()
    started()
    try:
        cli.main(args=argv, prog_name="rnnkit", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("rnnkit: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:  # bad flags, bad choices, missing arguments
        click.echo(f"rnnkit: error: {e.format_message()}", err=True)
        sys.exit(2)
    except TrainingInterrupted as e:  # a checkpoint is written: one line, the signal's exit status
        click.echo(f"rnnkit: {e}", err=True)
        sys.exit(e.exit_status)
    except RnnkitError as e:
        if os.environ.get("RNNKIT_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"rnnkit: error: {message}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - anything else is a bug in rnnkit
        if os.environ.get("RNNKIT_DEBUG"):
            raise
        report_internal_error(e, list(sys.argv[1:] if argv is None else argv))
