"""The input projection written ahead of a forward loop, on the other core: a pipeline of two threads.

A forward call's work is two halves of equal size where the input is as wide as the state: the projection
XP = X W_ihᵀ + b (one GEMM over all T·B rows) and the recurrence (one product h_{t−1} W_hhᵀ and the pointwise
math per step). A team (`rnnkit.kernels.team`) runs the GEMM on both cores, then the loop on both cores with a
barrier per step. The pipeline runs each half on one core instead, at once: the loop on the caller's core, as a
team of one part (no barrier, its products whole), and `project_ahead` on the worker's, which writes XP a chunk of
steps at a time in the loop's order and adds the chunk's steps to the ready count (``sync[READY]``) that each step
of the loop waits for (`rnnkit.kernels.team.wait_ready`). The writer runs ahead from its first chunk on where the
input is no wider than the state (`rnnkit.kernels.parallel.pipeline_pays` asks for that, and for at least 3/4 of
its width, `PIPELINE_INPUTS`, below which the writer's core idles for most of the loop and a team is faster): its
products are no deeper than the loop's and have as many rows as a step's or more, so it is not slower per step
than the loop.

Measured on the project's 2-core AMD EPYC (OpenBLAS with the products on panels, T = 100, float32, LSTM
inference, ms, one process, GEMM then team → pipeline; `docs/performance.md` has the figures of the layers):
B = 16, H = 256: 12.2 – 12.4 → 10.1 – 10.3; B = 64, H = 256: 43.7 – 43.8 → 36.4 – 36.5; B = 64, H = 512:
150 → 138; B = 16, H = 512: 42.9 → 42.2 (both halves' weights, 4 MiB each, come from the shared cache at every
step there, and the two cores contend for it).

`Ahead` is what a cell's `rnnkit.recurrent.compiled_loop.CompiledSequenceLoop.ahead_projection` returns: X, W_ihᵀ as a
`rnnkit.kernels.blas.loop_weight` (the products take the route of the loop's own) and b, the output XP to write.
Memory: where the GEMM (NumPy's, on W_ih itself) needs nothing beside XP, the pipeline holds W_ihᵀ's panels (G × I
elements) until the last chunk is written — packed from W_ih without a transposed copy, from 2 MiB on into
pages of their own where a backward follows (`rnnkit.kernels.panels.transient`): from malloc's heap, which keeps
freed memory for the next call, they added their size to a training call's peak resident memory (GRU B = 16,
H = 512: 28.6 → 31.6 MiB, torch's 30.1). Smaller panels, and all of an inference call's, come from the heap, whose
pages the next call reuses without a fault.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .blas import loop_weight, matmul_weight, packs_weights, panels_apply, panels_weight
from .jit import INNER, JIT, njit
from .layernorm import layer_norm_rows
from .layout import fill_panels_compiled
from .panels import pack, transient, unfilled
from .parallel import PipelineStage
from .sequence_loop import add_bias_rows
from .team import aborted, add_ready

#: rows of X a chunk's product takes at least (its steps' rows together): the panels' two tiles of 8 rows
#: (`rnnkit.kernels.panels.ROWS`; a product of fewer rows reads the weight's panels as often for less work). One
#: step a chunk from B = 16 on: the loop's first step waits for one step's rows, not four, and the writer, which is
#: not slower per step than the loop, stays ahead. In turns, fresh processes, LSTM inference ms, chunks of 64 rows →
#: 16: B = 16, H = 512 36.0 – 37.1 → 35.1 – 36.6; B = 8, H = 512 19.7 – 21.3 → 19.1 – 19.6; B = 16, H = 256 10.0 –
#: 10.7 → 9.6 – 10.9; training at B = 16, H = 512 the same (108 – 114 ms both ways)
CHUNK_ROWS = 16


@njit(**JIT)
def project_ahead(sources, x, weight, bias, has_bias, norm, xp, batch, reverse, chunk, sync):
    """First what the writer lays out itself (``sources`` = (W_ih, X_bf)): the panels of ``weight``, filled from
    W_ih ((G, I), C-contiguous; (0, 0) where `Ahead` packed them already) by
    `rnnkit.kernels.layout.fill_panels_compiled`, and the rows of each chunk, copied into x from the batch-first
    input X_bf ((B, T, I); (0, 0, 0) where x holds them already); then xp = x · W (then layer-normalised where
    ``norm`` = (γ, β, X̂, s) is not None, `layer_norm_rows`), + bias, for the rows of x (T·B, I) and xp (T·B, G),
    time-major, ``chunk`` steps of ``batch`` rows at a time in the loop's order (from the last step where
    ``reverse``); after each chunk its steps are added to the ready count. The operations of the cell's `project`
    on the compiled kernels, in its order (equal to rounding: the product runs on the loop's route in chunks of
    rows, where `project` calls NumPy's GEMM once). Stops early where the loop's thread failed
    (`rnnkit.kernels.team.aborted`). A cell without layer norm passes None: numba then compiles no layer norm into
    it (0.6 s of a first forward call)."""
    fill_from, batch_first = sources
    if fill_from.shape[0] > 0:
        fill_panels_compiled(fill_from, weight[3])
    steps = xp.shape[0] // batch
    done = 0
    while done < steps and not aborted(sync):
        count = min(chunk, steps - done)
        first = steps - done - count if reverse else done
        rows = slice(first * batch, (first + count) * batch)
        out = xp[rows]
        if batch_first.shape[0] > 0:
            time_major_steps(batch_first, x, first, count)
        matmul_weight(x[rows], weight, out, False)
        if norm is not None:
            gamma, beta, hat, inv_std = norm
            layer_norm_rows(out, gamma, beta, hat[rows], inv_std[rows], out)
        if has_bias:
            add_bias_rows(out, bias)
        done += count
        add_ready(sync, count)


@njit(**INNER)
def time_major_steps(batch_first, x, first, count):
    """x[t·B + b] = batch_first[b, t] for steps t in [first, first + count): rows of the time-major (T·B, I) x from
    the batch-first (B, T, I) input. Element by element: a row assigned from an array (``x[r] = v``) makes numba
    compile its shape-mismatch message's string formatting into the first kernel that holds one, 1.7 – 2.1 s of a
    process's first use on an empty cache (LSTM, B = 16, H = 256: the writer's compile 3.9 – 5.3 → 2.6 – 3.5 s)."""
    batch, width = batch_first.shape[0], batch_first.shape[2]
    for t in range(first, first + count):
        for b in range(batch):
            row, source = x[t * batch + b], batch_first[b, t]
            for j in range(width):
                row[j] = source[j]


class Ahead(PipelineStage):
    """The projection X W_ihᵀ + b — LN(X W_ihᵀ; γ, β) + b with ``norm`` = (γ, β) — of one forward call, written
    ahead of its loop: ``x`` (T, B, I) time-major, C-contiguous or the transposed view of a C-contiguous
    batch-first input, whose rows the writer then copies into `x` (T, B, I) chunk by chunk (the caller's core is
    spared the copy: 0.1 – 2 ms from B = 16, H = 256 to B = 64, H = 512), ``batch`` = B, in reverse order where
    ``reverse``, ``weight_ih`` (G, I), ``bias`` (G,) or None; `out` (T·B, G) is the loop's XP, and with ``norm``
    ``x_hat`` (T·B, G) and ``x_inv_std`` (T·B, 1) are X̂ and s for the backward (`leave_in`); ``backward``: whether
    a backward follows the call (the panels' memory then comes from `rnnkit.kernels.panels.transient`'s own pages).

    A context: entering starts the writer on the other core (`rnnkit.kernels.parallel.Pipeline`), so that what the
    caller prepares for its loop — the recurrent weight's transpose and panels, the state history — is done while
    the first steps are written; `run_loop` runs the loop once that is done; leaving waits for the writer (and
    stops it where the caller failed first)."""

    def __init__(self, x: np.ndarray, weight_ih: np.ndarray, bias: np.ndarray | None, batch: int, reverse: bool,
                 norm: tuple | None = None, backward: bool = True):
        batch_first = x.transpose(1, 0, 2)
        self.batch_first = np.empty((0, 0, 0), x.dtype)
        if x.flags.c_contiguous or not batch_first.flags.c_contiguous:
            self.x = np.ascontiguousarray(x)
        else:  # written by the writer, chunk by chunk
            self.x, self.batch_first = np.empty(x.shape, x.dtype), batch_first
        self.batch, self.reverse = batch, reverse
        rows = x.shape[0] * x.shape[1]
        self.out = np.empty((rows, weight_ih.shape[0]), x.dtype)  # before the panels, which go first
        self.norm = None
        if norm is not None:
            self.x_hat, self.x_inv_std = np.empty_like(self.out), np.empty((rows, 1), x.dtype)
            self.norm = (*norm, self.x_hat, self.x_inv_std)
        transpose = weight_ih.T  # packed as it is into panels; a BLAS takes W_ihᵀ with unit stride in its rows
        self.fill_from = np.empty((0, 0), x.dtype)
        self.pack_from = None
        allocate = partial(transient, backward=backward)  # pages of their own only before a backward (module notes)
        if panels_apply(x.dtype) and weight_ih.flags.c_contiguous:  # filled by the writer, before its first chunk
            self.weight, self.fill_from = panels_weight(transpose, unfilled(transpose, allocate)), weight_ih
        elif panels_apply(x.dtype):
            self.weight = panels_weight(transpose, pack(transpose, allocate))
        elif packs_weights(x.dtype):  # MKL packs the view itself (`rnnkit.kernels.mkl.pack`), on the writer's core
            self.weight, self.pack_from = None, transpose
        else:  # a BLAS takes a copy
            self.weight = loop_weight(np.ascontiguousarray(transpose))
        self.bias = np.empty(0, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)

    def write(self, sync: np.ndarray) -> None:
        """Write `out`, announcing each chunk's steps in ``sync``: W_ihᵀ first laid out on the writer's core where
        it is still to be — its panels filled in the writer's one compiled call, which holds no GIL, or MKL's packed
        copy made (`rnnkit.kernels.mkl.pack`, a ctypes call, which releases the GIL) while the caller packs its
        recurrent weight: one LSTM inference call at B = 16, H = 256 packed two 1 MiB weights in turn, about 0.3 ms
        each with both cold in cache."""
        chunk = max(1, -(-CHUNK_ROWS // self.batch))
        if self.pack_from is not None:  # MKL's packed copy, made here while the caller packs its recurrent weight
            self.weight, self.pack_from = loop_weight(self.pack_from), None
        project_ahead((self.fill_from, self.batch_first), self.x.reshape(self.out.shape[0], -1), self.weight,
                      self.bias, self.bias.size > 0, self.norm, self.out, self.batch, self.reverse, chunk, sync)
        self.weight = None  # the panels are not needed while the loop finishes

    def leave_in(self, ws) -> None:
        """Put what the backward reads of the projection into the workspace ``ws``, as `Cell.project` does: X̂ and s
        of a layer-normalised projection (``ws.x_hat``, ``ws.x_inv_std``)."""
        if self.norm is not None:
            ws.x_hat, ws.x_inv_std = self.x_hat, self.x_inv_std

    def __enter__(self) -> Ahead:
        self._start(self.write)  # `run_loop`'s steps wait for the rows the writer announces
        return self
