"""Compiled transposes of the weights that every call lays out afresh: W_hhᵀ as a contiguous array for a step's
product, and the panels of Wᵀ (`rnnkit.kernels.panels`) straight from W.

Why. NumPy copies a transposed view element by element in the source's order, so its writes stride across the whole
destination; for the weights of a recurrent layer, whose row lengths are powers of two, those strides fall into a
few cache sets. Measured on the project's machine (AMD EPYC Zen 4), float32, one thread: ``np.ascontiguousarray(W.T)``
of W_hh (2048, 512) took 3.6 ms and of (1024, 256) 0.3 ms — at H = 512 about 9% of an LSTM's B = 16 inference call —
and `rnnkit.kernels.panels.pack` of the transposed view of W_ih (512, 2048) 1.2 ms.

How. Both go in square blocks of L × L elements, L the elements of 64 bytes (`BLOCK_BYTES`: 16 float32, 8 float64):
a block's L rows are loaded as L vectors, transposed in registers by log₂ L rounds of two-vector shuffles
(`_block_function`), and stored as L vectors, each a row of the result (of W_hhᵀ, or of a panel). Elements of rows
or columns past the last whole block are copied one by one. Measured on the same machine, one thread, W in cache,
ms, float32 / float64, the previous code (element by element: W_hhᵀ in strips of 8 rows, each panel row by row) →
blocks: W_hhᵀ of (1024, 256) 0.20 / 0.20 → 0.07 / 0.11, of (2048, 512) 0.81 / 0.89 → 0.22 / 0.46; the panels of
the view of (1024, 256)ᵀ 0.12 / 0.15 → 0.04 / 0.05, of (2048, 512)ᵀ 0.70 / 0.94 → 0.13 / 0.30. Same values, bit for
bit (copies).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import JIT, njit

#: bytes of a block's row, one vector of the transpose: a cache line, and an AVX-512 register (LLVM splits it where
#: vectors are narrower). Compiled for AVX2 (``NUMBA_CPU_NAME=haswell``) on the project's machine, float32 / float64,
#: ms, (1024, 256) and (2048, 512), the previous code → 64-byte blocks: W_hhᵀ 0.21 / 0.21 and 0.84 / 0.91 → 0.10 /
#: 0.17 and 0.43 / 0.71, the panels 0.12 / 0.15 and 0.69 / 1.02 → 0.05 / 0.07 and 0.18 / 0.34; blocks of 32 bytes
#: (AVX2's vectors) were slower than the previous code for W_hhᵀ in float64 (0.44 and 1.71)
BLOCK_BYTES = 64
#: below this many elements `transpose` and `rnnkit.kernels.panels.pack` use NumPy's copy and do not compile the
#: blocks for it: the blocks are 3 – 7× faster there too (float32, (256, 64) to (256, 256): 3 – 14 against 10 – 59
#: µs), but a call saves tens of µs at most, and compiling them costs a small layer's first use 0.13 – 0.14 s a
#: dtype. (A pipeline's writer fills its panels with the blocks at every size: its compiled call holds them.)
COMPILED_FROM = 1 << 16


def transpose(matrix: np.ndarray) -> np.ndarray:
    """``matrix``ᵀ as a C-contiguous array: a new one, in blocks (`_transpose_blocks`), for a 2-D C-contiguous
    ``matrix`` of at least `COMPILED_FROM` elements; else NumPy's ``ascontiguousarray`` (a view where ``matrix``ᵀ is
    contiguous already)."""
    if matrix.ndim != 2 or not matrix.flags.c_contiguous or matrix.size < COMPILED_FROM:
        return np.ascontiguousarray(matrix.T)
    out = np.empty(matrix.shape[::-1], matrix.dtype)
    _transpose_blocks(matrix, out)
    return out


def fill_panels_of_transpose(matrix: np.ndarray, panels: np.ndarray) -> None:
    """panels (P, k, w) ← the panels of ``matrix``ᵀ for a C-contiguous ``matrix`` (n, k): panels[p, i, j] =
    matrix[p·w + j, i], zero past row n (`rnnkit.kernels.panels.pack` of a transposed view)."""
    count, depth, width = panels.shape
    if not matrix.flags.c_contiguous or matrix.shape[1] != depth or count != -(-matrix.shape[0] // width):
        raise ValueError(f"fill_panels_of_transpose: panels of shape {panels.shape} do not hold the transpose of a "
                         f"C-contiguous matrix of shape {matrix.shape}")
    if not panels.flags.c_contiguous or panels.dtype != matrix.dtype or width % (BLOCK_BYTES // panels.itemsize):
        raise ValueError(f"fill_panels_of_transpose: expected C-contiguous {matrix.dtype} panels a multiple of "
                         f"{BLOCK_BYTES} bytes wide, got {panels.dtype} panels of shape {panels.shape}")
    fill_panels_compiled(matrix, panels)


@njit(**JIT)
def _transpose_blocks(src, out):
    """out = srcᵀ (src (n, k), out (k, n), both C-contiguous): whole blocks by `_block`, a row of blocks of src at a
    time; the rows and columns past them element by element."""
    size = BLOCK_BYTES // src.itemsize
    rows, columns = src.shape
    whole_rows, whole_columns = rows - rows % size, columns - columns % size
    for r0 in range(0, whole_rows, size):
        for c0 in range(0, whole_columns, size):
            _block(src.ctypes.data, r0 * columns + c0, columns, out.ctypes.data, c0 * rows + r0, rows, src[0, 0])
        for c in range(whole_columns, columns):
            for r in range(r0, r0 + size):
                out[c, r] = src[r, c]
    for r in range(whole_rows, rows):
        for c in range(columns):
            out[c, r] = src[r, c]


@njit(**JIT)
def fill_panels_compiled(src, panels):
    """`fill_panels_of_transpose` without its checks (for compiled callers that made them, as
    `rnnkit.kernels.ahead`'s writer): a block's width of each panel's columns at a time (a panel is two vectors wide),
    from as many rows of src, in whole blocks (`_block`) down its depth, the rest of the depth element by element;
    columns past src's last row are zero."""
    size = BLOCK_BYTES // src.itemsize
    count, depth, width = panels.shape
    rows = src.shape[0]
    whole_depth = depth - depth % size
    for p in range(count):
        for j0 in range(0, width, size):
            r0 = p * width + j0
            if r0 + size <= rows:
                for i0 in range(0, whole_depth, size):
                    _block(src.ctypes.data, r0 * depth + i0, depth, panels.ctypes.data, (p * depth + i0) * width + j0,
                           width, src[0, 0])
                first = whole_depth
            else:
                first = 0
            for i in range(first, depth):
                for j in range(size):
                    panels[p, i, j0 + j] = src[r0 + j, i] if r0 + j < rows else 0


@intrinsic
def _block(typingctx, src, src_offset, src_stride, out, out_offset, out_stride, like):
    """out[out_offset + c·out_stride + r] = src[src_offset + r·src_stride + c] for r, c < L, L = `BLOCK_BYTES` /
    the itemsize of ``like``'s type: one block transposed (`_block_function`). ``src`` and ``out`` are addresses
    (integers) of elements of that type; strides in elements."""
    signature = types.void(src, src_offset, src_stride, out, out_offset, out_stride, like)

    def codegen(context, builder, sig, args):
        element = context.get_value_type(sig.args[6])
        pointer = element.as_pointer()
        source, target = (builder.gep(builder.inttoptr(args[i], pointer), [args[i + 1]]) for i in (0, 3))
        itemsize = context.get_abi_sizeof(element)
        function = _block_function(builder.module, element, BLOCK_BYTES // itemsize, itemsize)
        builder.call(function, [source, args[2], target, args[5]])
        return context.get_dummy_value()

    return signature, codegen


def _block_function(module: ir.Module, element: ir.Type, size: int, itemsize: int) -> ir.Function:
    """The block transpose, defined once per module: load ``size`` rows of ``size`` elements as vectors v_r, then for
    s = size/2, size/4, …, 1 replace each pair (v_r, v_{r+s}), r without the bit s, by the pair whose lanes j are
    (v_r[j], v_{r+s}[j − s]) and (v_r[j + s], v_{r+s}[j]) — lanes j without the bit s first, then with it: after
    the last round v_r is column r of the block; store each as a row of out."""
    name = f"rnnkit_transpose_block_{size}x{itemsize}"
    if name in module.globals:
        return module.globals[name]
    i64, i32 = ir.IntType(64), ir.IntType(32)
    vector = ir.VectorType(element, size)
    pointer = element.as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer, i64, pointer, i64]), name)
    function.linkage = "internal"
    src, src_stride, out, out_stride = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))

    def row(base, stride, r):
        return builder.bitcast(builder.gep(base, [builder.mul(ir.Constant(i64, r), stride)]), vector.as_pointer())

    rows = [builder.load(row(src, src_stride, r), align=itemsize) for r in range(size)]
    step = size // 2
    while step:
        low = ir.Constant(ir.VectorType(i32, size), [j + size - step if j & step else j for j in range(size)])
        high = ir.Constant(ir.VectorType(i32, size), [j + size if j & step else j + step for j in range(size)])
        for r in (r for r in range(size) if not r & step):
            first, second = rows[r], rows[r + step]
            rows[r] = builder.shuffle_vector(first, second, low)
            rows[r + step] = builder.shuffle_vector(first, second, high)
        step //= 2
    for r in range(size):
        builder.store(rows[r], row(out, out_stride, r), align=itemsize)
    builder.ret_void()
    return function
