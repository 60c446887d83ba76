"""What rnnkit needs before anything heavy is imported.

* The ``rnnkit`` command: Ctrl-C while it starts (importing NumPy, numba, the models) prints ``rnnkit:
  interrupted`` and exits with status 130, as it does later, not a traceback.
* Every process: OpenBLAS's idle threads spin for at most 2^`BLAS_SPIN_LOG2` cycles (about 1.6 ms at 2.6 GHz)
  before they sleep, instead of its default 2^28 (about 0.1 s), by setting ``OPENBLAS_THREAD_TIMEOUT`` — never
  over the user's own setting, never with ``RNNKIT_BLAS_AUTO=0``. A loop that runs on both cores
  (`rnnkit.kernels.team`) right after a GEMM on OpenBLAS's two threads otherwise shares a core with OpenBLAS's
  spinning thread: measured at B = 16, H = 256, the LSTM's projection and team loop took 20 – 21 ms, 10.3 – 11.2 ms
  with the bound (`rnnkit.machine.blas_spin_bounded` says whether it holds). OpenBLAS reads the variable when it
  loads and its threads when they start. Where NumPy was imported before rnnkit (``import numpy as np`` first, as
  most programs do), `restart_openblas_threads` has each loaded OpenBLAS with its own threads read its
  environment again and stop them, through two functions OpenBLAS exports for its own load and ``fork()``; they
  start again at its next call that uses them, with the bound. Where that cannot be done (see its conditions), the
  variable stays set all the same: processes this one starts read it when they load OpenBLAS. Measured with NumPy
  imported first, LSTM B = 16, H = 256, T = 100, training / inference: 42.9 / 15.5 ms without the restart (no
  teams), 36.0 / 11.6 with it, 35.9 / 12.1 with rnnkit imported first.
* Every process: numba optimises rnnkit's kernels at level `NUMBA_OPT_LEVEL` (2) instead of its default 3, by
  setting ``NUMBA_OPT`` before numba is imported — never over the user's own setting (the variable, or a
  ``.numba_config.yaml`` in the working directory), never once numba is loaded: numba would then read every
  ``NUMBA_*`` variable again at its next compile and drop settings made in code (``numba.config.X = ...``). A
  layer's first use, which compiles its kernels, took about 10% less (LSTM(8, 16)'s first forward and backward
  9.2 – 9.7 s against 10.2 – 10.7 s, in turns); the kernels ran within a few per cent of level 3 (in-process
  medians in turns, LSTM, GRU, RNN, LN-LSTM and zoneout at B = 16, H = 256 and B = 1, H = 64: the RNN's inference
  at B = 16 up to 4% slower, the LSTM with zoneout's inference at B = 1 10% (0.05 ms)). The variable is numba's,
  so numba code of your own compiled in the same process (or in its children) gets level 2 as well;
  ``NUMBA_OPT=3`` restores numba's default (`rnnkit info` shows the level in effect). Kernels are cached per level
  (`rnnkit.kernels.cache`), so processes at two levels do not evict each other's.

The SIGINT handler acts only when this process is the ``rnnkit`` command (the console script or ``python -m
rnnkit``) and SIGINT has Python's own handler (an inherited "ignore" is kept); `rnnkit.cli.main` puts Python's
handler back once the command runs, so a library user's Ctrl-C is never touched. Imported first by the package
(standard library only; threadpoolctl too where NumPy is already loaded).
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_STATUS = 130  # the shell's 128 + SIGINT
#: log2 of the cycles OpenBLAS's idle threads spin before they sleep, where rnnkit sets it
BLAS_SPIN_LOG2 = 22
#: numba's optimisation level for the kernels, where rnnkit sets it (``NUMBA_OPT``)
NUMBA_OPT_LEVEL = 2
#: numba's configuration file, read from the working directory (its settings are the user's own)
NUMBA_CONFIG_FILE = ".numba_config.yaml"
#: whether NumPy was loaded before rnnkit (then OpenBLAS read its settings before rnnkit could make any)
NUMPY_LOADED_FIRST = "numpy" in sys.modules
#: the environment variables set when rnnkit was imported (before `bound_blas_spin`)
ENVIRONMENT_AT_START = frozenset(os.environ)
#: OpenBLAS's exported functions that read its environment (as when it loads) and stop its threads (as its fork
#: handler does)
OPENBLAS_RESTART_SYMBOLS = ("openblas_read_env", "blas_thread_shutdown_")


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


def bound_blas_spin(environ=os.environ) -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` to `BLAS_SPIN_LOG2` where the module's note allows it; True where it was set."""
    if "OPENBLAS_THREAD_TIMEOUT" in environ or environ.get("RNNKIT_BLAS_AUTO", "1") == "0":
        return False
    environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_SPIN_LOG2)
    return True


def restart_openblas_threads() -> bool:
    """Have every OpenBLAS loaded in this process with threads of its own (not OpenMP's) read its environment
    again, as it does when it loads (``openblas_read_env``), and stop its threads, as its ``fork()`` handler does
    (``blas_thread_shutdown_``): they start again, with the new settings, at its next threaded call. True where
    there was at least one and each was restarted; nothing is done unless each can be. Not while a thread of the
    program's own runs (any but daemon threads, such as a notebook kernel's): it might be inside OpenBLAS, whose
    call would then wait on a stopped thread. The two functions run holding the GIL, so no other Python thread
    enters NumPy meanwhile; a daemon thread already inside OpenBLAS, or a thread that is not Python's, is the one
    case this cannot see (OpenBLAS's own restart around ``fork()`` has the same limit)."""
    import threading

    if not all(t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        return False
    restarts = _openblas_restarts()
    for read_env, shutdown in restarts:
        read_env()
        shutdown()
    return bool(restarts)


def _openblas_restarts() -> list[tuple]:
    """(read_env, shutdown) of every loaded OpenBLAS, as calls that keep the GIL; empty where any of them runs on
    OpenMP's threads or lacks either function, or threadpoolctl is missing or fails."""
    import ctypes
    import warnings

    try:
        from threadpoolctl import ThreadpoolController

        with warnings.catch_warnings():  # e.g. its note on two OpenMP runtimes: not this module's business
            warnings.simplefilter("ignore")
            libraries = [lib for lib in ThreadpoolController().lib_controllers if lib.internal_api == "openblas"]
        restarts = []
        for lib in libraries:
            functions = [getattr(lib.dynlib, name, None) for name in OPENBLAS_RESTART_SYMBOLS]
            if lib.threading_layer != "pthreads" or None in functions:
                return []
            restarts.append(tuple(ctypes.PYFUNCTYPE(None)(ctypes.cast(f, ctypes.c_void_p).value) for f in functions))
        return restarts
    except Exception:  # a library or a threadpoolctl this code does not know: leave OpenBLAS as it is
        return []


def lighten_numba_optimisation(environ=os.environ, modules=sys.modules, directory: str = ".") -> None:
    """Set ``NUMBA_OPT`` to `NUMBA_OPT_LEVEL` where the module's note allows it (``modules``: those loaded;
    ``directory``: where numba looks for its configuration file)."""
    configured = os.path.isfile(os.path.join(directory, NUMBA_CONFIG_FILE))
    if "NUMBA_OPT" not in environ and "numba" not in modules and not configured:
        environ["NUMBA_OPT"] = str(NUMBA_OPT_LEVEL)


quiet_interrupt_while_starting()
#: whether rnnkit set ``OPENBLAS_THREAD_TIMEOUT`` (not the user, not with ``RNNKIT_BLAS_AUTO=0``)
SPIN_BOUND_SET = bound_blas_spin()
#: whether OpenBLAS's threads were restarted to read the bound (NumPy loaded before rnnkit)
OPENBLAS_RESTARTED = SPIN_BOUND_SET and NUMPY_LOADED_FIRST and restart_openblas_threads()
lighten_numba_optimisation()
