"""Which code runs the pointwise math of a recurrent step: NumPy or the fused compiled kernels.

* ``"numpy"``: the NumPy code inside each cell's ``step`` / ``step_backward`` — the readable definition of the
  math, and the oracle the compiled kernels are tested against;
* ``"compiled"``: `rnnkit.kernels.compiled`, one fused numba pass per step between the same BLAS GEMMs, and for
  every cell of the catalogue the whole time loop in one compiled call
  (`rnnkit.kernels.sequence_loop`, cached on disk), the two directions of a bidirectional layer at once
  (`rnnkit.kernels.parallel`) (needs the ``numba`` package; without it rnnkit says so once and uses NumPy).

The default is ``"compiled"`` where numba is installed. Choose with the environment variable
``RNNKIT_KERNELS=numpy|compiled`` (read at import), or from Python with ``rnnkit.kernels.use("numpy")`` or, for a
block, ``with rnnkit.kernels.using("numpy"): ...``. A call's choice is fixed when its workspace is allocated.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from types import ModuleType

from ..errors import ConfigError

CHOICES = ("compiled", "numpy")
_choice = os.environ.get("RNNKIT_KERNELS", "compiled").strip().lower() or "compiled"
if _choice not in CHOICES:
    raise ConfigError(f"RNNKIT_KERNELS must be one of {', '.join(CHOICES)}, got {_choice!r}")
_compiled: ModuleType | None = None
_unavailable = False


def use(name: str) -> None:
    """Select the implementation of the step math for the calls that follow: ``"compiled"`` or ``"numpy"``."""
    global _choice
    if name not in CHOICES:
        raise ConfigError(f"kernels must be one of {', '.join(CHOICES)}, got {name!r}")
    _choice = name


@contextmanager
def using(name: str):
    """Use ``name`` (``"compiled"`` or ``"numpy"``) inside a block, then restore the previous choice."""
    previous = _choice
    use(name)
    try:
        yield
    finally:
        use(previous)


def selected() -> str:
    """The implementation chosen (``"compiled"`` may still fall back to NumPy; see `active`)."""
    return _choice


def active() -> ModuleType | None:
    """The compiled-kernel module if it is selected and available, else None (the cells' NumPy code)."""
    global _compiled, _unavailable
    if _choice != "compiled" or _unavailable:
        return None
    if _compiled is None:
        try:
            from . import compiled
        except ImportError as e:  # numba missing or incompatible with this NumPy
            _unavailable = True
            print(f"rnnkit: note: compiled kernels unavailable ({e}); using NumPy (pip install numba)",
                  file=sys.stderr)
            return None
        _compiled = compiled
        from ..allocator import keep_large_blocks

        keep_large_blocks()  # large per-call arrays reused instead of page-faulted afresh (rnnkit.allocator)
    return _compiled


def describe() -> str:
    """One line for reports: which implementation runs, the compiler's version, its optimisation level, and
    whether numba inlines without its copies of IR (`rnnkit.kernels.inlining`)."""
    kernels = active()
    if kernels is None:
        return "numpy" + (" (numba unavailable)" if _choice == "compiled" else "")
    import numba

    from .cache import optimisation_level
    from .inlining import installed

    inlining = ", inlining without copies of IR" if installed() else ""
    return f"compiled (numba {numba.__version__}, optimisation level {optimisation_level()}{inlining})"
