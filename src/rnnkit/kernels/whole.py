"""The whole-sequence products a · W of the recurrent layers on panels: X W_ihᵀ (the input projection) and δXP W_ih
(δX), where a has T·B rows and W is a weight, on the panels route (`rnnkit.kernels.backend.PRODUCTS`).

Why. These products are a third to half of a layer's time where its loop does not hide them: a bidirectional
layer's two directions, each on one core with one BLAS thread (`rnnkit.kernels.parallel.pair`), a batch run as two
halves (`rnnkit.recurrent.halves`), a team's projection before its loop. NumPy's OpenBLAS ran them at 68 – 97
GFLOP/s on one core of the project's AMD EPYC (Zen 4); the panels' micro-kernel, which runs the loop's products at
a core's peak (`rnnkit.kernels.panels`), runs them at 80 – 113 on one core once a is taken in blocks of rows that stay
in the core's L2 cache while every panel of W passes over them (`block_rows`; without the blocks, a 6,400 × 512 ·
512 × 2,048 product fell to 85 GFLOP/s, a streamed once per panel): 0 – 30% faster at every shape measured, from
2^22 multiply-adds on (docs/performance-history.md, part 35).

Threads, and the same bits. Every element of a product on panels is one chain of fused multiply-adds over the whole
depth, in order, whichever thread, block and tile makes its row. OpenBLAS sums in that order below a depth of
`DEEP` (the same bits, float32 and float64); deeper, in blocks of it. So where one BLAS thread is allowed (inside a
pair, a batch's half, ``--threads 1``) every product here runs on the panels, on that thread. Where two are allowed, a
product shallower than `DEEP` stays on OpenBLAS's two threads — splitting rows between the cores costs a thread
hand-off of about 0.1 ms (`rnnkit.kernels.parallel.on_both_cores`), and OpenBLAS on two threads was as fast or faster
at most of these shapes (1,600 × 128 · 128 × 512: 1.2 ms against 2.2) — and gives the panels' bits anyway; a
deeper one runs on the panels, its rows split between the two cores, so that a direction in a pair computes what it
computes in turn, and a team's projection what a pipeline's writer and each half's projection compute, to the bit,
at any input width (on two threads 0.90 – 1.14× OpenBLAS's speed at the deep shapes measured).

Where (`applies`): float32 or float64 arrays with a's rows contiguous (a transposed view, δXPᵀ of the weight
gradients, keeps NumPy's GEMM), `MIN_WORK` multiply-adds or more, on the panels route and with the compiled kernels
selected (`rnnkit.kernels.active`): the NumPy path stays the oracle. `rnnkit.recurrent.products.matmul` asks.
"""

from __future__ import annotations

import numpy as np

from . import backend, panels, parallel
from .jit import JIT, njit
from .team import new_sync

#: the least multiply-adds (m · k · n) of a product taken to the panels: below it, packing W is a larger share of the
#: product than its gain
MIN_WORK = 1 << 22
#: the depth (a's columns) from which OpenBLAS sums a product in blocks, not in one chain as the panels do: measured
#: the same bits up to 385 (float32) and 384 (float64), different at 512 and 385
DEEP = 384
#: bytes of a's rows in one block (`block_rows`): half of the Zen 4 core's 1 MiB L2, which also holds the panel
#: being read (k · 128 bytes). Measured, one core, float32, GFLOP/s by rows a block: 1,600 × 1,024 · 1,024 × 64:
#: 64 rows 112.4, 256 rows 111.8, all 109.5; 3,200 × 512 · 512 × 1,024: 108.1, 106.9, 99.9; 6,400 × 512 · 512 ×
#: 2,048: 110.3, 104.8, 85.0; 1,600 × 64 · 64 × 1,024: 91.7, 95.0, 98.5 (NumPy: 87.7, 97.2, 99.6, 89.9)
BLOCK_BYTES = 1 << 18


def applies(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> bool:
    """Whether a @ b (into ``out``) runs on panels here, the compiled kernels being selected (the caller's to ask):
    on one BLAS thread from `MIN_WORK` on, on two from a depth of `DEEP` on (the module notes)."""
    if backend.PRODUCTS != "panels" or a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype:
        return False
    if a.dtype not in panels.DTYPES or (out is not None and (out.dtype != a.dtype or out.strides[1] != out.itemsize)):
        return False
    m, k = a.shape
    if m * k * b.shape[1] < MIN_WORK or a.strides[1] != a.itemsize:
        return False
    return k >= DEEP or parallel.blas_threads() < 2


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
