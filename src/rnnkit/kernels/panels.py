"""The compiled loop's skinny products on weights packed into panels: out = a · W, a (m, k) with few rows, W (k, n)
packed once per call of the loop, multiplied at every step by a register-blocked micro-kernel written in LLVM IR.

Why. A step's recurrent product h_{t−1} · W_hhᵀ has a few rows (the batch) and a weight reused by every step. A
BLAS call packs W again on every call, or takes a small-matrix route that reads it with the matrix's own strides:
OpenBLAS on this project's AMD EPYC (Zen 4), one thread, 16 × 256 · 256 × 1024 ran at 46 GFLOP/s, 16 × 256 · 256 ×
512 (a team part's share) at 72. oneDNN's brgemm keeps W packed in each core's cache and runs a micro-kernel on it;
so does this module, and the same products run at 113 – 116 GFLOP/s, about a core's peak (2 fused multiply-adds of
8 float32 a cycle).

Layout. `pack` cuts W into panels of `width` columns (128 bytes: 32 float32 or 16 float64, two 64-byte vectors),
each panel's k rows contiguous: panels (P, k, width), the last zero-padded. A tile is `ROWS` rows of a times one
panel: ``ROWS`` × 2 vector accumulators (16 of the 32 AVX-512 registers) stay in registers over the k steps, each
step loading the panel row's two vectors once and broadcasting one element of each of a's rows into a fused
multiply-add (`_tile_function`). Rows left over (m mod `ROWS`) take tiles of 4, 2 and 1 rows; a last panel narrower
than ``width`` is computed row by row into a scratch tile and copied.

numba itself does not emit this kernel: written as numba loops over packed panels, the accumulators stayed in memory
or were not vectorized (28 and 8 GFLOP/s, docs/performance-history.md). The IR is built in the intrinsic `_tile`,
so the kernels stay cacheable on disk and compile in milliseconds. It asks for 64-byte vectors, so it is used only
where the processor has AVX-512 (`available`): elsewhere LLVM would split each vector and spill the accumulators,
and the loop keeps the BLAS (no machine without AVX-512 was measured).
"""

from __future__ import annotations

from functools import lru_cache

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import JIT, njit

#: bytes of a panel's row: two 64-byte vectors (`width`)
PANEL_BYTES = 128
VECTOR_BYTES = 64
#: rows of a in one tile (tiles of 4, 2 and 1 rows take the rest)
ROWS = 8
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether this processor runs the micro-kernel's 64-byte vectors natively (AVX-512F)."""
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def width(dtype) -> int:
    """Columns in a panel of ``dtype``: 32 float32, 16 float64."""
    return PANEL_BYTES // np.dtype(dtype).itemsize


def applies(dtype) -> bool:
    """Whether products on weights of ``dtype`` run on panels here: float32 or float64, on AVX-512."""
    return np.dtype(dtype) in DTYPES and available()


def pack(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (k, n) as panels (P, k, `width`), P = ⌈n / width⌉, the last panel's missing columns zero."""
    k, n = matrix.shape
    w = width(matrix.dtype)
    full, rest = divmod(n, w)
    panels = np.empty((full + (rest > 0), k, w), matrix.dtype)
    panels[:full] = matrix[:, :full * w].reshape(k, full, w).transpose(1, 0, 2)
    if rest:
        panels[full, :, :rest] = matrix[:, full * w:]
        panels[full, :, rest:] = 0
    return panels


def pack_stack(matrices: np.ndarray) -> np.ndarray:
    """`pack` for each matrix of a stack (L, k, n): (L, P, k, width)."""
    return np.stack([pack(matrix) for matrix in matrices]) if len(matrices) else np.empty((0, 0, 0, 0),
                                                                                           matrices.dtype)


def _tile_function(module: ir.Module, element: ir.Type, rows: int) -> ir.Function:
    """The micro-kernel, defined once per module: ``rows`` rows of out (row stride ldc) at c = (accumulate ? c : 0)
    + a (``rows`` × k, row stride lda) · panel (k × 2 vectors, contiguous), k ≥ 1. Its accumulators are SSA values
    carried around the k loop by φ nodes, so LLVM keeps them in registers."""
    itemsize = 4 if isinstance(element, ir.FloatType) else 8
    lanes = VECTOR_BYTES // itemsize
    name = f"rnnkit_panel_tile_{'f32' if lanes == 16 else 'f64'}_{rows}"
    if name in module.globals:
        return module.globals[name]
    vector, i64, i32 = ir.VectorType(element, lanes), ir.IntType(64), ir.IntType(32)
    pointer = element.as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer, i64, pointer, pointer, i64, i64,
                                                                   ir.IntType(1)]), name)
    function.linkage = "internal"
    a, lda, panel, c, ldc, k, accumulate = function.args
    entry, loop, done = (function.append_basic_block(block) for block in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    builder.branch(loop)
    builder.position_at_end(loop)
    step = builder.phi(i64)
    zero = ir.Constant(vector, [0.0] * lanes)
    sums = [[builder.phi(vector) for _ in range(2)] for _ in range(rows)]
    panel_row = builder.gep(panel, [builder.mul(step, ir.Constant(i64, 2 * lanes))])
    columns = [builder.load(builder.bitcast(builder.gep(panel_row, [ir.Constant(i64, q * lanes)]),
                                            vector.as_pointer()), align=itemsize)
               for q in range(2)]
    fma = cgutils.get_or_insert_function(module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{lanes}{'f32' if lanes == 16 else 'f64'}")
    spread = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    updated = []
    for r in range(rows):
        value = builder.load(builder.gep(a, [builder.add(builder.mul(ir.Constant(i64, r), lda), step)]))
        broadcast = builder.shuffle_vector(builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                                                  ir.Constant(i32, 0)),
                                           ir.Constant(vector, ir.Undefined), spread)
        updated.append([builder.call(fma, [broadcast, columns[q], sums[r][q]]) for q in range(2)])
    following = builder.add(step, ir.Constant(i64, 1))
    step.add_incoming(ir.Constant(i64, 0), entry)
    step.add_incoming(following, loop)
    for r in range(rows):
        for q in range(2):
            sums[r][q].add_incoming(zero, entry)
            sums[r][q].add_incoming(updated[r][q], loop)
    builder.cbranch(builder.icmp_signed("<", following, k), loop, done)
    builder.position_at_end(done)
    for r in range(rows):
        for q in range(2):
            offset = builder.add(builder.mul(ir.Constant(i64, r), ldc), ir.Constant(i64, q * lanes))
            target = builder.bitcast(builder.gep(c, [offset]), vector.as_pointer())
            old = builder.load(target, align=itemsize)
            result = builder.select(accumulate, builder.fadd(old, updated[r][q]), updated[r][q])
            builder.store(result, target, align=itemsize)
    builder.ret_void()
    return function


@intrinsic
def _tile(typingctx, a, panels, p, out, column, accumulate, rows):
    """out[:rows, column:column + width] (=, or += with ``accumulate``) a[:rows] · panels[p], for 2-D arrays of one
    float dtype with unit stride along their rows, panels (P, k, width) C-contiguous, k ≥ 1; ``rows`` a constant."""
    if not isinstance(rows, types.IntegerLiteral):
        return None
    signature = types.void(a, panels, p, out, column, accumulate, rows)

    def codegen(context, builder, sig, args):
        a_type, panels_type, p_type, out_type, column_type, accumulate_type = sig.args[:6]
        a_array = context.make_array(a_type)(context, builder, args[0])
        panel_array = context.make_array(panels_type)(context, builder, args[1])
        out_array = context.make_array(out_type)(context, builder, args[3])
        itemsize = context.get_constant(types.intp, a_type.dtype.bitwidth // 8)
        lda = builder.sdiv(cgutils.unpack_tuple(builder, a_array.strides, 2)[0], itemsize)
        ldc = builder.sdiv(cgutils.unpack_tuple(builder, out_array.strides, 2)[0], itemsize)
        _, depth, panel_width = cgutils.unpack_tuple(builder, panel_array.shape, 3)
        p_value = context.cast(builder, args[2], p_type, types.intp)
        first_column = context.cast(builder, args[4], column_type, types.intp)
        panel = builder.gep(panel_array.data, [builder.mul(builder.mul(p_value, depth), panel_width)])
        c = builder.gep(out_array.data, [first_column])
        function = _tile_function(builder.module, context.get_value_type(a_type.dtype), rows.literal_value)
        flag = context.cast(builder, args[5], accumulate_type, types.boolean)
        builder.call(function, [a_array.data, lda, panel, c, ldc, depth, flag])
        return context.get_dummy_value()

    return signature, codegen


@njit(**JIT)
def panel_product(a, panels, out, first, last, accumulate):
    """out[:, first·w : min(last·w, n)] = a · W (or += with ``accumulate``) over panels first..last − 1 of W's
    `pack` (w = `width`, n = out's columns), a (m, k) with m, k ≥ 1."""
    m, n, w = a.shape[0], out.shape[1], panels.shape[2]
    for p in range(first, last):
        column = p * w
        if column + w > n:
            _narrow_panel(a, panels, p, out, column, accumulate)
            continue
        r = 0
        while r + ROWS <= m:
            _tile(a[r:], panels, p, out[r:], column, accumulate, ROWS)
            r += ROWS
        if r + 4 <= m:
            _tile(a[r:], panels, p, out[r:], column, accumulate, 4)
            r += 4
        if r + 2 <= m:
            _tile(a[r:], panels, p, out[r:], column, accumulate, 2)
            r += 2
        if r < m:
            _tile(a[r:], panels, p, out[r:], column, accumulate, 1)


@njit(**JIT)
def _narrow_panel(a, panels, p, out, column, accumulate):
    """`panel_product` for a last panel narrower than its width: each row's tile into a scratch row, then copied."""
    scratch = np.empty((1, panels.shape[2]), out.dtype)
    for r in range(a.shape[0]):
        _tile(a[r:], panels, p, scratch, 0, False, 1)
        row = out[r]
        for j in range(out.shape[1] - column):
            row[column + j] = scratch[0, j] + row[column + j] if accumulate else scratch[0, j]
