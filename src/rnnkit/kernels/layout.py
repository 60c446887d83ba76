"""Compiled transposes of the weights that every call lays out afresh: W_hhᵀ as a contiguous array for a step's
product, and the panels of Wᵀ (`rnnkit.kernels.panels`) straight from W.

Why. NumPy copies a transposed view element by element in the source's order, so its writes stride across the whole
destination; for the weights of a recurrent layer, whose row lengths are powers of two, those strides fall into a
few cache sets. Measured on the project's machine (AMD EPYC Zen 4), float32, one thread: ``np.ascontiguousarray(W.T)``
of W_hh (2048, 512) took 3.6 ms and of (1024, 256) 0.3 ms — at H = 512 about 9% of an LSTM's B = 16 inference call —
and `rnnkit.kernels.panels.pack` of the transposed view of W_ih (512, 2048) 1.2 ms. Here W_hhᵀ goes in strips of
a few rows (0.8 ms with W_hh in cache, 1.4 ms out of it) and the panels straight from W_ih, panel by panel (0.7 ms,
1.2). Same values, bit for bit (copies).
"""

from __future__ import annotations

import numpy as np

from .jit import JIT, njit

#: rows of ``matrix`` that `transpose` reads together: each column of theirs becomes one short run of a row of the
#: result (8 measured fastest of 4 – 32, and faster than square tiles of 16 – 128, with the matrix in cache and out
#: of it)
STRIP = 8
#: below this many elements NumPy's copy is as fast, and the compiled transpose is not compiled for it
COMPILED_FROM = 1 << 16


def transpose(matrix: np.ndarray) -> np.ndarray:
    """``matrix``ᵀ as a C-contiguous array: a new one, in strips of `STRIP` rows, for a 2-D C-contiguous ``matrix`` of
    at least `COMPILED_FROM` elements; else NumPy's ``ascontiguousarray`` (a view where ``matrix``ᵀ is contiguous
    already)."""
    if matrix.ndim != 2 or not matrix.flags.c_contiguous or matrix.size < COMPILED_FROM:
        return np.ascontiguousarray(matrix.T)
    out = np.empty(matrix.shape[::-1], matrix.dtype)
    _transpose_strips(matrix, out, STRIP)
    return out


@njit(**JIT)
def _transpose_strips(src, out, strip):
    """out = srcᵀ, ``strip`` rows of ``src`` at a time: for each column c, out[c, r0:r1] ← src[r0:r1, c]. The
    strip's rows are read side by side, a few streams the processor prefetches, and each write is a short run."""
    rows, columns = src.shape
    for r0 in range(0, rows, strip):
        r1 = min(r0 + strip, rows)
        for c in range(columns):
            line = out[c]
            for r in range(r0, r1):
                line[r] = src[r, c]


def fill_panels_of_transpose(matrix: np.ndarray, panels: np.ndarray) -> None:
    """panels (P, k, w) ← the panels of ``matrix``ᵀ for a C-contiguous ``matrix`` (n, k): panels[p, i, j] =
    matrix[p·w + j, i], zero past row n (`rnnkit.kernels.panels.pack` of a transposed view)."""
    count, depth, width = panels.shape
    if not matrix.flags.c_contiguous or matrix.shape[1] != depth or count != -(-matrix.shape[0] // width):
        raise ValueError(f"fill_panels_of_transpose: panels of shape {panels.shape} do not hold the transpose of a "
                         f"C-contiguous matrix of shape {matrix.shape}")
    _fill_panels_of_transpose(matrix, panels)


@njit(**JIT)
def _fill_panels_of_transpose(src, panels):
    count, depth, width = panels.shape
    rows = src.shape[0]
    for p in range(count):
        panel = panels[p]
        for j in range(width):
            r = p * width + j
            if r < rows:
                row = src[r]
                for i in range(depth):
                    panel[i, j] = row[i]
            else:
                for i in range(depth):
                    panel[i, j] = 0
