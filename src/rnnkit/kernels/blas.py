"""BLAS matrix products callable from compiled (numba) code: ``matmul_into(a, b, out, accumulate)``.

The whole-sequence loop (`rnnkit.kernels.sequence_loop`) does the recurrent product of every time step inside
compiled code, so it cannot call NumPy's ``@``. It calls ``sgemm``/``dgemm`` directly, through a function pointer.

Which BLAS: the one NumPy itself uses, where it exports its Fortran ``?gemm`` (NumPy's wheels bundle an ILP64
OpenBLAS whose ``scipy_sgemm_64_`` / ``scipy_dgemm_64_`` take 64-bit integers). Then the loop's products and NumPy's
whole-sequence GEMMs share one thread pool: with two OpenBLAS copies loaded, the threads of one spin after each of
its calls while the other's work, and on 2 cores the loop ran up to 2.5× slower (measured: LSTM B = 16, H = 256,
T = 100 training 233 ms against 94 ms for the per-step loop on NumPy's ``@``). Where NumPy's BLAS is not found,
SciPy's ``scipy.linalg.cython_blas`` (32-bit integers) is used, for these reasons:

* it is the BLAS that SciPy (a dependency of numba's linear algebra and of rnnkit's tests) already loads — an
  optimised, multithreaded OpenBLAS in the wheels — so nothing new is installed and no library is searched for by
  file name; its addresses come from ``numba.extending.get_cython_function_address``, the documented route;
* the symbol is registered once with LLVM (``llvmlite.binding.add_symbol``) and declared as an
  ``ExternalFunction``: compiled code refers to it by name, not by an address baked into the machine code, so the
  kernels stay cacheable on disk (``cache=True``; a ctypes function object as a global would forbid that);
* numba's own ``np.dot`` in nopython mode would allocate a new array per product and cannot write into a slice
  of the workspace or accumulate (β = 1); calling ``?gemm`` can.

Convention. BLAS is Fortran: every argument is a pointer and matrices are column-major. A row-major (m, k) array
with row stride ``lda`` *is* its transpose in column-major order, so the row-major product C = A·B is computed as
the column-major Cᵀ = Bᵀ·Aᵀ: ``gemm('N', 'N', n, m, k, 1, B, ldb, A, lda, β, C, ldc)``. Arrays must have unit
stride along their last axis (rows may be strided: a row prefix or a column block of a larger array is fine).
"""

from __future__ import annotations

from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address, overload

from .jit import JIT


def _numpy_gemm_addresses() -> dict[str, int] | None:
    """The addresses of ``sgemm``/``dgemm`` (ILP64) in the OpenBLAS NumPy loaded, or None where it has none."""
    import ctypes

    from threadpoolctl import threadpool_info

    numpy_dir = Path(np.__file__).resolve().parent
    for library in threadpool_info():
        path = Path(library.get("filepath", ""))
        if library.get("internal_api") != "openblas" or numpy_dir.name not in {p.name.split(".")[0] for p in
                                                                                  path.parents}:
            continue
        try:
            handle = ctypes.CDLL(str(path))
            return {name: ctypes.cast(getattr(handle, f"scipy_{name}_64_"), ctypes.c_void_p).value
                    for name in ("sgemm", "dgemm")}
        except (OSError, AttributeError):
            return None
    return None


def _scipy_gemm_addresses() -> dict[str, int]:
    return {name: get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm")}


def _register_symbols() -> str:
    """Register the ``gemm`` of every BLAS found under its own symbol name (``rnnkit_numpy_sgemm``, ...), so that
    code compiled and cached for one never calls the other's integer width, and an unregistered name — a null
    address at run time — cannot happen to code cached in an environment that had both; return the one to use."""
    sources = {"numpy": _numpy_gemm_addresses()}
    try:
        sources["scipy"] = _scipy_gemm_addresses()
    except (ImportError, ValueError):  # no SciPy
        sources["scipy"] = None
    for source, addresses in sources.items():
        for name, address in (addresses or {}).items():
            llvm.add_symbol(f"rnnkit_{source}_{name}", address)
    if sources["numpy"]:
        return "numpy"
    if sources["scipy"]:
        return "scipy"
    raise ImportError("no BLAS gemm found for the compiled loop: NumPy's BLAS exports none and SciPy is not installed")


#: where the products run: "numpy" (NumPy's own OpenBLAS, 64-bit integers) or "scipy" (scipy.linalg.cython_blas)
SOURCE = _register_symbols()
_INTEGER = np.int64 if SOURCE == "numpy" else np.int32
_GEMM_SIGNATURE = types.void(*([types.voidptr] * 13))  # transa, transb, m, n, k, α, A, lda, B, ldb, β, C, ldc
_sgemm = types.ExternalFunction(f"rnnkit_{SOURCE}_sgemm", _GEMM_SIGNATURE)
_dgemm = types.ExternalFunction(f"rnnkit_{SOURCE}_dgemm", _GEMM_SIGNATURE)


def gemm(scalars, transpose, sizes, a, b, out):  # pragma: no cover - replaced by the overload in compiled code
    """Fortran ``?gemm`` in the precision of ``scalars`` (``sgemm`` for float32, ``dgemm`` for float64): the
    column-major Cᵀ = β Cᵀ + α Bᵀ Aᵀ with ``sizes`` = (n, m, k, ldb, lda, ldc) and ``scalars`` = (α, β)."""


def _gemm_call(routine):
    def call(scalars, transpose, sizes, a, b, out):
        routine(transpose.ctypes, transpose.ctypes, sizes[0:].ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
                scalars[0:].ctypes, b.ctypes, sizes[3:].ctypes, a.ctypes, sizes[4:].ctypes, scalars[1:].ctypes,
                out.ctypes, sizes[5:].ctypes)
    return call


@overload(gemm, jit_options=JIT)
def _gemm_overload(scalars, transpose, sizes, a, b, out):
    return _gemm_call(_sgemm if scalars.dtype == types.float32 else _dgemm)


@njit(**JIT)
def _leading(a):
    """The row stride of a 2-D array in elements (BLAS's leading dimension), at least its width and 1. A single row
    has no meaningful row stride (NumPy calls a (1, n) view of a transpose C-contiguous with stride 1 element)."""
    if a.shape[0] == 1:
        return max(a.shape[1], 1)
    return max(a.strides[0] // a.itemsize, 1)


@njit(**JIT)
def matmul_into(a, b, out, accumulate):
    """out = a @ b, or out += a @ b with ``accumulate``. a (m, k), b (k, n), out (m, n), one dtype, each with unit
    stride along its rows. Nothing happens for an empty product (m = 0 or n = 0)."""
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            out[:] = 0
        return
    sizes = np.empty(6, _INTEGER)  # n, m, k, ldb, lda, ldc: the column-major problem Cᵀ = Bᵀ Aᵀ
    sizes[0], sizes[1], sizes[2] = n, m, k
    sizes[3], sizes[4], sizes[5] = _leading(b), _leading(a), _leading(out)
    scalars = np.empty(2, a.dtype)  # α, β
    scalars[0], scalars[1] = 1, 1 if accumulate else 0
    no_transpose = np.empty(1, np.uint8)
    no_transpose[0] = 78  # ord("N")
    gemm(scalars, no_transpose, sizes, a, b, out)
