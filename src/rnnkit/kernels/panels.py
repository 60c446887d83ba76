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
than ``width`` stores its columns one by one.

numba itself does not emit this kernel: written as numba loops over packed panels, the accumulators stayed in memory
or were not vectorized (28 and 8 GFLOP/s, docs/performance-history.md). The IR is built in the intrinsic `_tile`,
and the product around it is compiled once per dtype as a C function, cached on disk, that the loops call through a
symbol (`COMPILED`, `panel_product`), as they call the BLAS: linked into each loop entry instead, it made the LSTM's
first use 1.2 – 1.7 s longer. It asks for 64-byte vectors, so it is used only where the processor has AVX-512
(`rnnkit.kernels.backend.PRODUCTS`): elsewhere LLVM would split each vector and spill the accumulators, and the loop
keeps the BLAS (no machine without AVX-512 was measured).
"""

from __future__ import annotations

import mmap

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import backend, layout
from .jit import GLUE, JIT, any_layout, njit

#: bytes of a panel's row: two 64-byte vectors (`width`)
PANEL_BYTES = 128
VECTOR_BYTES = 64
#: arrays of fewer bytes than this that live for part of a call come from malloc's kept heap (`transient`)
HEAP_BELOW = 2 << 20
#: rows of a in one tile (tiles of 4, 2 and 1 rows take the rest)
ROWS = 8
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def width(dtype) -> int:
    """Columns in a panel of ``dtype``: 32 float32, 16 float64."""
    return PANEL_BYTES // np.dtype(dtype).itemsize


def pack(matrix: np.ndarray, allocate=np.empty) -> np.ndarray:
    """``matrix`` (k, n) as panels (P, k, `width`), P = ⌈n / width⌉, the last panel's missing columns zero, in an
    array from ``allocate(shape, dtype)``. The transposed view of a large C-contiguous weight (W_hhᵀ) is packed by
    `rnnkit.kernels.layout.fill_panels_of_transpose`, in blocks: 2.6× faster than NumPy's strided copy at (1024,
    256)ᵀ, 7.6× at (2048, 512)ᵀ (0.04 against 0.10 ms, 0.16 against 1.23; float32, in cache)."""
    k, n = matrix.shape
    w = width(matrix.dtype)
    full, rest = divmod(n, w)
    panels = unfilled(matrix, allocate)
    if matrix.T.flags.c_contiguous and not matrix.flags.c_contiguous and matrix.size >= layout.COMPILED_FROM:
        layout.fill_panels_of_transpose(matrix.T, panels)
        return panels
    panels[:full] = matrix[:, :full * w].reshape(k, full, w).transpose(1, 0, 2)
    if rest:
        panels[full, :, :rest] = matrix[:, full * w:]
        panels[full, :, rest:] = 0
    return panels


def unfilled(matrix: np.ndarray, allocate=np.empty) -> np.ndarray:
    """The panels array of ``matrix`` (k, n), (⌈n / width⌉, k, `width`) from ``allocate(shape, dtype)``, not filled."""
    k, n = matrix.shape
    w = width(matrix.dtype)
    return allocate((-(-n // w), k, w), matrix.dtype)


def unpooled(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An array in pages of its own (an anonymous memory map, filled in by one call where Linux can:
    ``MAP_POPULATE``), returned to the system when it is freed: not kept by malloc for the next call
    (`rnnkit.allocator`), so an array that lives for part of a call adds nothing to the process's high-water mark
    after it. Fresh 4 KiB pages cost the kernel a fault and a zeroing each: 0.25 – 0.36 ms a MiB, on the main thread
    before the loop starts. Not in transparent huge pages: asked for (``MADV_HUGEPAGE``), 4 MiB usually took 0.13 –
    0.17 ms, but Linux compacts memory to make a huge page on the spot, and once a process had churned memory the
    panels' fill took 5 – 10 ms in 3 – 10 of 25 calls (LSTM B = 16, H = 512: 44 ms inference calls in the bench's
    grid against 36), where 4 KiB pages never took over 1.5 ms."""
    count = int(np.prod(shape))
    size = max(count * np.dtype(dtype).itemsize, 1)
    if not hasattr(mmap, "MAP_ANONYMOUS"):  # pragma: no cover - Windows: an anonymous map of the paging file
        return np.frombuffer(mmap.mmap(-1, size), dtype, count=count).reshape(shape)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return np.frombuffer(mmap.mmap(-1, size, flags=flags), dtype, count=count).reshape(shape)


def transient(shape: tuple[int, ...], dtype, backward: bool = True) -> np.ndarray:
    """An array for part of one call (a pipeline's panels of W_ihᵀ, `rnnkit.kernels.ahead`): `unpooled` from
    `HEAP_BELOW` bytes on where a backward follows the call (``backward``), so that it leaves the call's peak once
    freed (from the heap, the GRU's 3 MiB at B = 16, H = 512 took the bench's peak for a training call from 28.6 to
    31.6 MiB, over torch's 30.1); else, and below, from malloc's kept heap (`rnnkit.allocator`), whose pages the
    next call reuses without a fault. LSTM B = 16, H = 256 (1 MiB of panels), inference, in turns, ms: 10.2 – 11.4 in
    `unpooled`'s pages, 9.9 – 10.6 from the heap; the bench's peak for a training call, 15.7 → 18.2 MiB (GRU 12.8 →
    15.9; torch's 25.7 and 19.9): the heap's freed panels are not where the backward's larger arrays fit. Without a
    backward nothing larger follows, and the pages are the cost: an inference call at B = 16, H = 512 mapped its
    4 MiB in 1.6 ms, on the main thread before its loop."""
    if backward and int(np.prod(shape)) * np.dtype(dtype).itemsize >= HEAP_BELOW:
        return unpooled(shape, dtype)
    return np.empty(shape, dtype)


def pack_stack(matrices: np.ndarray) -> np.ndarray:
    """`pack` for each matrix of a stack (L, k, n), L ≥ 1: (L, P, k, width) (one matrix's panels without a copy)."""
    if len(matrices) == 1:
        return pack(matrices[0])[np.newaxis]
    return np.stack([pack(matrix) for matrix in matrices])


def _tile_function(module: ir.Module, element: ir.Type, rows: int) -> ir.Function:
    """The micro-kernel, defined once per module: ``rows`` rows of out (row stride ldc) at c = (accumulate ? c : 0)
    + a (``rows`` × k, row stride lda) · panel (k × 2 vectors, contiguous), k ≥ 1, of which the first ``columns``
    are stored (all of them: two vector stores a row; fewer, the last panel of a matrix: element by element from a
    copy on the stack). Its accumulators are SSA values carried around the k loop by φ nodes, so LLVM keeps them in
    registers."""
    itemsize = 4 if isinstance(element, ir.FloatType) else 8
    lanes = VECTOR_BYTES // itemsize
    name = f"rnnkit_panel_tile_{'f32' if lanes == 16 else 'f64'}_{rows}"
    if name in module.globals:
        return module.globals[name]
    vector, i64 = ir.VectorType(element, lanes), ir.IntType(64)
    pointer = element.as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer, i64, pointer, pointer, i64, i64, i64,
                                                                   ir.IntType(1)]), name)
    function.linkage = "internal"
    a, lda, panel, c, ldc, k, columns, accumulate = function.args
    blocks = {block: function.append_basic_block(block) for block in ("entry", "loop", "done", "full", "narrow")}
    builder = ir.IRBuilder(blocks["entry"])
    spill = builder.alloca(vector, size=2 * rows)
    builder.branch(blocks["loop"])
    builder.position_at_end(blocks["loop"])
    sums = _multiply_add_loop(builder, blocks, vector, a, lda, panel, k, rows)
    builder.position_at_end(blocks["done"])
    builder.cbranch(builder.icmp_signed("==", columns, ir.Constant(i64, 2 * lanes)), blocks["full"],
                    blocks["narrow"])
    builder.position_at_end(blocks["full"])
    for r in range(rows):
        for q in range(2):
            offset = builder.add(builder.mul(ir.Constant(i64, r), ldc), ir.Constant(i64, q * lanes))
            target = builder.bitcast(builder.gep(c, [offset]), vector.as_pointer())
            old = builder.load(target, align=itemsize)
            builder.store(builder.select(accumulate, builder.fadd(old, sums[r][q]), sums[r][q]), target,
                          align=itemsize)
    builder.ret_void()
    builder.position_at_end(blocks["narrow"])
    for r in range(rows):
        for q in range(2):
            builder.store(sums[r][q], builder.gep(spill, [ir.Constant(i64, 2 * r + q)]), align=itemsize)
    _store_narrow(builder, function, builder.bitcast(spill, pointer), c, ldc, columns, accumulate, rows, 2 * lanes)
    builder.ret_void()
    return function


def _multiply_add_loop(builder, blocks, vector, a, lda, panel, k, rows) -> list:
    """The k loop of `_tile_function` (builder in its block "loop"): each step loads the panel's row (two vectors)
    and multiplies-adds the broadcast a[r, step] of each row into that row's two accumulators; ends by branching
    to "done". The accumulators' last values, [row][vector]."""
    i64, i32 = ir.IntType(64), ir.IntType(32)
    lanes = vector.count
    step = builder.phi(i64)
    sums = [[builder.phi(vector) for _ in range(2)] for _ in range(rows)]
    panel_row = builder.gep(panel, [builder.mul(step, ir.Constant(i64, 2 * lanes))])
    itemsize = VECTOR_BYTES // lanes
    columns = [builder.load(builder.bitcast(builder.gep(panel_row, [ir.Constant(i64, q * lanes)]),
                                            vector.as_pointer()), align=itemsize)
               for q in range(2)]
    kind = "f32" if lanes == 16 else "f64"
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{lanes}{kind}")
    spread = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    updated = []
    for r in range(rows):
        value = builder.load(builder.gep(a, [builder.add(builder.mul(ir.Constant(i64, r), lda), step)]))
        lone = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(i32, 0))
        broadcast = builder.shuffle_vector(lone, ir.Constant(vector, ir.Undefined), spread)
        updated.append([builder.call(fma, [broadcast, columns[q], sums[r][q]]) for q in range(2)])
    following = builder.add(step, ir.Constant(i64, 1))
    step.add_incoming(ir.Constant(i64, 0), blocks["entry"])
    step.add_incoming(following, blocks["loop"])
    zero = ir.Constant(vector, [0.0] * lanes)
    for r in range(rows):
        for q in range(2):
            sums[r][q].add_incoming(zero, blocks["entry"])
            sums[r][q].add_incoming(updated[r][q], blocks["loop"])
    builder.cbranch(builder.icmp_signed("<", following, k), blocks["loop"], blocks["done"])
    return updated


def _store_narrow(builder, function, spilled, c, ldc, columns, accumulate, rows, width):
    """c[r, j] = (accumulate ? c[r, j] : 0) + spilled[r · width + j] for j < ``columns``, each row in turn: one
    loop over rows · columns elements."""
    i64 = ir.IntType(64)
    total = builder.mul(ir.Constant(i64, rows), columns)
    before = builder.block
    loop, after = function.append_basic_block("narrow_loop"), function.append_basic_block("narrow_done")
    builder.cbranch(builder.icmp_signed(">", total, ir.Constant(i64, 0)), loop, after)
    builder.position_at_end(loop)
    index = builder.phi(i64)
    row, column = builder.sdiv(index, columns), builder.srem(index, columns)
    value = builder.load(builder.gep(spilled, [builder.add(builder.mul(row, ir.Constant(i64, width)), column)]))
    target = builder.gep(c, [builder.add(builder.mul(row, ldc), column)])
    builder.store(builder.select(accumulate, builder.fadd(builder.load(target), value), value), target)
    following = builder.add(index, ir.Constant(i64, 1))
    index.add_incoming(ir.Constant(i64, 0), before)
    index.add_incoming(following, loop)
    builder.cbranch(builder.icmp_signed("<", following, total), loop, after)
    builder.position_at_end(after)


@intrinsic
def _tile(typingctx, a, a_offset, lda, panels, panel_offset, k, out, out_offset, ldc, columns, accumulate, like,
          rows):
    """out[out_offset + r·ldc + j] (=, or += with ``accumulate``) Σ_s a[a_offset + r·lda + s] ·
    panels[panel_offset + s·width + j] for r < ``rows``, j < ``columns``, s < k (k ≥ 1): one tile. ``a``, ``panels``,
    ``out`` are addresses (void pointers) of elements of the type of ``like`` (float32 or float64); ``rows`` a
    constant."""
    if not isinstance(rows, types.IntegerLiteral):
        return None
    signature = types.void(a, a_offset, lda, panels, panel_offset, k, out, out_offset, ldc, columns, accumulate,
                           like, rows)

    def codegen(context, builder, sig, args):
        element = context.get_value_type(sig.args[11])
        pointer = element.as_pointer()
        a_rows, panel, c = (builder.gep(builder.bitcast(args[i], pointer), [args[i + 1]]) for i in (0, 3, 6))
        function = _tile_function(builder.module, element, rows.literal_value)
        builder.call(function, [a_rows, args[2], panel, c, args[8], args[5], args[9], args[10]])
        return context.get_dummy_value()

    return signature, codegen


#: the C signature of the product: (m, k, a, lda, panels, out, ldc, n, first, last, accumulate), addresses as void
#: pointers, strides in elements
PRODUCT_SIGNATURE = types.void(types.intp, types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr,
                               types.intp, types.intp, types.intp, types.intp, types.boolean)


def _product(like):
    panel_width = PANEL_BYTES // np.dtype(type(like)).itemsize

    def product(m, k, a, lda, panels, out, ldc, n, first, last, accumulate):
        """out[:, first·w : min(last·w, n)] (=, or +=) a · W over panels first..last − 1 of W's `pack`."""
        for p in range(first, last):
            column = p * panel_width
            columns = min(panel_width, n - column)
            panel = p * k * panel_width
            r = 0
            while r + ROWS <= m:
                _tile(a, r * lda, lda, panels, panel, k, out, r * ldc + column, ldc, columns, accumulate, like, ROWS)
                r += ROWS
            if r + 4 <= m:
                _tile(a, r * lda, lda, panels, panel, k, out, r * ldc + column, ldc, columns, accumulate, like, 4)
                r += 4
            if r + 2 <= m:
                _tile(a, r * lda, lda, panels, panel, k, out, r * ldc + column, ldc, columns, accumulate, like, 2)
                r += 2
            if r < m:
                _tile(a, r * lda, lda, panels, panel, k, out, r * ldc + column, ldc, columns, accumulate, like, 1)
    return product


def _compile_product(dtype: np.dtype):
    """The product of ``dtype`` as a C function (from the disk cache, whose saves take its lock:
    `rnnkit.kernels.cache.install`), its address registered as ``rnnkit_panel_product_<dtype>``."""
    compiled = cfunc(PRODUCT_SIGNATURE, cache=True)(_product(dtype.type(0)))
    llvm.add_symbol(f"rnnkit_panel_product_{dtype.name}", compiled.address)
    return compiled


def _compile_products() -> dict:
    """`COMPILED`; off the panels route (`rnnkit.kernels.backend.PRODUCTS`) nothing is compiled, and the symbols
    name a function that is never reached (the loops there are compiled without the panels' calls)."""
    if backend.PRODUCTS == "panels":
        return {dtype: _compile_product(dtype) for dtype in DTYPES}
    for dtype in DTYPES:
        llvm.add_symbol(f"rnnkit_panel_product_{dtype.name}",
                        backend.unreachable("a product on panels was called off the panels route"))
    return {}


#: the product compiled once per dtype as a C function (cached on disk), reached from compiled code through a
#: symbol (`panel_product`): its machine code is not linked into each loop entry, whose first compile stayed as
#: long as without panels (linked in, the LSTM's first use took 1.2 – 1.7 s longer). Empty off the panels route.
COMPILED = _compile_products()
_external = {dtype: types.ExternalFunction(f"rnnkit_panel_product_{dtype.name}", PRODUCT_SIGNATURE)
             for dtype in DTYPES}


def product(panels, m, k, a, lda, out, ldc, n, first, last, accumulate):  # pragma: no cover - the overload
    """The compiled product of ``panels``' dtype (`COMPILED`) on the addresses of a, panels and out."""


def _product_call(routine):
    def call(panels, m, k, a, lda, out, ldc, n, first, last, accumulate):
        routine(m, k, a.ctypes, lda, panels.ctypes, out.ctypes, ldc, n, first, last, accumulate)
    return call


@overload(product, jit_options=JIT)
def _product_overload(panels, m, k, a, lda, out, ldc, n, first, last, accumulate):
    return _product_call(_external[np.dtype(panels.dtype.name)])


@njit(**GLUE)
def panel_product(a, panels, out, first, last, accumulate):
    """out[:, first·w : min(last·w, n)] = a · W (or += with ``accumulate``) over panels first..last − 1 of W's
    `pack` (w = `width`, n = out's columns), a (m, k) with m, k ≥ 1: the dtype's compiled product (`COMPILED`)."""
    product(panels, a.shape[0], a.shape[1], any_layout(a), a.strides[0] // a.itemsize, any_layout(out),
            out.strides[0] // out.itemsize, out.shape[1], first, last, accumulate)
