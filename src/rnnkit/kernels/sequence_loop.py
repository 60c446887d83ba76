"""The whole time loop in one compiled call: the skeleton of `Recurrence.forward` / `Recurrence.backward`, written
once and parameterised by a cell family's compiled step.

``sequence_forward(step, params, xp, states, counts, reverse, zoneout, team)`` and ``sequence_backward(step_backward,
params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)`` own everything about time, exactly as the
Python runner (`rnnkit.recurrent.runner`) does: the slot of each step (reverse direction without flipping the data),
the ragged batch as a sorted row prefix (rows past their end carry their state and get no gradient), the output
gradient added to δh_t, Elman's detached state (the gradient stops at each step's previous state) and zoneout's mixes
(empty arrays without zoneout); ``team`` is this part's share of a loop on two cores (`rnnkit.kernels.team`), None
for the plain loop. The cell's step does the rest for the ``n`` rows still inside their sequence: its recurrent
GEMM(s) — BLAS called from compiled code (`rnnkit.kernels.blas`) — and its fused pointwise kernel right after each
product, while the block is in cache. The steps live with their pointwise kernels, one module per cell family
(`rnnkit.kernels.rnn`, `rnnkit.kernels.lstm`, `rnnkit.kernels.gru`, `rnnkit.kernels.indrnn`,
`rnnkit.kernels.minimal`, `rnnkit.kernels.layernorm`, `rnnkit.kernels.rhn`, `rnnkit.kernels.jordan`,
`rnnkit.kernels.mogrifier`; the defined cells' generated modules),
and are passed in as arguments: numba compiles one specialisation of the loop per step function, so the loop reads
like the Python runner and costs nothing per step in Python.

Step contract (all arrays time-major, rows sorted by decreasing length):

    step(params, t, n, read, write, xp_t, states, team)
        xp_t (n, G) the projection of step t; states a tuple of (T+1, B, S_k) histories: read slot ``read``,
        write rows [:n] of slot ``write`` (a team's part: its own units of them); ``params`` the cell's tuple of
        weights and workspace arrays
    step_backward(params, t, n, read, write, dstate, states, dxp_t, team)
        dstate a tuple of (B, S_k): rows [:n] hold δ(state written at t) on entry, δ(state read at t) on exit;
        writes δa (n, G) into dxp_t

Each family module has one small entry per direction of time that calls the skeleton with its step, e.g.
``lstm_sequence_forward(params, xp, states, counts, reverse, zoneout, team)``; the entries are what the cells call
(`rnnkit.recurrent.compiled_loop.CompiledSequenceLoop`) and what numba caches on disk (``cache=True``), so a new process
loads their machine code instead of compiling them (``tests/test_kernel_cache.py``).

Why the skeleton is inlined (``inline="always"``). A jitted function passed as a *value* is lowered by numba as
the address of its Python dispatcher object (``numba.dynamic.globals.<id>``), valid in this process only; when
the skeleton is a function of its own the entry passes that address to it, and numba refuses to cache the entry
("uses dynamic globals") — every process recompiled every loop (seconds). Inlined at numba's IR level, the call
``step(...)`` inside the entry resolves to the family's step by name, the address is never used, and the entry
caches. The BLAS routine is not the cause: it is a named symbol (`rnnkit.kernels.blas`). numba keys a cached
function by its own file alone; every kernel here is keyed by all the kernel files instead
(`rnnkit.kernels.cache`), so editing this skeleton or `rnnkit.kernels.blas` compiles the entries again.

The NumPy per-step path stays the definition and the oracle (``tests/test_sequence_loop.py`` compares them).
"""

from __future__ import annotations

from .jit import GLUE, INNER, JIT, njit, one, unliteral
from .team import announce_step, barrier, leads, own_units, wait_ready

#: the skeleton is inlined into each family's cached entry (see the module notes), never compiled on its own
SKELETON = {**JIT, "cache": False, "inline": "always"}


@njit(**INNER)
def slots(t, reverse):
    """(read slot, write slot) of step t: t → t+1 forward, t+1 → t in the reverse direction."""
    return (t + 1, t) if reverse else (t, t + 1)


@njit(**SKELETON)
def sequence_forward(step, params, xp, states, counts, reverse, zoneout, team):
    """The forward time loop: xp (T, B, G); states a tuple of (T+1, B, S_k) histories holding the initial state in
    slot 0 (slot T when ``reverse``); counts (T,) rows still inside their sequence at each step; ``zoneout`` =
    (keeps, proposed, saved, direct) of `rnnkit.recurrent.noise.loop_zoneout`: per state component, zoneout's
    keep-previous mask d (T or 1, B, S_k) — (0, 0, 0) for a component without zoneout, and every component of a
    call without it — and the history of s̃_t (T, or 1 under no_grad, B, S_k) the cell computed, before the mix
    s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t. ``team``: this part's units of every state
    (`rnnkit.kernels.team.own_units`) and the barrier that ends each step, or None for the plain loop, which
    compiles without the team's code: numba prunes the branches on ``team is None`` when it compiles the entry.
    Each step first waits for its rows of ``xp`` (`rnnkit.kernels.team.wait_ready`): where a partner thread writes
    the projection ahead of a loop of one part (`rnnkit.kernels.ahead`); a team's are all there from the start.
    Zoneout is not pruned that way: one loop for a call with and without it (`loop_zoneout` says why)."""
    steps = xp.shape[0]
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        read, write = slots(t, reverse)
        n = counts[t]
        wait_ready(team, s)
        step(params, t, n, read, write, xp[t, :n], states, team)
        for k in range(len(states)):
            state = states[k]
            lo, hi = own_units(state.shape[2], team)
            zoneout_forward(zoneout, k, t, n, state, read, write, lo, hi)
            copy_rows(state[read, n:], state[write, n:], lo, hi)  # rows past their end carry their state
        barrier(team)  # every part has written its units of s_t


@njit(**SKELETON)
def sequence_backward(step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The backward time loop: dy (T, B, S_0) the output gradient; dstate a tuple of (B, S_k) holding δ(final
    state) on entry and δ(initial state) on exit; writes δa into dxp (T, B, G) for the active rows and zeros into
    the padded ones (``dxp`` may hold the forward's gates on entry: `rnnkit.recurrent.cell.Cell.sequence_gate_grads`).
    ``detach``: the gradient stops at each step's previous state. Zoneout:
    δs̃_t = (1 − d) ⊙ δs_t goes through the cell, which sees s̃_t in the slot of s_t while it runs (``saved`` keeps
    s_t meanwhile), and d ⊙ δs_t (``direct``) reaches s_{t−1} around it. ``team``: this part's units, as in
    `sequence_forward`, or a team of one part whose steps are announced, one by one, to the partner that sums the
    weight gradients behind the loop (`rnnkit.kernels.behind`); the step itself waits at the barrier between its δa
    and its product."""
    steps = dy.shape[0]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        read, write = slots(t, reverse)
        n = counts[t]
        lo, hi = own_units(dstate[0].shape[1], team)
        add_rows(dy[t, :n], dstate[0][:n], lo, hi)
        for k in range(len(states)):
            lo, hi = own_units(dstate[k].shape[1], team)
            zoneout_backward_before(zoneout, k, t, n, dstate[k], states[k], write, lo, hi)
        step_backward(params, t, n, read, write, dstate, states, dxp[t, :n], team)
        if leads(team):
            zero_rows(dxp[t, n:], 0, dxp.shape[2])  # padded rows get no gradient (dxp may hold the gates on entry)
        for k in range(len(states)):
            lo, hi = own_units(dstate[k].shape[1], team)
            zoneout_backward_after(zoneout, k, n, dstate[k], states[k], write, lo, hi)
            if detach:
                zero_rows(dstate[k][:n], lo, hi)
        announce_step(team)  # δa_t is written: a partner summing the weight gradients behind the loop may read it


@njit(**GLUE)
def zoneout_forward(zoneout, k, t, n, state, read, write, lo, hi):
    """Zoneout after step t for state component k (nothing where it has none): keep s̃_t (``proposed``, in the
    `history_slot` of step t), then s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t in place of it."""
    keeps, proposed = zoneout[0], zoneout[1]
    if keeps[k].shape[0] > 0:
        keep_and_mix_rows(state[read, :n], state[write, :n], proposed[k][history_slot(proposed[k], t), :n],
                          keep_at(keeps[k], t, n), lo, hi)


@njit(**GLUE)
def history_slot(history, t):
    """The slot of step t in a per-step array that holds every step or one slot for all: t, or 0. A history holds
    one slot, overwritten at every step, where no backward will read it (a call under `rnnkit.no_grad`: zoneout's
    s̃_t, `rnnkit.recurrent.noise.loop_zoneout`; the layer-normalised cells' ĥ and s_h,
    `rnnkit.recurrent.layernorm.LayerNormCell.history_steps`); zoneout's keep mask holds one in evaluation, the rate
    z (`keep_at`)."""
    return t if history.shape[0] > 1 else 0


@njit(**GLUE)
def zoneout_backward_before(zoneout, k, t, n, dstate, state, write, lo, hi):
    """Before the cell's backward at step t: d ⊙ δs_t aside (``direct``), δs̃_t = (1 − d) ⊙ δs_t in place, and s̃_t
    in the slot of s_t while the cell runs (``saved`` keeps s_t)."""
    keeps, proposed, saved, direct = zoneout
    if keeps[k].shape[0] > 0:
        split_and_swap_rows(dstate[:n], keep_at(keeps[k], t, n), direct[k][:n], state[write, :n], saved[k][:n],
                            proposed[k][t, :n], lo, hi)


@njit(**GLUE)
def zoneout_backward_after(zoneout, k, n, dstate, state, write, lo, hi):
    """After the cell's backward: s_t back in its slot, and δs_{t−1} += d ⊙ δs_t (the path around the cell)."""
    saved, direct = zoneout[2], zoneout[3]
    if zoneout[0][k].shape[0] > 0:
        restore_and_add_rows(saved[k][:n], state[write, :n], direct[k][:n], dstate[:n], lo, hi)


@njit(**GLUE)
def copy_rows(src, out, lo, hi):
    """out[:, lo:hi] ← src[:, lo:hi] for two (n, S) arrays of one shape. Explicit loops rather than ``out[:] = src``:
    numba compiles a slice assignment with its shape-mismatch error message, string formatting that took 2.9 s of a
    first use. Row by row, each row's units a contiguous array (``out[b, lo:hi]``), which LLVM vectorizes; a column
    block of the 2-D array (``out[:, lo:hi]``) has rows of unknown stride to numba, and its loops ran 2–3× slower.
    ``lo`` goes on as a variable (`rnnkit.kernels.jit.unliteral`): a call with the constant 0 and one with a part's
    lo share one compiled copy."""
    _copy_rows(src, out, unliteral(lo), hi)


@njit(**INNER)
def _copy_rows(src, out, lo, hi):
    for b in range(out.shape[0]):
        s, o = src[b, lo:hi], out[b, lo:hi]
        for j in range(o.shape[0]):
            o[j] = s[j]


@njit(**GLUE)
def gates_into_grads(gates, dxp, blocks, lo, hi):
    """Puts a step's gates (n, blocks·H) where a backward row kernel writes δa over them, reading and writing through
    one set of views (two sets over the same memory fail LLVM's overlap check, and the kernel's loop runs element by
    element: `rnnkit.kernels.lstm._lstm_row_backward`). ``dxp`` is ``gates`` itself (the whole-sequence loop writes
    δa over the gate history: nothing to do; True) or an array apart from it, into which units [lo, hi) of each
    gate block are copied (False)."""
    if dxp.ctypes.data == gates.ctypes.data:
        return True
    hs = gates.shape[1] // blocks
    for k in range(blocks):
        copy_rows(gates[:, k * hs:(k + 1) * hs], dxp[:, k * hs:(k + 1) * hs], lo, hi)
    return False


@njit(**GLUE)
def add_bias_rows(out, bias):
    """out[b] ← out[b] + bias for every row of an (n, G) array (a projection's bias, after its product)."""
    for b in range(out.shape[0]):
        row = out[b]
        for j in range(row.shape[0]):
            row[j] += bias[j]


@njit(**INNER)
def add_rows(src, out, lo, hi):
    """out[:, lo:hi] ← out[:, lo:hi] + src[:, lo:hi] for two (n, S) arrays of one shape (row by row, as `copy_rows`)."""
    for b in range(out.shape[0]):
        s, o = src[b, lo:hi], out[b, lo:hi]
        for j in range(o.shape[0]):
            o[j] += s[j]


@njit(**GLUE)
def zero_rows(out, lo, hi):
    """out[:, lo:hi] ← 0 for an (n, S) array (``lo`` as in `copy_rows`)."""
    _zero_rows(out, unliteral(lo), hi)


@njit(**INNER)
def _zero_rows(out, lo, hi):
    for b in range(out.shape[0]):
        row = out[b, lo:hi]
        for j in range(row.shape[0]):
            row[j] = 0


@njit(**INNER)
def keep_at(keep, t, n):
    """Zoneout's keep-previous mask of step t for the first n rows: d_t (training) or the rate z (evaluation, one
    slot for every step: `history_slot`)."""
    return keep[history_slot(keep, t), :n]


@njit(**INNER)
def keep_and_mix_rows(prev, state, proposed, keep, lo, hi):
    """Zoneout's forward in one pass over units [lo, hi) of (n, S) arrays: ``state`` holds s̃_t on entry; it goes
    to ``proposed`` and ``state`` becomes s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t (the arithmetic of the step-by-step
    runner's `rnnkit.kernels.compiled.zoneout_mix`). One pass instead of a copy and a mix: each is a sweep over the
    (n, S) block at every step."""
    for b in range(state.shape[0]):
        p, s, q, d = prev[b, lo:hi], state[b, lo:hi], proposed[b, lo:hi], keep[b, lo:hi]
        for j in range(s.shape[0]):
            tilde = s[j]
            q[j] = tilde
            s[j] = d[j] * p[j] + (one(tilde) - d[j]) * tilde


@njit(**INNER)
def split_and_swap_rows(ds, keep, direct, state, saved, proposed, lo, hi):
    """Zoneout's backward before the cell's, in one pass over units [lo, hi) of (n, S) arrays: the split of
    `rnnkit.kernels.compiled.zoneout_split` (``direct`` = d ⊙ δs_t, δs_t ← (1 − d) ⊙ δs_t), and s_t (``state``)
    aside into ``saved`` with s̃_t (``proposed``) in its place."""
    for b in range(ds.shape[0]):
        g, d, out = ds[b, lo:hi], keep[b, lo:hi], direct[b, lo:hi]
        s, kept, q = state[b, lo:hi], saved[b, lo:hi], proposed[b, lo:hi]
        for j in range(g.shape[0]):
            dj, gj = d[j], g[j]
            out[j] = dj * gj
            g[j] = (one(dj) - dj) * gj
            kept[j] = s[j]
            s[j] = q[j]


@njit(**INNER)
def restore_and_add_rows(saved, state, direct, ds, lo, hi):
    """Zoneout's backward after the cell's, in one pass over units [lo, hi) of (n, S) arrays: s_t back into
    ``state`` from ``saved``, and δs_{t−1} (``ds``) += d ⊙ δs_t (``direct``)."""
    for b in range(ds.shape[0]):
        kept, s, out, g = saved[b, lo:hi], state[b, lo:hi], direct[b, lo:hi], ds[b, lo:hi]
        for j in range(g.shape[0]):
            s[j] = kept[j]
            g[j] += out[j]


@njit(**GLUE)
def recurrent_read(h_prev, mask, scratch, team):
    """h_{t−1} as a step's recurrent product reads it: h_{t−1} ⊙ m_h (written into ``scratch``) under recurrent
    dropout, else h_{t−1} itself. ``mask`` (B, R), or (0, 0) without recurrent dropout. In a team each part
    writes its own units, then waits for the others (the product reads them all)."""
    if mask.shape[0] == 0:
        return h_prev
    out = scratch[:h_prev.shape[0]]
    lo, hi = own_units(h_prev.shape[1], team)
    for b in range(h_prev.shape[0]):
        h, m, o = h_prev[b, lo:hi], mask[b, lo:hi], out[b, lo:hi]
        for j in range(o.shape[0]):
            o[j] = h[j] * m[j]
    barrier(team)
    return out


@njit(**INNER)
def through_mask(d, mask, lo, hi):
    """δ(h_{t−1} ⊙ m_h) → δh_{t−1} = δ ⊙ m_h in place, for units [lo, hi) of the rows of ``d`` (nothing without
    recurrent dropout); each row's units a contiguous slice, as in `copy_rows`."""
    if mask.shape[0] == 0:
        return
    for b in range(d.shape[0]):
        row, m = d[b, lo:hi], mask[b, lo:hi]
        for j in range(row.shape[0]):
            row[j] *= m[j]
