"""The whole-sequence products a · W of the recurrent layers on panels: X W_ihᵀ (the input projection) and δXP W_ih
(δX), where a has T·B rows and W is a weight, on the panels route (`rnnkit.kernels.backend.PRODUCTS`).

Why. These products are a third to half of a layer's time where its loop does not hide them: a bidirectional
layer's two directions, each on one core with one BLAS thread (`rnnkit.kernels.parallel.pair`), a batch run as two
halves (`rnnkit.recurrent.halves`), a team's projection before its loop. NumPy's OpenBLAS ran them at 87 – 97
GFLOP/s on one core of the project's AMD EPYC (Zen 4), and on two threads it sometimes takes one only (1,600 × 256
· 256 × 1,024, an LSTM's projection at B = 16, H = 256: 95 GFLOP/s on "two"). The panels' micro-kernel, which runs
the loop's products at a core's peak (`rnnkit.kernels.panels`), runs them at 98 – 113 GFLOP/s on one core once a
is taken in blocks of rows that stay in the core's L2 cache while every panel of W passes over them
(`block_rows`; without the blocks, a 6,400 × 512 · 512 × 2,048 product fell to 85 GFLOP/s, a streamed once per
panel), and at 146 – 215 on two (measured in docs/performance-history.md, part 35).

Threads. The rows are split between the BLAS threads allowed now (`rnnkit.kernels.parallel.blas_threads`): two
halves on the two cores (`rnnkit.kernels.parallel.on_both_cores`, with no BLAS limits to set: the product calls
none), one where a pair, team or pipeline holds the cores or one thread is allowed. Every element of the result is
one chain of fused multiply-adds over the whole depth, in order, whichever thread and tile makes its row, so the
result does not depend on the split: a direction that runs in a pair computes what it computes in turn, to the bit.
It is the order OpenBLAS sums in below a depth of 384 (same bits there); deeper, OpenBLAS sums in blocks of it, and
the two differ by rounding.

Where (`applies`): float32 or float64 arrays with a's rows contiguous (a transposed view, δXPᵀ of the weight
gradients, keeps NumPy's GEMM), `MIN_WORK` multiply-adds or more, on the panels route and with the compiled kernels
selected (`rnnkit.kernels.active`): the NumPy path stays the oracle. `rnnkit.recurrent.products.matmul` asks.
"""

from __future__ import annotations

import numpy as np

from . import backend, panels, parallel
from .jit import JIT, njit
from .team import new_sync

#: the least multiply-adds (m · k · n) of a product taken to the panels: below it, packing W and the threads'
#: hand-off are a larger share of the product than its gain
MIN_WORK = 1 << 22
#: bytes of a's rows in one block (`block_rows`): half of the Zen 4 core's 1 MiB L2, which also holds the panel
#: being read (k · 128 bytes). Measured, one core, float32, GFLOP/s by rows a block: 1,600 × 1,024 · 1,024 × 64:
#: 64 rows 112.4, 256 rows 111.8, all 109.5; 3,200 × 512 · 512 × 1,024: 108.1, 106.9, 99.9; 6,400 × 512 · 512 ×
#: 2,048: 110.3, 104.8, 85.0; 1,600 × 64 · 64 × 1,024: 91.7, 95.0, 98.5 (NumPy: 87.7, 97.2, 99.6, 89.9)
BLOCK_BYTES = 1 << 18


def applies(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> bool:
    """Whether a @ b (into ``out``) runs on panels here, the compiled kernels being selected (the caller's to ask):
    see the module notes."""
    if backend.PRODUCTS != "panels" or a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype:
        return False
    if a.dtype not in panels.DTYPES or (out is not None and (out.dtype != a.dtype or out.strides[1] != out.itemsize)):
        return False
    m, k = a.shape
    return m * k * b.shape[1] >= MIN_WORK and a.strides[1] == a.itemsize


def block_rows(depth: int, itemsize: int) -> int:
    """Rows of a in one block: `BLOCK_BYTES` of them, in whole tiles of `rnnkit.kernels.panels.ROWS` rows."""
    rows = BLOCK_BYTES // max(depth * itemsize, 1)
    return max(panels.ROWS, rows // panels.ROWS * panels.ROWS)


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray:
    """a @ b on panels (``out`` += a @ b with ``accumulate``), for operands `applies` accepts; returns ``out`` (a new
    array where None). W = b is packed once (`rnnkit.kernels.panels.pack`), then a's rows are split between the
    threads allowed (the module notes)."""
    m, k = a.shape
    if out is None:
        out, accumulate = np.empty((m, b.shape[1]), a.dtype), False
    packed = panels.pack(b)
    block = block_rows(k, a.itemsize)
    half = (m // 2 + panels.ROWS - 1) // panels.ROWS * panels.ROWS  # the first part in whole tiles

    def part(lo: int, hi: int):
        return lambda: _blocked_product(a[lo:hi], packed, out[lo:hi], block, accumulate)

    if parallel.blas_threads() < 2 or half >= m:
        part(0, m)()
    else:
        parallel.on_both_cores(new_sync(projected=True), part(0, half), part(half, m), part(0, m), blas=False)
    return out


@njit(**JIT)
def _blocked_product(a, packed, out, block, accumulate):
    """out (=, or += with ``accumulate``) a @ W over every panel of W's ``packed`` panels, ``block`` rows of a at a
    time (a block's rows stay in cache while the panels pass over them)."""
    for r in range(0, a.shape[0], block):
        panels.panel_product(a[r:r + block], packed, out[r:r + block], 0, packed.shape[0], accumulate)
