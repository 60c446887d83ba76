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
stride along their last axis (rows may be strided: a row prefix or a column block of a larger array is fine) —
except B, which may instead be the transposed view of a C-contiguous array (W_hhᵀ as W_hh.T): then it is the
column-major (k, n) array itself, ``gemm('T', 'N', …, B, ldb, …)`` with ``ldb`` its column stride.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import get_cython_function_address, overload

from . import backend
from . import panels as _panels
from .backend import BACKENDS, choose_backend, unreachable  # noqa: F401 - part of this module's interface
from .jit import GLUE, INNER, JIT, any_layout, njit, unliteral
from .panels import panel_product
from .team import own_units


@lru_cache(maxsize=1)
def _numpy_openblas() -> dict:
    """threadpoolctl's record of the OpenBLAS NumPy loaded (its file, version, kernel family), {} where none."""
    from threadpoolctl import threadpool_info

    numpy_dir = Path(np.__file__).resolve().parent
    for library in threadpool_info():
        path = Path(library.get("filepath", ""))
        if library.get("internal_api") == "openblas" and numpy_dir.name in {p.name.split(".")[0] for p in
                                                                              path.parents}:
            return library
    return {}


def _numpy_gemm_addresses() -> dict[str, int] | None:
    """The addresses of ``sgemm``/``dgemm`` (ILP64) in the OpenBLAS NumPy loaded, or None where it has none."""
    path = _numpy_openblas().get("filepath")
    if path is None:
        return None
    try:
        handle = ctypes.CDLL(path)
        return {name: ctypes.cast(getattr(handle, f"scipy_{name}_64_"), ctypes.c_void_p).value
                for name in ("sgemm", "dgemm")}
    except (OSError, AttributeError):
        return None


def _scipy_gemm_addresses() -> dict[str, int]:
    return {name: get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm")}


def _register_symbols(backend: str) -> str:
    """Register each BLAS routine under a name that says its integer width, not its library: ``rnnkit_ilp64_sgemm``
    (NumPy's OpenBLAS, or MKL with ``backend`` ``mkl``: both take 64-bit integers), ``rnnkit_lp64_sgemm``
    (SciPy's), and ``rnnkit_ilp64_sgemm_compute`` (MKL's packed product; where MKL is not used, a routine that
    is never reached: a packed weight exists only with MKL). Code compiled and cached under one backend then calls
    the backend of the process that loads it, and never the wrong integer width. Return the source of the
    ILP64 routines: "numpy", "mkl" or "scipy" (none: SciPy's 32-bit ones)."""
    from . import mkl

    ilp64 = mkl.addresses() if backend == "mkl" else _numpy_gemm_addresses()
    try:
        lp64 = _scipy_gemm_addresses()
    except (ImportError, ValueError):  # no SciPy
        lp64 = None
    for name, address in (lp64 or {}).items():
        llvm.add_symbol(f"rnnkit_lp64_{name}", address)
    for name, address in (ilp64 or {}).items():
        llvm.add_symbol(f"rnnkit_ilp64_{name}", address)
    if backend != "mkl":
        for name in ("sgemm_compute", "dgemm_compute"):
            llvm.add_symbol(f"rnnkit_ilp64_{name}", unreachable("a packed product was called without MKL"))
    if ilp64:
        return backend if backend == "mkl" else "numpy"
    if lp64:
        return "scipy"
    raise ImportError("no BLAS gemm found for the compiled loop: NumPy's BLAS exports none and SciPy is not installed")


#: the BLAS of the compiled loop: "openblas" or "mkl" (`rnnkit.kernels.backend.choose_backend`)
BACKEND = backend.BACKEND
#: the loop's products run on panels (`rnnkit.kernels.panels`); a constant of the compiled code: only the chosen
#: route is compiled into `matmul_weight` (a first use 1 – 1.5 s shorter than with both)
PANELS = backend.PRODUCTS == "panels"
#: the loop's products may run on weights MKL packed (`rnnkit.kernels.mkl`); a constant of the compiled code too:
#: off MKL's route MKL's packed product is not compiled in (on the panels route, a GRU's forward entry at B = 16,
#: H = 256 compiled it for 0.58 s of its first use, for a team's branch that only MKL's packed shares take)
PACKED = BACKEND == "mkl"
#: where the products run: "numpy" (NumPy's own OpenBLAS), "mkl", or "scipy" (scipy.linalg.cython_blas)
SOURCE = _register_symbols(BACKEND)
_INTEGER = np.int64 if SOURCE != "scipy" else np.int32
_WIDTH = "lp64" if SOURCE == "scipy" else "ilp64"
_GEMM_SIGNATURE = types.void(*([types.voidptr] * 13))  # transa, transb, m, n, k, α, A, lda, B, ldb, β, C, ldc
_sgemm = types.ExternalFunction(f"rnnkit_{_WIDTH}_sgemm", _GEMM_SIGNATURE)
_dgemm = types.ExternalFunction(f"rnnkit_{_WIDTH}_dgemm", _GEMM_SIGNATURE)
_COMPUTE_SIGNATURE = types.void(*([types.voidptr] * 12))  # transa, transb, m, n, k, A, lda, B, ldb, β, C, ldc
_sgemm_compute = types.ExternalFunction("rnnkit_ilp64_sgemm_compute", _COMPUTE_SIGNATURE)
_dgemm_compute = types.ExternalFunction("rnnkit_ilp64_dgemm_compute", _COMPUTE_SIGNATURE)


def gemm(scalars, transpose, sizes, a, b, out):  # pragma: no cover - replaced by the overload in compiled code
    """Fortran ``?gemm`` in the precision of ``scalars`` (``sgemm`` for float32, ``dgemm`` for float64): the
    column-major Cᵀ = β Cᵀ + α Bᵀ Aᵀ with ``sizes`` = (n, m, k, ldb, lda, ldc), ``scalars`` = (α, β) and
    ``transpose`` the two operands' flags ('N', or 'T' for a B stored as its transpose)."""


def _gemm_call(routine):
    def call(scalars, transpose, sizes, a, b, out):
        routine(transpose[0:].ctypes, transpose[1:].ctypes, sizes[0:].ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
                scalars[0:].ctypes, b.ctypes, sizes[3:].ctypes, a.ctypes, sizes[4:].ctypes, scalars[1:].ctypes,
                out.ctypes, sizes[5:].ctypes)
    return call


@overload(gemm, jit_options=JIT)
def _gemm_overload(scalars, transpose, sizes, a, b, out):
    return _gemm_call(_sgemm if scalars.dtype == types.float32 else _dgemm)


@njit(**INNER)
def _leading(a):
    """The row stride of a 2-D array in elements (BLAS's leading dimension), at least its width and 1. A single row
    has no meaningful row stride (NumPy calls a (1, n) view of a transpose C-contiguous with stride 1 element)."""
    if a.shape[0] == 1:
        return max(a.shape[1], 1)
    return max(a.strides[0] // a.itemsize, 1)


@njit(**GLUE)
def matmul_into(a, b, out, accumulate):
    """out = a @ b, or out += a @ b with ``accumulate``. a (m, k), b (k, n), out (m, n), one dtype; out with unit
    stride along its rows, a and b each along its rows or along its columns (the transposed view of a C-contiguous
    array: BLAS reads it as stored, with its 'T' flag). Nothing happens for an empty product (m = 0 or n = 0). The
    flag goes on as a variable (`rnnkit.kernels.jit.unliteral`) and the arrays with any layout
    (`rnnkit.kernels.jit.any_layout`): one compiled product for every kind of call."""
    _matmul_into(any_layout(a), any_layout(b), any_layout(out), unliteral(accumulate))


@njit(**INNER)
def _matmul_into(a, b, out, accumulate):
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            out[:] = 0
        return
    flags = np.empty(2, np.uint8)  # the column-major problem Cᵀ = Bᵀ Aᵀ: B's flag, A's
    flags[0], flags[1] = 78, 78  # ord("N")
    sizes = np.empty(6, _INTEGER)  # n, m, k, ldb, lda, ldc
    sizes[0], sizes[1], sizes[2] = n, m, k
    sizes[3], sizes[4], sizes[5] = _leading(b), _leading(a), _leading(out)
    if n > 1 and b.strides[1] != b.itemsize:  # b is stored as its transpose: column j of b is a row
        if k > 1 and b.strides[0] != b.itemsize:
            raise ValueError("matmul_into: b needs unit stride along its rows or along its columns")
        flags[0] = 84  # ord("T")
        sizes[3] = max(b.strides[1] // b.itemsize, 1)
    if k > 1 and a.strides[1] != a.itemsize:  # a is stored as its transpose (a sum over rows: δW = δXPᵀ X)
        if m > 1 and a.strides[0] != a.itemsize:
            raise ValueError("matmul_into: a needs unit stride along its rows or along its columns")
        flags[1] = 84
        sizes[4] = max(a.strides[1] // a.itemsize, 1)
    scalars = np.empty(2, a.dtype)  # α, β
    scalars[0], scalars[1] = 1, 1 if accumulate else 0
    gemm(scalars, flags, sizes, a, b, out)


def compute(scalars, transpose, sizes, packed, a, out):  # pragma: no cover - replaced by the overload
    """MKL's Fortran ``?gemm_compute`` in the precision of ``scalars``: the column-major Cᵀ = β Cᵀ + P Aᵀ with P
    the packed weight, ``transpose`` = ('P', 'N'), ``sizes`` = (n, m, k, lda, ldc) and ``scalars`` = (β,)."""


def _compute_call(routine):
    def call(scalars, transpose, sizes, packed, a, out):
        routine(transpose[0:].ctypes, transpose[1:].ctypes, sizes[0:].ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
                packed.ctypes, sizes[0:].ctypes, a.ctypes, sizes[3:].ctypes, scalars[0:].ctypes, out.ctypes,
                sizes[4:].ctypes)
    return call


@overload(compute, jit_options=JIT)
def _compute_overload(scalars, transpose, sizes, packed, a, out):
    return _compute_call(_sgemm_compute if scalars.dtype == types.float32 else _dgemm_compute)


#: OpenBLAS's kernel families with float32 small-matrix kernels: a product with m·n·k ≤ 10⁶ runs there on one
#: thread without packing either operand. The loop's skinny product h_{t−1} · W_hhᵀ, whose W_hhᵀ is packed again
#: on every call otherwise, runs faster in blocks of ``SMALL_COLUMNS`` columns that take that route, where h_{t−1}
#: has at most ``SMALL_ROWS`` rows and W_hhᵀ k ≤ ``SMALL_DEPTH`` rows. Measured on an AMD EPYC (SkylakeX kernels),
#: µs per product, whole → in 64-column blocks, two BLAS threads / one: 16 × 256 · 256 × 1024: 123 → 79 /
#: 182 → 79; 32 × 256 · 256 × 1024: 147 → 158 / 263 → 157; in the whole layer the blocks were slower or mixed at
#: 32 rows and more (GRU, RNN), at k = 512 and at k = 4H (the backward's δa · W_hh), and those products stay whole,
#: as do products small enough for that route whole (``SMALL_MNK``: an extra call costs about a microsecond,
#: 30% of the LSTM's inference at B = 1, H = 64). The choice does not depend on the thread count, so two directions
#: run at once (one thread each) or in turn (two) still make the same products.
SMALL_KERNEL_CORES = frozenset({"SkylakeX", "Cooperlake", "SapphireRapids"})
SMALL_COLUMNS, SMALL_ROWS, SMALL_DEPTH, SMALL_MNK = 64, 16, 256, 1_000_000


def small_kernels(dtype) -> bool:
    """Whether the loop's skinny products of ``dtype`` run in column blocks on OpenBLAS's small-matrix kernels:
    float32 on NumPy's OpenBLAS with a kernel family of `SMALL_KERNEL_CORES`."""
    return (BACKEND == "openblas" and SOURCE == "numpy" and np.dtype(dtype) == np.float32
            and _numpy_openblas().get("architecture") in SMALL_KERNEL_CORES)


def packs_shares(dtype) -> bool:
    """Whether a team's parts multiply by their own columns of each weight, packed by MKL on their own
    (`loop_weight`'s shares): the MKL backend, float32 or float64."""
    return BACKEND == "mkl" and np.dtype(dtype) in (np.float32, np.float64)


def loop_weight(matrix: np.ndarray, team_blocks: int = 0) -> tuple:
    """A weight for the products of a compiled loop, out = a · ``matrix``: (``matrix``, its MKL-packed copy, small,
    its panels, its team's shares). With the MKL backend: (``matrix``, MKL's packed copy, False, no panels, no
    shares), or, for a loop that runs as a team (``team_blocks`` > 0: the blocks of units its columns hold, see
    `team_share_columns`), no packed copy but each part's columns packed on their own (`rnnkit.kernels.mkl`); on
    OpenBLAS where the processor runs `rnnkit.kernels.panels`: (``matrix``, no packed copy, False, its panels, no
    shares); else (``matrix``, no packed copy, `small_kernels`, no panels, no shares). Packed once per call of the
    loop, used by every step (`matmul_weight`, `matmul_columns`, `matmul_gate_units`): weight 0 of the
    `loop_weights` of the stack of ``matrix`` alone."""
    _, packed, small, panels, shares = loop_weights(matrix[np.newaxis], team_blocks)
    return matrix, packed[0], small, panels[0], shares[0]


def panels_weight(matrix: np.ndarray, panels: np.ndarray) -> tuple:
    """`loop_weight` of ``matrix`` on the panels route (`panels_apply`) with its ``panels`` packed by the caller."""
    return matrix, np.empty(0, np.uint8), False, panels, np.empty((0, 0), np.uint8)


def team_share_columns(columns: int, blocks: int) -> list[tuple[int, int]]:
    """The columns [c0, c1) of share s = part · ``blocks`` + block of a product whose ``columns`` are ``blocks``
    blocks of units (the LSTM's recurrent product: 4, one per gate) split between a team's two parts as
    `rnnkit.kernels.team.own_units` splits them: part p computes its units of every block."""
    hidden = columns // blocks
    units = getattr(own_units, "py_func", own_units)  # the same arithmetic as the compiled parts'
    return [(g * hidden + lo, g * hidden + hi) for part in range(2) for lo, hi in [units(hidden, (part, 2))]
            for g in range(blocks)]


def packs_weights(dtype) -> bool:
    """Whether the loop's products of ``dtype`` read each weight only through what `loop_weight` packs from it once
    a call — its panels (`panels_apply`) or MKL's packed copies (`packs_shares`) — so that a transposed view
    serves as well as a contiguous copy of Wᵀ, and a loop on one core gets its products at a packed GEMM's rate."""
    return panels_apply(dtype) or packs_shares(dtype)


def panels_apply(dtype) -> bool:
    """Whether the loop's products of ``dtype`` run on panels (`rnnkit.kernels.panels`): `PANELS` (OpenBLAS, a
    processor with AVX-512), float32 or float64."""
    return PANELS and np.dtype(dtype) in _panels.DTYPES


#: which weights MKL packs for the loop: "auto" (none of `UNPACKED_UP_TO` elements or fewer) or "all"
#: (`rnnkit.kernels.backend.pack_setting`)
PACK = backend.PACK
#: the most elements of a weight that the loop multiplies by as it is (MKL's ``?gemm`` every step) instead of by
#: a packed copy made once a call: an LSTM's W_hhᵀ up to H = 64, a GRU's up to H = 73, an Elman RNN's up to
#: H = 128. Packing such a weight cost more than it saved: its Python and ctypes calls (buffer, size, thread count,
#: pack) are a fixed cost a call, and MKL's plain product of so small a weight is as fast per step. Measured on
#: the Intel Xeon (Ice Lake server) of docs/performance.md, T = 100 float32, ms a call, packed → as it is,
#: inference / training: LSTM H = 64, B = 1 0.654 → 0.544 / 1.410 → 1.244, B = 16 3.99 → 3.80 / 7.43 → 7.17;
#: GRU H = 64, B = 1 0.762 → 0.537 / 1.792 → 1.538; RNN B = 1, H = 128 0.536 → 0.366 / 1.214 → 1.079; LSTM
#: B = 2, H = 8, T = 5 (a gradient check's call) 0.212 → 0.166 / 0.570 → 0.452. It lost in 6 of the 32 rows
#: measured at this size, by 0.5 – 6%: the LSTM's inference at H = 64, B = 2 and 4 (B = 4: 1.16 → 1.23), its
#: training at B = 4 once (3.13 → 3.27; 2.94 → 2.89 the other time), the GRU's training and the RNN's inference at
#: B = 16 (6.36 → 6.39, 0.95 → 0.97). Larger weights gain from packing: LSTM H = 96 (36,864 elements), B = 16
#: 3.93 → 4.17 and 8.60 → 9.07 unpacked
UNPACKED_UP_TO = 1 << 14


def _packs(matrix: np.ndarray) -> bool:
    """Whether the loop multiplies by MKL's packed copy of ``matrix``: with the MKL backend, more than
    `UNPACKED_UP_TO` elements (any with `PACK` "all"), unit stride in its rows or in its columns (a transposed view,
    which `rnnkit.kernels.mkl.pack` packs as the transposed operand)."""
    unit = matrix.itemsize
    large = matrix.size > (0 if PACK == "all" else UNPACKED_UP_TO)
    return BACKEND == "mkl" and large and unit in matrix.strides


def loop_weights(matrices: np.ndarray, team_blocks: int = 0) -> tuple:
    """`loop_weight` for a stack of weights of one shape, ``matrices`` (L, k, n) (an RHN's L micro-cells): (the
    stack, their MKL-packed copies (L, P), each packed in its own row — (L, 0) without MKL or with shares —, small,
    their panels (L, P, k, width) — (L, 0, 0, 0) without —, their team's shares (L, S, P) — (L, 0, 0) without);
    `weight_at` takes weight l out of it. One array per part instead of a tuple of L weights: numba would compile
    the loop again for every L."""
    count = len(matrices)
    no_packed, no_panels = np.empty((count, 0), np.uint8), np.empty((count, 0, 0, 0), matrices.dtype)
    no_shares = np.empty((count, 0, 0), np.uint8)
    if count and panels_apply(matrices.dtype):
        return matrices, no_packed, False, _panels.pack_stack(matrices), no_shares
    if not count or not _packs(matrices[0]):
        return matrices, no_packed, small_kernels(matrices.dtype), no_panels, no_shares
    from . import mkl

    if team_blocks and matrices.shape[2] % team_blocks == 0:
        return matrices, no_packed, False, no_panels, _pack_shares(matrices, team_blocks)
    packed = mkl.buffer((count, mkl.packed_size(matrices[0])))
    for matrix, row in zip(matrices, packed):
        mkl.pack(matrix, row)  # in place: a packed copy moved elsewhere is not valid (`mkl.pack`)
    return matrices, packed, False, no_panels, no_shares


def _pack_shares(matrices: np.ndarray, blocks: int) -> np.ndarray:
    """Each part's columns of each of ``matrices`` (L, k, n) packed by MKL on their own, (L, 2 · ``blocks``, P):
    row s holds share s of `team_share_columns` (an empty share's row stays unused). A part's products read only
    its own packed columns, on its own core, with one MKL thread each (`rnnkit.kernels.parallel.team`)."""
    from . import mkl

    columns = team_share_columns(matrices.shape[2], blocks)
    size = max(mkl.packed_size(matrices[0][:, c0:c1]) for c0, c1 in columns if c1 > c0)
    shares = mkl.buffer((len(matrices), len(columns), size))
    for matrix, rows in zip(matrices, shares):
        for (c0, c1), row in zip(columns, rows):
            if c1 > c0:
                mkl.pack(matrix[:, c0:c1], row)
    return shares


@njit(**GLUE)
def weight_at(weights, index):
    """Weight ``index`` of a `loop_weights` stack, as `matmul_weight` takes it."""
    matrices, packed, small, panels, shares = weights
    return matrices[index], packed[index], small, panels[index], shares[index]


@njit(**GLUE)
def matmul_weight(a, weight, out, accumulate):
    """out = a @ matrix (or out += with ``accumulate``) for ``weight`` = (matrix, packed, small, panels, shares)
    from `loop_weight`: on the panels where there are some (`rnnkit.kernels.panels`), on the packed copy where there
    is one (MKL), from every share where the weight was packed for a team (MKL: a team whose parts run one after
    the other, where the cores were not free), else `matmul_into`, in blocks of `SMALL_COLUMNS` columns where
    ``small`` and the shape is one that runs faster so (`SMALL_KERNEL_CORES`). The flag goes on as a variable and a,
    out and the matrix with any layout, as in `matmul_into`."""
    matrix, packed, small, panels, shares = weight
    _matmul_weight(any_layout(a), (any_layout(matrix), packed, small, panels, shares), any_layout(out),
                   unliteral(accumulate))


@njit(**INNER)
def _matmul_weight(a, weight, out, accumulate):
    matrix, packed, small, panels, shares = weight
    m, k, n = a.shape[0], matrix.shape[0], matrix.shape[1]
    if n == 0 or m == 0:
        return
    if PANELS:  # a constant: the other routes are not compiled in
        if panels.shape[0] * panels.shape[2] < n:
            raise ValueError("matmul_weight: a weight without its panels on the panels route (blas.loop_weight)")
        if k > 0:
            panel_product(a, panels, out, 0, panels.shape[0], accumulate)
        elif not accumulate:
            out[:] = 0
        return
    if PACKED and shares.shape[0] > 0 and k > 0:  # PACKED a constant, as PANELS
        blocks = shares.shape[0] // 2
        hidden = n // blocks
        for s in range(shares.shape[0]):  # share s = part · blocks + block (`team_share_columns`)
            lo, hi = own_units(hidden, (s // blocks, 2))
            start = (s % blocks) * hidden
            if hi > lo:
                _packed_product(a, shares[s], k, out[:, start + lo:start + hi], accumulate)
        return
    if PACKED and packed.size > 0 and k > 0:
        _packed_product(a, packed, k, out, accumulate)
        return
    blocked = small and 0 < m <= SMALL_ROWS and k <= SMALL_DEPTH and m * k * n > SMALL_MNK
    width = SMALL_COLUMNS if blocked else n
    for j in range(0, n, width):  # the whole product is one block: one compiled matmul_into for both
        matmul_into(a, matrix[:, j:j + width], out[:, j:j + width], accumulate)


@njit(**INNER)
def _packed_product(a, packed, k, out, accumulate):
    """out = a @ W (or out += with ``accumulate``), W (k, n = out's columns) packed by MKL into ``packed``
    (`rnnkit.kernels.mkl.pack`); out may be a block of columns of a wider array."""
    sizes = np.empty(5, np.int64)  # n, m, k, lda, ldc: the column-major problem Cᵀ = P Aᵀ, P = the packed Bᵀ
    sizes[0], sizes[1], sizes[2], sizes[3], sizes[4] = out.shape[1], a.shape[0], k, _leading(a), _leading(out)
    scalars = np.empty(1, a.dtype)  # β
    scalars[0] = 1 if accumulate else 0
    transpose = np.empty(2, np.uint8)
    transpose[0], transpose[1] = 80, 78  # ord("P"): the packed operand; ord("N")
    compute(scalars, transpose, sizes, packed, a, out)


#: the column blocks of a team's share of a product (`rnnkit.kernels.team`): the widest of these whose block
#: takes OpenBLAS's small-matrix route (m·k·width ≤ `SMALL_MNK`), on one thread and without packing W; where none
#: does, the share is one product (16-column blocks, 16 calls a step, made the LSTM's backward at B = 16, H = 512
#: 1.5× slower than one loop; the share whole, 1.15× faster)
TEAM_COLUMNS = (128, 64, 32)


@njit(**GLUE)
def matmul_columns(a, weight, out, team, accumulate):
    """out[:, lo:hi] = a @ matrix[:, lo:hi] (or += with ``accumulate``) for ``weight`` = (matrix, packed, small,
    panels, shares) from `loop_weight` and [lo, hi) the units of ``team``'s part (`rnnkit.kernels.team.own_units`):
    one part's share of a product in a team, on its panels on the panels route (`_share_on_panels`), on its own
    packed columns where the weight was packed for a team of one block (MKL), else from the matrix itself, in column
    blocks that take OpenBLAS's small-matrix route where ``small``, else whole. The plain loop (``team`` None, or a
    share of all the columns): `matmul_weight`."""
    if team is None:
        matmul_weight(a, weight, out, accumulate)
        return
    matrix = weight[0]
    lo, hi = own_units(matrix.shape[1], team)
    if lo == 0 and hi == matrix.shape[1]:
        matmul_weight(a, weight, out, accumulate)
        return
    _share_columns(a, weight, out, lo, hi, accumulate, _share_row(weight[4], 1, team[0], 0))


@njit(**GLUE)
def _share_row(shares, blocks, part, block):
    """The row of a weight's ``shares`` that holds ``part``'s units of ``block`` of ``blocks`` (`team_share_columns`);
    -1 where the weight has none. Shares packed for another number of blocks raise: their columns are not the
    part's."""
    if shares.shape[0] == 0:
        return -1
    if shares.shape[0] != 2 * blocks:
        raise ValueError("matmul_columns / matmul_gate_units: a weight packed for a team of another number of blocks "
                         "(blas.loop_weight's team_blocks)")
    return part * blocks + block


@njit(**GLUE)
def _share_columns(a, weight, out, lo, hi, accumulate, share):
    """out[:, lo:hi] = a @ matrix[:, lo:hi] (or +=) for a `loop_weight`: on its panels on the panels route
    (`_share_on_panels`); on row ``share`` of its shares where it is one (≥ 0: MKL, those columns packed on their
    own); else in the widest of `TEAM_COLUMNS` that takes OpenBLAS's small-matrix route where ``small``, else in one
    product."""
    matrix, small = weight[0], weight[2]
    m, k = a.shape[0], matrix.shape[0]
    if PANELS:  # a constant: the other routes' calls are not compiled in
        _share_on_panels(a, weight[3], out, lo, hi, matrix.shape[1], accumulate)
        return
    if PACKED and share >= 0 and m > 0 and k > 0:  # PACKED a constant: shares are MKL's only
        if hi > lo:
            _packed_product(any_layout(a), weight[4][share], k, out[:, lo:hi], accumulate)
        return
    width = hi - lo
    if small:
        for candidate in TEAM_COLUMNS:
            if m * k * candidate <= SMALL_MNK:
                width = candidate
                break
    for j in range(lo, hi, max(width, 1)):
        end = min(j + width, hi)
        matmul_into(a, matrix[:, j:end], out[:, j:end], accumulate)


@njit(**GLUE)
def _share_on_panels(a, panels, out, lo, hi, n, accumulate):
    """out[:, lo:hi] = a · W[:, lo:hi] (or +=), W (k, n) as its ``panels``: the panels themselves where lo is a
    panel's first column and hi one too or n (no panel crosses into another part's columns); else
    `_share_through_scratch`. No BLAS call is compiled into a loop on the panels route (the fallback that took
    misaligned shares to `matmul_into` compiled it into a first forward entry: 0.7 s of an LSTM's first use)."""
    m, k, w = a.shape[0], panels.shape[1], panels.shape[2]
    if panels.shape[0] * w < n:
        raise ValueError("matmul_columns: a weight without its panels on the panels route (blas.loop_weight)")
    if m == 0 or hi <= lo:
        return
    if k == 0:
        if not accumulate:
            out[:, lo:hi] = 0
        return
    if lo % w == 0 and (hi % w == 0 or hi == n):
        panel_product(a, panels, out, lo // w, (hi + w - 1) // w, accumulate)
    else:
        _share_through_scratch(any_layout(a), panels, any_layout(out), lo, hi, unliteral(accumulate))


@njit(**INNER)
def _share_through_scratch(a, panels, out, lo, hi, accumulate):
    """`_share_on_panels` for a share [lo, hi) that begins or ends inside a panel (a hidden size that is not a
    multiple of the panel's width): the panels that hold it into a scratch array, then its columns into out. Each
    element is the same chain of multiply-adds as in the whole product: the same bits."""
    w = panels.shape[2]
    first, last = lo // w, (hi + w - 1) // w
    scratch = np.empty((a.shape[0], (last - first) * w), out.dtype)
    panel_product(a, panels[first:last], scratch, 0, last - first, False)
    offset = first * w
    for r in range(a.shape[0]):
        row, made = out[r], scratch[r]
        for j in range(lo, hi):
            row[j] = row[j] + made[j - offset] if accumulate else made[j - offset]


@njit(**GLUE)
def matmul_gate_units(a, weight, out, gates, team):
    """out = a @ matrix for the columns of ``team``'s units (`rnnkit.kernels.team.own_units`) in each of
    ``gates`` blocks (G = gates · H columns): a part's share of the recurrent product h_{t−1} · W_hhᵀ in a team;
    the whole product in the plain loop (``team`` None)."""
    if team is None:
        matmul_weight(a, weight, out, False)
        return
    hidden = weight[0].shape[1] // gates
    lo, hi = own_units(hidden, team)
    if hi - lo == hidden:
        matmul_weight(a, weight, out, False)
        return
    for g in range(gates):  # never all the columns of a block here, so each takes the team's blocks
        share = _share_row(weight[4], gates, team[0], g)
        _share_columns(a, weight, out, g * hidden + lo, g * hidden + hi, False, share)
