"""The whole-sequence products of the recurrent layers — X W_ihᵀ, δXP W_ih, δXPᵀ X, δXPᵀ H_prev — in one place:
`matmul`, on MKL where MKL runs the compiled loop's products (``RNNKIT_BLAS=mkl``, or unset on an Intel processor
with ``rnnkit[mkl]`` installed: `rnnkit.kernels.backend`), on the loop's panels where those run its products
(a · W with a's rows contiguous: X W_ihᵀ and δXP W_ih, with the compiled kernels selected: `rnnkit.kernels.whole`),
else NumPy's ``@``.

Why. NumPy's ``@`` is the OpenBLAS NumPy bundles. On the Intel Xeon (Ice Lake, AVX-512) this was measured on,
its kernels ran these shapes at about half of MKL's rate on one core and three quarters on two (float32, GFLOP/s,
OpenBLAS → MKL: 1,600 × 256 · 256 × 1,024, an LSTM's projection at B = 16, H = 256, T = 100: one thread 104 → 196,
two 180 → 247; 1,600 × 512 · 512 × 2,048: 103 → 177 and 155 → 202), and a layer's whole-sequence products are a
third to half of its time. With MKL chosen, they run on it: MKL's ILP64 CBLAS through ctypes
(`rnnkit.kernels.mkl.gemm`), which releases the GIL, as NumPy's does, so the two directions of a layer still run at
once (`rnnkit.kernels.parallel.pair`). Below `MKL_WORK` multiply-adds the call's fixed cost is more than MKL saves,
and NumPy's ``@`` takes the product, as it takes operands MKL cannot read as stored (strided along both axes).
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: the least multiply-adds (m · k · n) of a product that goes to MKL
MKL_WORK = 1 << 26


@cache
def _on_mkl() -> bool:
    """Whether MKL runs the compiled loop's products in this process (decided once, as the backend is)."""
    try:
        from ..kernels import backend
    except ImportError:  # numba (and llvmlite) missing: NumPy's products
        return False
    return backend.BACKEND == "mkl"


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray:
    """a @ b, into ``out`` where given, added to ``out`` with ``accumulate``: on MKL's threads where MKL runs the
    compiled loop's products and the product is one of 2-D float32 or float64 arrays of `MKL_WORK` multiply-adds or
    more that MKL reads as stored, on panels where `_on_panels`, else NumPy's. ``out`` must not overlap a or b."""
    if (_on_mkl() and a.ndim == b.ndim == 2 and a.dtype == b.dtype and a.dtype in (np.float32, np.float64)
            and a.shape[0] * a.shape[1] * b.shape[1] >= MKL_WORK and (out is None or out.dtype == a.dtype)):
        from ..kernels import mkl

        target = np.empty((a.shape[0], b.shape[1]), a.dtype) if out is None else out
        if mkl.gemm(a, b, target, accumulate and out is not None):
            return target
    if _on_panels(a, b, out):
        from ..kernels import whole

        return whole.product(a, b, out, accumulate and out is not None)
    if accumulate and out is not None:
        out += a @ b
        return out
    return np.matmul(a, b, out=out)


def _on_panels(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> bool:
    """Whether the compiled kernels are selected and a @ b is one of the products they make on panels
    (`rnnkit.kernels.whole.applies`)."""
    from .. import kernels

    if kernels.active() is None:
        return False
    from ..kernels import whole

    return whole.applies(a, b, out)
