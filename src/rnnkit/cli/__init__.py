"""The ``rnnkit`` command: ``train``; ``sample``, ``eval``, ``classify``, ``tag``, ``translate``, ``export``;
``experiment``, ``diagnose``, ``visualize``; ``gradcheck``, ``bench``, ``info``.

One module per command group — `train`, `apply` (using a trained model), `study` (experiments and diagnostics),
`check` (gradients and speed) — with the shared helpers in `common` and the options generated from the config
dataclasses in `options`. The submodules never import this package, so there is no import cycle.

Errors caused by the user (an `rnnkit.errors.RnnkitError`: flags, data, checkpoints) and click's usage errors
print one line, ``rnnkit: error: ...``, and exit with status 2; nothing already on disk is overwritten. Any other
exception is a bug and keeps its traceback. ``RNNKIT_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import RnnkitError, TrainingInterrupted
from . import apply, check, study, train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rnnkit")
def cli():
    """rnnkit: recurrent neural networks from first principles (NumPy)."""


COMMANDS = (train.train, apply.sample, apply.evaluate, apply.classify, apply.tag, apply.translate, apply.export,
            study.experiment, study.diagnose, study.visualize, check.gradcheck_command, check.bench, check.info)
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


def main(argv=None) -> None:
    """Entry point: one-line errors with exit status 2 for user errors; a bug keeps its traceback. Run as a
    program (``argv`` None), it first makes sure OpenBLAS uses the widest kernels the CPU supports."""
    if argv is None:
        restart_with_best_blas()
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
