"""Intel MKL for the compiled loop's products, where it is installed (``pip install 'rnnkit[mkl]'``): finding and
loading ``libmkl_rt``, the addresses of its ILP64 Fortran routines, and packing a weight matrix once per call.

MKL's *packed* GEMM (``?gemm_pack`` once, ``?gemm_compute`` per product) stores a weight in the blocked layout its
kernels read, so the T per-step products of a recurrence skip re-packing the same weight T times — the part of a
small-M product (M = the batch) that plain ``?gemm`` repeats on every call. `rnnkit.kernels.blas` decides whether
MKL is used (``RNNKIT_BLAS``) and calls these routines by named symbols; this module only finds and packs.

The library is loaded privately (``RTLD_LOCAL``): its symbols never replace those of another BLAS or of PyTorch's
MKL in the process. ``KMP_BLOCKTIME`` defaults to 0 before it loads, so MKL's OpenMP threads sleep right after
each product instead of spinning for 200 ms on the cores that NumPy's OpenBLAS is about to use for the
whole-sequence GEMMs (two spinning thread pools on 2 cores made the loop up to 2.5× slower, see
`rnnkit.kernels.blas`).
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

import numpy as np

_COLUMN_MAJOR, _A_MATRIX, _NO_TRANSPOSE = 102, 161, 111  # CBLAS_LAYOUT, CBLAS_IDENTIFIER, CBLAS_TRANSPOSE
#: the Fortran ILP64 routines the compiled loop calls, by precision
ROUTINES = {"sgemm": "sgemm_64_", "dgemm": "dgemm_64_", "sgemm_compute": "sgemm_compute_64",
            "dgemm_compute": "dgemm_compute_64"}


def library_path() -> Path | None:
    """``libmkl_rt`` of the installed ``mkl`` distribution (PyPI's wheel puts it in ``<prefix>/lib``), or None."""
    from importlib import metadata

    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith("libmkl_rt.so"):
            path = Path(file.locate()).resolve()
            if path.exists():
                return path
    return None


@cache
def library() -> ctypes.CDLL | None:
    """MKL's runtime library, loaded once with RTLD_LOCAL (None where MKL is not installed or does not load)."""
    path = library_path()
    if path is None:
        return None
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    try:
        handle = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
        for name in ("sgemm", "dgemm"):
            getattr(handle, f"cblas_{name}_pack_get_size").restype = ctypes.c_size_t
        return handle
    except (OSError, AttributeError):
        return None


def addresses() -> dict[str, int]:
    """The address of each routine of `ROUTINES` (by its key) in the loaded MKL."""
    handle = library()
    return {key: ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value for key, symbol in ROUTINES.items()}


def intel_cpu() -> bool:
    """Whether the processor is Intel's: MKL's fast kernels are chosen by vendor, and on other processors (AMD EPYC
    here) MKL's products measured slower than OpenBLAS's (docs/performance.md)."""
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


#: the rows of the activations a packed weight is multiplied with, as MKL's packing asks for them; the packed layout
#: of the weight operand does not depend on them (the size MKL asks for is the same for 1 to 64), any count is valid
ROWS_HINT = 64


def _precision(matrix: np.ndarray) -> str:
    """BLAS's letter for the precision of ``matrix``: "s" (float32) or "d" (float64)."""
    return "s" if matrix.dtype == np.float32 else "d"


def packed_size(matrix: np.ndarray) -> int:
    """The bytes MKL's packed copy of ``matrix`` (k, n) takes (`pack`)."""
    k, n = matrix.shape
    return getattr(library(), f"cblas_{_precision(matrix)}gemm_pack_get_size")(_A_MATRIX, n, ROWS_HINT, k)


def pack(matrix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``matrix`` (k, n), a weight on the right of the row-major product out = a · matrix, packed by MKL for
    ``?gemm_compute``: in the column-major view BLAS takes (outᵀ = matrixᵀ · aᵀ) it is the *A* operand, n × k with
    leading dimension its row stride. Into ``out`` (uint8, `packed_size` bytes) where given. The packed copy must
    stay where it was packed: its layout depends on the buffer's address, and a byte-for-byte copy of it elsewhere
    gave wrong products (tried: copies at 8 to 64 bytes from the original's alignment)."""
    k, n = matrix.shape
    precision = _precision(matrix)
    handle = library()
    scalar = ctypes.c_float if precision == "s" else ctypes.c_double
    packed = np.empty(packed_size(matrix), np.uint8) if out is None else out
    leading = max(matrix.strides[0] // matrix.itemsize, n, 1)
    getattr(handle, f"cblas_{precision}gemm_pack")(
        _COLUMN_MAJOR, _A_MATRIX, _NO_TRANSPOSE, n, ROWS_HINT, k, scalar(1.0),
        ctypes.c_void_p(matrix.ctypes.data), leading, ctypes.c_void_p(packed.ctypes.data))
    return packed
