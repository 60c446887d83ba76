"""The weight gradients of a backward call summed behind its loop, on the other core: a pipeline of two threads.

A backward call's work is the loop (δa_t step by step, each step needing the one after it) and three whole-sequence
GEMMs over its result: δX = δXP W_ih, δW_ih += δXPᵀ X and δW_hh += δXPᵀ H_prev (δb with δW_ih). After the loop,
those GEMMs run on both cores; during it, the second core either splits each step with the loop's core (a team,
`rnnkit.kernels.team`: a barrier each step) or waits. Behind the loop, it sums instead: the loop runs on one core as
a team of one part that announces each step it finishes (`rnnkit.kernels.team.announce_step`), and the partner
takes the GEMMs of the finished steps, a chunk of rows at a time; when the loop is done, the caller joins it on
what is left (`rnnkit.kernels.parallel.Pipeline` with ``follows``).

The work is a list of tasks, three per chunk of steps in the loop's order (the last steps first, unless
``reverse``): δX of the chunk's rows, then δW_ih (and δb), then δW_hh for them, and a fourth where the cell names
sums over the rows of its own (`rnnkit.recurrent.layernorm.LayerNormCell.row_sums_behind`: the layer-normalised
cells' γ and β, which they summed after the loop before; training calls at B = 16, H = 256, T = 100, medians of 12
rounds in turns in one process: LN-LSTM 32.99 → 32.10 ms, LN-GRU 25.14 → 24.82, its sums after the loop 1.8 ms, the
partner core already busy with the others for most of the loop). Each thread takes the next task from
a shared counter and waits for its chunk's steps (δW_hh's task for one step more: zoneout's backward swaps s̃ into
the slot of the chunk's first H_prev rows while the step after the chunk runs); a task that adds to a sum also waits
for that sum's task of the chunk before. So every sum is made in one order — chunk after chunk, each one GEMM on one
BLAS thread — whichever thread does which task, and the result does not depend on the timing (it differs from the
GEMMs over the whole sequence by rounding only). Where the partner could not start, the caller takes every task
after its loop: the cores are then another pair's, team's or pipeline's, which holds one BLAS thread each (or one is
all there is). The sums go straight into the parameters' gradients (weight drop's δW_hh and the biases' into
buffers): a loop that fails leaves them partly summed, as the whole-sequence GEMMs did between one another.

Measured on the project's 2-core AMD EPYC (OpenBLAS, T = 100, float32, LSTM backward, ms: the loop as a team + the
GEMMs → the loop on one core + the sums behind it) in `docs/performance-history.md`.
"""

from __future__ import annotations

import numpy as np

from . import precompile
from .blas import matmul_into
from .jit import GLUE, INNER, JIT, njit
from .layernorm import layer_norm_rows_backward
from .parallel import PipelineStage
from .team import READY, aborted, count_up, new_sync, wait_until

#: a chunk's steps: `CHUNK_STEPS`, or more where they hold fewer than `CHUNK_ROWS` rows (a rank-128 update of a
#: weight gradient runs near the rate of the whole GEMM), so that the last task, which one thread finishes while the
#: other waits, stays short. Measured (LSTM training, T = 100, ms, fresh processes in turns; chunks of 128 / 256 /
#: 512 rows): B = 16, H = 256 28.7 – 31.4 / 29.4 – 31.8 / –; B = 16, H = 512 106.8 – 108.0 / 106.0 – 109.1 /
#: 111.7 – 116.4; B = 64, H = 512 431 – 435 / 417 – 418 / 411 – 414: eight steps a chunk at B = 16 and B = 64
CHUNK_STEPS, CHUNK_ROWS = 8, 128
#: the shared counters (`claims`), a cache line (8 int64) apart: the next task, and the chunks added to δW_ih, to
#: δW_hh and to the row sums so far; then per chunk, its input side's δ written (layer-normalised projections only)
NEXT, DONE_IH, DONE_HH, DONE_SUMS, WRITTEN = 0, 8, 16, 24, 32
#: per chunk: δX (after the input side's δ, where that is normalised), δW_ih with δb, δW_hh; and a fourth, `ROW_SUMS`,
#: where the call has row sums (a layer-normalised cell's γ and β, `take_tasks`)
TASKS = 3
ROW_SUMS = 3  # the fourth task's kind


def chunk_steps(batch: int) -> int:
    """The steps of a chunk at ``batch`` rows a step: `CHUNK_STEPS`, or enough for `CHUNK_ROWS` rows."""
    return max(CHUNK_STEPS, -(-CHUNK_ROWS // max(batch, 1)))


def chunk_count(steps: int, batch: int) -> int:
    """The chunks of a loop of ``steps`` steps of ``batch`` rows (the last one may be shorter)."""
    return -(-steps // chunk_steps(batch))


def new_claims(chunks: int) -> np.ndarray:
    """The shared counters of one call's tasks over ``chunks`` chunks, all at zero."""
    return np.zeros(WRITTEN + chunks, np.int64)


@njit(**JIT)
def take_tasks(sources, grads, norm, reset, sums, batch, chunk, reverse, sync, claims):
    """Take tasks until none is left (see the module notes). ``sources`` = (δXP (T·B, G), δ_h (T·B, G), X (T·B, I),
    H_prev (T·B, H), W_ih (G, I)), time-major rows: δW_hh sums δ_hᵀ H_prev (δ_h is δXP itself, or the δ of a
    layer-normalised recurrent product that the loop wrote); ``grads`` = (δX (T·B, I), δW_ih (G, I), δW_hh (G, H),
    δb_ih (G,), δb_hh (G,)), the sums added to (a bias's (0,): no sum; δb_ih = Σ δXP, δb_hh = Σ δ_h as δW_hh reads
    it); ``norm``: None, or (γ, X̂, s, δP (T·B, G)) where the projection is LN(X W_ihᵀ; γ, β): δX's task first
    writes its rows of δP = LN backward of δXP (`layer_norm_rows_backward`), which δX and δW_ih then take in place of
    δXP; ``reset``: None, or (r (T·B, H), a (chunk·B, G) buffer) for a GRU whose reset gate comes after its product:
    δW_hh sums δq = [δa_r, δa_z, δa_n ⊙ r], made in the buffer (`reset_scaled`; one δW_hh task at a time); ``sums``:
    None, or (products, totals) of the rows, a fourth task per chunk: out += Σ_rows a ⊙ b for each (a, b, out) of
    products and out += Σ_rows a for each (a, out) of totals, (T·B, K) arrays and (K,) sums (`add_row_sums`);
    ``chunk`` steps of ``batch`` rows a chunk; ``sync``: the loop's team, whose READY count holds the steps it
    finished; ``claims``: `new_claims`. Stops early where the other thread failed."""
    d_in, d_rec, x, h_prev, w_ih = sources
    dx, grad_ih, grad_hh, grad_b, grad_bh = grads
    steps = d_in.shape[0] // batch
    chunks = (steps + chunk - 1) // chunk
    kinds = TASKS if sums is None else TASKS + 1
    while not aborted(sync):
        task = count_up(claims, NEXT)
        if task >= kinds * chunks:
            return
        c, kind = task // kinds, task % kinds
        finished = min(steps, (c + 1) * chunk)  # the loop's steps this chunk needs
        if not wait_until(sync, READY, finished, sync):
            return
        first = c * chunk if reverse else steps - finished
        rows = slice(first * batch, (first + finished - c * chunk) * batch)
        if kind == ROW_SUMS:
            if sums is not None and wait_until(claims, DONE_SUMS, c, sync):
                add_row_sums(sums, rows)
                count_up(claims, DONE_SUMS)
            continue
        if kind == 2:  # and one step more: the step after the chunk's swaps zoneout's s̃ into its first H_prev rows
            if not wait_until(sync, READY, min(steps, finished + 1), sync):
                return
            d = d_rec[rows]
            if reset is not None:  # after the chunk before's δW_hh task, which read the buffer
                if not wait_until(claims, DONE_HH, c, sync):
                    return
                r, buffer = reset
                d = reset_scaled(d, r[rows], buffer[:d.shape[0]])
            _add_product(d, h_prev[rows], grad_hh, d, grad_bh, claims, DONE_HH, c, sync)
            continue
        d = d_in[rows]
        if norm is not None:  # δP of the normalised projection, written by this chunk's first task
            gamma, hat, inv_std, dp = norm
            if kind == 0:
                layer_norm_rows_backward(d, gamma, hat[rows], inv_std[rows], dp[rows])
                count_up(claims, WRITTEN + c)
            elif not wait_until(claims, WRITTEN + c, 1, sync):
                return
            d = dp[rows]
        if kind == 0:
            matmul_into(d, w_ih, dx[rows], False)
        else:
            _add_product(d, x[rows], grad_ih, d_in[rows], grad_b, claims, DONE_IH, c, sync)


@njit(**INNER)
def reset_scaled(d, r, out):
    """out = δq = [δa_r, δa_z, δa_n ⊙ r] from a GRU's δa = ``d`` (n, 3H) and its reset gate ``r`` (n, H); out."""
    hs = r.shape[1]
    for b in range(d.shape[0]):
        row, gate, q = d[b], r[b], out[b]
        for j in range(2 * hs):
            q[j] = row[j]
        for j in range(hs):
            q[2 * hs + j] = row[2 * hs + j] * gate[j]
    return out


@njit(**GLUE)
def _add_product(d, inputs, grad, summed, grad_b, claims, done, c, sync):
    """grad += dᵀ inputs (and grad_b += Σ summed, where grad_b is not empty) as the sum's chunk c, after its chunk
    c − 1 (``claims[done]`` counts the chunks added). Nothing where the other thread failed meanwhile."""
    if not wait_until(claims, done, c, sync):
        return
    matmul_into(d.T, inputs, grad, True)
    if grad_b.shape[0] > 0:
        add_column_sums(summed, grad_b, summed[:0], grad_b.shape[0])  # no columns scaled
    count_up(claims, done)


@njit(**GLUE)
def add_row_sums(sums, rows):
    """`take_tasks`' row sums over ``rows``, row after row: out += Σ_r a[r] ⊙ b[r] for each (a, b, out, scale,
    offset) of sums[0] and out += Σ_r a[r] for each (a, out, scale, offset) of sums[1], a[r]'s columns from
    ``offset`` on times scale[r] (`row_product`, `row_total`)."""
    products, totals = sums
    for a, b, out, scale, offset in products:
        add_column_products(a[rows], b[rows], out, scale[rows], offset)
    for a, out, scale, offset in totals:
        add_column_sums(a[rows], out, scale[rows], offset)


@njit(**GLUE)
def add_column_products(a, b, out, scale, offset):
    """out += Σ_r a[r] ⊙ b[r], a[r]'s columns from ``offset`` on times scale[r] (row after row)."""
    for r in range(a.shape[0]):
        x, y = a[r], b[r]
        for j in range(offset):
            out[j] += x[j] * y[j]
        if offset < out.shape[0]:
            s = scale[r]
            for j in range(offset, out.shape[0]):
                out[j] += x[j] * s[j - offset] * y[j]


@njit(**GLUE)
def add_column_sums(a, out, scale, offset):
    """out += Σ_r a[r], its columns from ``offset`` on times scale[r] (row after row)."""
    for r in range(a.shape[0]):
        x = a[r]
        for j in range(offset):
            out[j] += x[j]
        if offset < out.shape[0]:
            s = scale[r]
            for j in range(offset, out.shape[0]):
                out[j] += x[j] * s[j - offset]


def row_product(a: np.ndarray, b: np.ndarray, out: np.ndarray, scale: np.ndarray | None = None,
                offset: int | None = None) -> tuple:
    """One of `Behind`'s row sums: out += Σ_rows a ⊙ b, a (rows, K), b (rows, K), out (K,); a's columns from
    ``offset`` on times ``scale`` (rows, K − offset) where given (a GRU's δa_n ⊙ r)."""
    return (a, b, out, *_scaling(a, out, scale, offset))


def row_total(a: np.ndarray, out: np.ndarray, scale: np.ndarray | None = None, offset: int | None = None) -> tuple:
    """One of `Behind`'s row sums: out += Σ_rows a, scaled as `row_product` says."""
    return (a, out, *_scaling(a, out, scale, offset))


def _scaling(a, out, scale, offset) -> tuple:
    """(scale, offset) as the kernel takes them: C-contiguous (one array type for every item of a call), and an
    empty scale from ``out``'s width on where there is none."""
    if scale is None:
        return np.empty((0, 0), a.dtype), out.shape[0]
    return np.ascontiguousarray(scale), int(offset)


class Behind(PipelineStage):
    """The weight sums and δX of one backward call, made behind its loop (see the module notes): ``dxp`` (T, B, G)
    the loop's δXP, ``x`` (T, B, I) and ``h_prev`` (T·B, H) what the sums read with it (H_prev as the recurrent
    product reads it), ``weight_ih`` (G, I); ``grads`` = (δW_ih, δW_hh, δb_ih, δb_hh): the first two (C-contiguous)
    are added to, the biases' (G,) too where they are not None (kept as (0,) arrays: no such sum here); `dx` (T·B, I)
    is written.
    ``d_rec`` (T·B, G): what δW_hh sums instead of δXP (a normalised recurrent product's δ), None for δXP; ``norm``:
    (γ_x, X̂, s) of a layer-normalised input projection, None without; ``reset``: a GRU's r (T, B, H) where its
    reset gate comes after the product, None else; ``sums``: (products, totals) of more sums over the rows, lists of
    `row_product` and `row_total` items with a, b (T·B, K) and out (K,) C-contiguous (`take_tasks`), None else
    (`row_sums` says whether they are made). ``reverse``: the loop's direction.

    A context, like `rnnkit.kernels.ahead.Ahead`: entering starts the partner on the other core, `run_loop` runs the
    loop and then the caller's share of the sums, leaving waits for the partner."""

    def __init__(self, dxp: np.ndarray, x: np.ndarray, h_prev: np.ndarray, weight_ih: np.ndarray, grads: tuple,
                 reverse: bool, d_rec: np.ndarray | None = None, norm: tuple | None = None,
                 reset: np.ndarray | None = None, sums: tuple | None = None):
        steps, batch, gates = dxp.shape
        grad_ih, grad_hh, grad_b, grad_bh = grads
        rows = steps * batch
        self.dxp, self.dx = dxp, None  # δX: made on entering, unless written over δ(output) (`write_dx_over`)
        self._dx_shape = (rows, weight_ih.shape[1])
        flat = dxp.reshape(rows, gates)
        recurrent = flat if d_rec is None else d_rec.reshape(rows, gates)
        self.sources = (flat, recurrent, np.ascontiguousarray(x).reshape(rows, -1), np.ascontiguousarray(h_prev),
                        np.ascontiguousarray(weight_ih))
        biases = tuple(np.empty(0, dxp.dtype) if b is None else b for b in (grad_b, grad_bh))
        self.grads = (grad_ih, grad_hh, *biases)
        self.norm = None if norm is None else (*norm, np.empty_like(flat))
        self.batch, self.reverse = batch, reverse
        self.chunk = chunk_steps(batch)
        self.reset = None if reset is None else (reset.reshape(rows, -1), np.empty((self.chunk * batch, gates),
                                                                                   dxp.dtype))
        self.claims = new_claims(chunk_count(steps, batch))
        self.sums = None if sums is None else tuple(tuple(map(tuple, group)) for group in sums)
        self.row_sums = sums is not None

    def write_dx_over(self, dy: np.ndarray) -> None:
        """Write δX over ``dy`` (T, B, ·), the caller's own δ(output) of the loop, where it has δX's shape and layout:
        the loop reads each step's rows before a task writes them, and one (T·B, I) array less is held while the
        loop runs (the GRU at B = 16, H = 512: its training call's peak 30.4 → 27.0 MiB, torch's 30.1)."""
        if dy.size == np.prod(self._dx_shape) and dy.dtype == self.dxp.dtype and dy.flags.c_contiguous:
            self.dx = dy.reshape(self._dx_shape)

    def work(self, sync: np.ndarray) -> None:
        """Take tasks until none is left (in the caller after its loop, and in the partner from the start)."""
        arguments = self._arguments(sync)
        precompile.wait(take_tasks, arguments)  # for a compile `entry_ahead` started in another process
        take_tasks(*arguments)

    def entry_ahead(self) -> tuple:
        """(`take_tasks`, arguments of the types `work` will give it): what `rnnkit.kernels.precompile.ahead` has
        another process compile for a backward whose sums go behind its loop, made from a forward's workspace
        (`rnnkit.recurrent.runner.Recurrence.forward`)."""
        return take_tasks, self._arguments(new_sync(projected=False))

    def _arguments(self, sync: np.ndarray) -> tuple:
        """`take_tasks`' arguments in its order, the loop's team ``sync``."""
        return (self.sources, (self._made_dx(), *self.grads), self.norm, self.reset, self.sums, self.batch,
                self.chunk, self.reverse, sync, self.claims)

    def _made_dx(self) -> np.ndarray:
        """`dx`, made now where `write_dx_over` did not give it: on entering, before the partner starts (or at the
        one call of `work` outside the context)."""
        if self.dx is None:
            self.dx = np.empty(self._dx_shape, self.dxp.dtype)
        return self.dx

    def __enter__(self) -> Behind:
        self._made_dx()
        self._start(self.work, follows=True)  # `run_loop`'s steps are announced to the partner, which follows them
        return self
