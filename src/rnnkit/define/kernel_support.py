"""The helpers every generated kernel of a defined cell imports (`rnnkit.define.codegen.numba_source`): relu, the
step function relu′ = [v > 0], and ``like(x, c)``, the number c in the precision of ``x``.

They live in an importable module, not in the generated source, so numba's disk cache can record the generated
kernels' types by reference (a helper defined in each generated file could not be pickled by name), and so a
float32 kernel never meets a Python float: ``1 - v`` would promote the whole expression to float64 and block SIMD,
``like(v, 1.0) - v`` stays float32 (the constant is folded at compile time).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..kernels.jit import JIT, one, zero


def like(x, c):  # pragma: no cover - replaced by the overload inside compiled code
    """The constant ``c`` in the floating type of ``x`` (float32 for float32, float64 otherwise)."""


@overload(like, jit_options=JIT)
def _like_overload(x, c):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x, c: np.float32(c)
    return lambda x, c: np.float64(c)


@njit(**JIT)
def relu(x):
    """max(x, 0) in the type of ``x``."""
    return max(x, zero(x))


@njit(**JIT)
def step(x):
    """[x > 0] in the type of ``x`` (relu's derivative through its output)."""
    return one(x) if x > zero(x) else zero(x)
