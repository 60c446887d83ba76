"""The helpers of defined cells that the hand-written kernels do not need, which every generated kernel of a
defined cell imports (`rnnkit.define.codegen.numba_source`): relu and the step function relu′ = [v > 0]. The
generated kernels take the typed constants ``like(x, c)`` (the number c in the precision of ``x``: ``1 - v`` would
promote a float32 expression to float64 and block SIMD, ``like(v, 1.0) - v`` stays float32), σ, tanh, e^x and log
from `rnnkit.kernels.jit`, as the hand-written ones do.

They live in an importable module, not in the generated source, so numba's disk cache can record the generated
kernels' types by reference (a helper defined in each generated file could not be pickled by name).
"""

from __future__ import annotations

from ..kernels.jit import INNER, njit, one, zero


@njit(**INNER)
def relu(x):
    """max(x, 0) in the type of ``x``."""
    return max(x, zero(x))


@njit(**INNER)
def step(x):
    """[x > 0] in the type of ``x`` (relu's derivative through its output)."""
    return one(x) if x > zero(x) else zero(x)
