"""What the ``rnnkit`` command needs before anything heavy is imported: Ctrl-C while it starts (importing NumPy,
numba, the models) prints ``rnnkit: interrupted`` and exits with status 130, as it does later, not a traceback.

Imported first by the package (standard library only). It acts only when this process is the ``rnnkit`` command
(the console script or ``python -m rnnkit``) and SIGINT has Python's own handler (an inherited "ignore" is kept);
`rnnkit.cli.main` puts Python's handler back once the command runs, so a library user's Ctrl-C is never touched.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_STATUS = 130  # the shell's 128 + SIGINT


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"rnnkit: interrupted\n")
    os._exit(INTERRUPTED_STATUS)


def is_command() -> bool:
    """True in the ``rnnkit`` console script and in ``python -m rnnkit``."""
    argv = getattr(sys, "orig_argv", sys.argv)
    as_module = any(a == "-m" and b in ("rnnkit", "rnnkit.cli") for a, b in zip(argv, argv[1:]))
    return as_module or os.path.basename(sys.argv[0] if sys.argv else "") == "rnnkit"


def quiet_interrupt_while_starting() -> None:
    """Install the start-up SIGINT handler in the ``rnnkit`` command (see the module's note)."""
    if is_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def started() -> None:
    """The command runs: Ctrl-C raises KeyboardInterrupt again (its handlers finish an update and checkpoint)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


quiet_interrupt_while_starting()
