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
import threading
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path

import numpy as np

_ROW_MAJOR, _COLUMN_MAJOR, _A_MATRIX = 101, 102, 161  # CBLAS_LAYOUT, CBLAS_IDENTIFIER
_NO_TRANS, _TRANS = 111, 112  # CBLAS_TRANSPOSE
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


@contextmanager
def local_threads(count: int):
    """MKL's thread count for the products the calling thread makes inside the block (``mkl_set_num_threads_local``;
    the previous count back after it). threadpoolctl's limit (``mkl_set_num_threads``) did not keep two threads'
    products on one MKL thread each: two team parts at once, each multiplying 16 × 256 · 256 × 512 on its own packed
    columns, took 233 µs a step, against 31 µs for one part alone and 36 µs for the two with a local count of 1."""
    handle = library()
    previous = handle.MKL_Set_Num_Threads_Local(count)
    try:
        yield
    finally:
        handle.MKL_Set_Num_Threads_Local(previous)


_ADVICE = threading.Lock()  # NumPy's huge-page switch, turned off for one allocation at a time (`buffer`)


@cache
def _gemm_routines() -> dict:
    """MKL's ILP64 CBLAS ``cblas_?gemm_64`` by dtype, typed for ctypes."""
    handle, routines = library(), {}
    for dtype, letter, scalar in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
        routine = getattr(handle, f"cblas_{letter}gemm_64")
        size = ctypes.c_int64
        routine.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, size, size, size, scalar, ctypes.c_void_p, size,
                            ctypes.c_void_p, size, scalar, ctypes.c_void_p, size]
        routine.restype = None
        routines[np.dtype(dtype)] = routine
    return routines


def _operand(matrix: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS's transpose flag, leading dimension) of a row-major operand: rows of unit stride as stored, or the
    transposed view of such an array (columns of unit stride) with the 'T' flag; None for any other layout."""
    rows, columns = matrix.shape
    item, (down, across) = matrix.itemsize, matrix.strides
    if down < 0 or across < 0:
        return None
    if columns == 1 or across == item:
        return _NO_TRANS, max(down // item if rows > 1 else columns, columns)
    if rows == 1 or down == item:
        return _TRANS, max(across // item if columns > 1 else rows, rows)
    return None


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool) -> bool:
    """out = a @ b, or out += a @ b with ``accumulate``, on MKL's threads (``cblas_?gemm_64``): a (m, k) and b
    (k, n) each with rows or columns of unit stride, out (m, n) with rows of unit stride, one dtype (float32 or
    float64), none overlapping another. False, and nothing computed, for any other layout."""
    flags = _operand(a), _operand(b)
    out_layout = _operand(out)
    if None in flags or out_layout is None or out_layout[0] != _NO_TRANS:
        return False
    (m, k), n = a.shape, b.shape[1]
    routine = _gemm_routines()[a.dtype]
    routine(_ROW_MAJOR, flags[0][0], flags[1][0], m, n, k, 1.0, a.ctypes.data, flags[0][1], b.ctypes.data,
            flags[1][1], 1.0 if accumulate else 0.0, out.ctypes.data, out_layout[1])
    return True


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


def buffer(shape: tuple[int, ...]) -> np.ndarray:
    """Bytes (uint8 of ``shape``) for packed copies (`pack`), without NumPy's advice to back them with huge pages.
    MKL asks for far more than it writes and spreads what it writes over it (a 256 × 128 float32 share of a weight,
    128 KiB: 7.6 MiB asked for, 128 KiB written between byte 112 and byte 2,299,887); NumPy advises Linux to back
    arrays of 4 MiB and more with huge pages (``MADV_HUGEPAGE``), and there each packed copy took two 2 MiB pages:
    a team's eight shares of an LSTM's W_hhᵀ and its two of W_hh, 12 MiB more at the peak of a training call at
    B = 16, H = 256 (27.9 against 15.6 MiB without a team). Without the advice: 19.1 against 16.7. From malloc's
    heap as any array, which keeps them for the next call (`rnnkit.allocator`): in pages of their own they were
    mapped afresh each call, 1,288 page faults an LSTM call. The advice is NumPy's global switch, turned off for
    this allocation under a lock (another thread's array made meanwhile may go without it)."""
    with _ADVICE:
        previous = _set_huge_page_advice(False)
        try:
            return np.empty(shape, np.uint8)
        finally:
            _set_huge_page_advice(previous)


def _set_huge_page_advice(enabled: bool) -> bool:
    """NumPy's switch for advising huge pages on large arrays; its previous state (False where NumPy has none)."""
    core = getattr(np, "_core", None) or np.core
    switch = getattr(core.multiarray, "_set_madvise_hugepage", None)
    return bool(switch(enabled)) if switch is not None else False


#: the bytes of a weight below which `pack` packs it on one MKL thread: on two, a small weight's packing waits for
#: MKL's second thread to wake. Measured on the Intel Xeon (Ice Lake server) of docs/performance.md, µs, one
#: thread / two, W_hhᵀ (H, 4H) float32: H = 64 15 / 60, 128 29 / 75, 256 (1 MiB) 106 / 137, 320 (1.56 MiB)
#: 170 / 169, 384 (2.25 MiB) 237 / 212, 512 (4 MiB) 483 / 348; float64: H = 256 (2 MiB) 169 / 185, 320 (3.1 MiB)
#: 250 / 229
ONE_THREAD_PACKS_BELOW = 3 << 19


def pack(matrix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``matrix`` (k, n), a weight on the right of the row-major product out = a · matrix, packed by MKL for
    ``?gemm_compute``: in the column-major view BLAS takes (outᵀ = matrixᵀ · aᵀ) it is the *A* operand, n × k with
    leading dimension its row stride; ``matrix`` may also be a transposed view (unit stride in its columns: W.T of
    a C-contiguous W), packed as the transposed operand with W's row stride, without a contiguous copy of Wᵀ first.
    Into ``out`` (uint8, `packed_size` bytes) where given; on one MKL thread for a weight of fewer bytes than
    `ONE_THREAD_PACKS_BELOW`, else on the calling thread's count. The packed copy must stay where it was packed: its
    layout depends on the buffer's address, and a byte-for-byte copy of it elsewhere gave wrong products (tried:
    copies at 8 to 64 bytes from the original's alignment)."""
    k, n = matrix.shape
    precision = _precision(matrix)
    handle = library()
    scalar = ctypes.c_float if precision == "s" else ctypes.c_double
    packed = buffer((packed_size(matrix),)) if out is None else out
    transposed = matrix.strides[0] == matrix.itemsize and matrix.strides[1] != matrix.itemsize
    if transposed:  # column-major, matrixᵀ (n × k) is the transpose of the k × n array W.T's memory holds
        operand, leading = _TRANS, max(matrix.strides[1] // matrix.itemsize, k, 1)
    else:
        operand, leading = _NO_TRANS, max(matrix.strides[0] // matrix.itemsize, n, 1)
    routine = getattr(handle, f"cblas_{precision}gemm_pack")
    with local_threads(1) if matrix.nbytes < ONE_THREAD_PACKS_BELOW else nullcontext():
        routine(_COLUMN_MAJOR, _A_MATRIX, operand, n, ROWS_HINT, k, scalar(1.0), ctypes.c_void_p(matrix.ctypes.data),
                leading, ctypes.c_void_p(packed.ctypes.data))
    return packed
