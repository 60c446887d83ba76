"""Compiled kernels of the LSTM (`rnnkit.recurrent.lstm.LSTMStep`): the fused pointwise step forward and backward,
and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`), peepholes and projection included.
Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .blas import matmul_columns, matmul_gate_units, matmul_weight
from .jit import GLUE, INNER, JIT, dsigmoid, dtanh, muladd, njit, sigmoid, tanh
from .sequence_loop import (
    copy_rows,
    gates_into_grads,
    recurrent_read,
    sequence_backward,
    sequence_forward,
    through_mask,
)
from .team import barrier, own_units


@njit(**GLUE)
def gate_views(row, hs, lo, hi):
    """Units [lo, hi) of each block of a row of four ``hs``-wide gate blocks [i, f, g, o]: four 1-D views. A row
    kernel that reads and writes the blocks as arrays of their own, each from 0, is one LLVM vectorizes (offsets
    k·hs + j into one array that the loop also writes are not, unless hs is the trip count)."""
    return row[lo:hi], row[hs + lo:hs + hi], row[2 * hs + lo:2 * hs + hi], row[3 * hs + lo:3 * hs + hi]


@njit(**INNER)
def _lstm_row_forward(a, x, cp, cn, tc, y, w_ci, w_cf, w_co, peephole):
    """One row of `lstm_forward` for the units of ``cp``: ``a`` and ``x`` the `gate_views` of its rows. Two loops,
    i, f, g and c_t first, then o, tanh(c_t) and the output, the same operations on each unit: in one loop, each
    unit's chain σ → c_t → tanh(c_t) → o ⊙ tanh(c_t) was longer than the processor's out-of-order window covers
    and the loop waited on it (`lstm_forward` at B = 16, H = 256, in cache, one core: 17.2 → 14.8 µs; an LSTM
    inference call there, median of 8 processes' fastest: 9.86 → 9.67 ms; docs/performance-history.md, thirty-first
    part)."""
    ai, af, ag, ao = a
    xi, xf, xg, xo = x
    for j in range(cp.shape[0]):
        a_i, a_f = ai[j] + xi[j], af[j] + xf[j]
        if peephole:
            a_i += w_ci[j] * cp[j]
            a_f += w_cf[j] * cp[j]
        i, f, g = sigmoid(a_i), sigmoid(a_f), tanh(ag[j] + xg[j])
        cn[j] = muladd(f, cp[j], i * g)
        ai[j], af[j], ag[j] = i, f, g
    for j in range(cp.shape[0]):
        c = cn[j]
        a_o = ao[j] + xo[j]
        if peephole:
            a_o += w_co[j] * c
        o = sigmoid(a_o)
        t = tanh(c)
        ao[j] = o
        tc[j], y[j] = t, o * t


@njit(**JIT)
def lstm_forward(gates, xp, c_prev, w_ci, w_cf, w_co, peephole, c_new, tanh_c, out):
    """`LSTMStep.step` after the GEMM. ``gates`` (n, 4H) holds h_{t-1} W_hhᵀ on entry and the activated
    [i, f, g, o] on exit; writes c_t, tanh(c_t) and ``out`` = o ⊙ tanh(c_t) (h_t, or m_t with a projection).
    The sum is symmetric: the whole-sequence loop passes the projection's row block as ``gates`` and the product
    as ``xp`` (`lstm_step`), the same numbers."""
    lstm_forward_units(gates, xp, c_prev, w_ci, w_cf, w_co, peephole, c_new, tanh_c, out, 0, c_prev.shape[1])


@njit(**GLUE)
def lstm_forward_units(gates, xp, c_prev, w_ci, w_cf, w_co, peephole, c_new, tanh_c, out, lo, hi):
    """`lstm_forward` for units [lo, hi) of every row (a part of a team: `rnnkit.kernels.team`)."""
    hs = c_prev.shape[1]
    for b in range(gates.shape[0]):
        _lstm_row_forward(gate_views(gates[b], hs, lo, hi), gate_views(xp[b], hs, lo, hi), c_prev[b, lo:hi],
                          c_new[b, lo:hi], tanh_c[b, lo:hi], out[b, lo:hi], peep(w_ci, lo, hi), peep(w_cf, lo, hi),
                          peep(w_co, lo, hi), peephole)


@njit(**GLUE)
def peep(w, lo, hi):
    """Units [lo, hi) of a peephole weight (the empty array itself without peepholes)."""
    return w[lo:hi] if w.shape[0] else w


@njit(**INNER)
def _lstm_row_backward(dm, dc, d, tc, cp, w_ci, w_cf, w_co, peephole, from_c):
    """One row of `lstm_backward` for the units of ``dc``: ``d`` the `gate_views` of its row, [i, f, g, o] on entry
    and δa on exit. Read and written through the same views, the loop vectorizes; gates read through one set of
    views and δa written through another over the same memory, LLVM's overlap check failed and the loop ran
    element by element (an LSTM backward loop's pointwise steps at B = 16, H = 256: 2.85 against 0.44 ms)."""
    di, df, dg, do = d
    for j in range(dc.shape[0]):  # δa_o and δc_t through tanh(c_t) first, a loop of its own as in the forward
        # (`_lstm_row_forward`; `lstm_backward` at B = 16, H = 256 in cache: 16.0 → 14.4 µs)
        o = do[j]
        t = tanh(tc[j]) if from_c else tc[j]
        da_o = dm[j] * t * dsigmoid(o)
        c_grad = dc[j] + dm[j] * o * dtanh(t)
        if peephole:
            c_grad += da_o * w_co[j]
        do[j], dc[j] = da_o, c_grad
    for j in range(dc.shape[0]):
        i, f, g, c_grad = di[j], df[j], dg[j], dc[j]
        da_i = c_grad * g * dsigmoid(i)
        da_f = c_grad * cp[j] * dsigmoid(f)
        di[j], df[j], dg[j] = da_i, da_f, c_grad * i * dtanh(g)
        c_grad = c_grad * f
        if peephole:
            c_grad += da_i * w_ci[j] + da_f * w_cf[j]
        dc[j] = c_grad


@njit(**JIT)
def lstm_backward(dm, dc, gates, tanh_c, c_prev, w_ci, w_cf, w_co, peephole, dxp, from_c):
    """`LSTMStep.step_backward` before the GEMM δh_{t-1} = δa W_hh: from δm (n, H) and δc_t (n, H, overwritten
    with δc_{t-1}) write δa = [δa_i, δa_f, δa_g, δa_o] into ``dxp`` (n, 4H), ``gates`` itself or an array apart
    from it (`lstm_backward_units`). ``tanh_c`` holds tanh(c_t), or c_t itself with ``from_c`` (the whole-sequence
    loop keeps no tanh(c_t) history and takes the tanh again)."""
    lstm_backward_units(dm, dc, gates, tanh_c, c_prev, w_ci, w_cf, w_co, peephole, dxp, from_c, 0, dc.shape[1])


@njit(**GLUE)
def lstm_backward_units(dm, dc, gates, tanh_c, c_prev, w_ci, w_cf, w_co, peephole, dxp, from_c, lo, hi):
    """`lstm_backward` for units [lo, hi) of every row (a part of a team). ``dxp`` is ``gates`` itself (the
    whole-sequence loop writes δa over the gate history) or apart from it: then the units' gates are copied into
    it first, and δa goes over them there (`rnnkit.kernels.sequence_loop.gates_into_grads`)."""
    hs = dc.shape[1]
    gates_into_grads(gates, dxp, 4, lo, hi)
    for b in range(dc.shape[0]):
        _lstm_row_backward(dm[b, lo:hi], dc[b, lo:hi], gate_views(dxp[b], hs, lo, hi), tanh_c[b, lo:hi],
                           c_prev[b, lo:hi], peep(w_ci, lo, hi), peep(w_cf, lo, hi), peep(w_co, lo, hi), peephole,
                           from_c)


@njit(**GLUE)
def lstm_step(params, t, n, read, write, xp, states, team):
    """`LSTMStep.step` for the whole-sequence loop: the product h_{t−1} W_hhᵀ (BLAS) into a (B, 4H) buffer that stays in
    cache, the fused pointwise forward on xp_t + product, its gates written over xp_t (the projection becomes the
    gate history: no second (T, B, 4H) array), then h_t = m_t W_hrᵀ with a projection. In a team
    (`rnnkit.kernels.team`; never with a projection) the product's columns and the pointwise math of this part's
    units only. params = (W_hhᵀ, w_ci, w_cf, w_co, peephole, product (B, 4H), tanh_c (B, H) of one step (the
    backward takes the tanh of c_t again), m (T, B, H), W_hrᵀ, projected, m_h, scratch, recurrent_history), each
    weight a `rnnkit.kernels.blas.loop_weight` tuple; m and W_hrᵀ are unused without a projection; m_h (B, P) the
    recurrent dropout mask (h_{t−1} ⊙ m_h, in scratch (B, P), enters the product) or (0, 0); recurrent_history (T,
    B, P) what the product reads in place of h_{t−1} (a Mogrifier's last h after its rounds,
    `rnnkit.kernels.mogrifier`), or (0, 0, 0) for h_{t−1} itself."""
    w_hh_t, w_ci, w_cf, w_co, peephole, product, tanh_c, m, w_hr_t, projected, mask, masked, recurrent_history = params
    h, c = states
    p = product[:n]
    lo, hi = own_units(c.shape[2], team)
    h_prev = h[read, :n] if recurrent_history.shape[0] == 0 else recurrent_history[t, :n]
    matmul_gate_units(recurrent_read(h_prev, mask, masked, team), w_hh_t, p, 4, team)
    out = m[t, :n] if projected else h[write, :n]  # o ⊙ tanh(c_t): m_t, or h_t itself
    lstm_forward_units(xp, p, c[read, :n], w_ci, w_cf, w_co, peephole, c[write, :n], tanh_c[:n], out, lo, hi)
    if projected:
        matmul_weight(out, w_hr_t, h[write, :n], False)  # h_t = m_t W_hrᵀ


@njit(**GLUE)
def lstm_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`LSTMStep.step_backward` for the whole-sequence loop: (δm = δh W_hr, keeping δh_t for δW_hr), the fused
    pointwise backward (tanh(c_t) taken again from c_t), δh_{t−1} = (δa W_hh) ⊙ m_h (BLAS). In a team: δa of this
    part's units, the barrier (the product reads all of δa), then this part's units of δh_{t−1}. params = (W_hh,
    w_ci, w_cf, w_co, peephole, gates, dh (T, B, P) the δh_t history, W_hr, projected, scratch (B, H), m_h (B, P)
    or (0, 0))."""
    w_hh, w_ci, w_cf, w_co, peephole, gates, dh_history, w_hr, projected, scratch, mask = params
    c = states[1]
    dh, dc = dstate[0][:n], dstate[1][:n]
    if projected:
        copy_rows(dh, dh_history[t, :n], 0, dh.shape[1])
        dm = scratch[:n]
        matmul_weight(dh, w_hr, dm, False)  # δm = δh W_hr
    else:
        dm = dh
    lo, hi = own_units(dc.shape[1], team)
    lstm_backward_units(dm, dc, gates[t, :n], c[write, :n], c[read, :n], w_ci, w_cf, w_co, peephole, dxp, True, lo, hi)
    barrier(team)
    matmul_columns(dxp, w_hh, dh, team, False)  # δh_{t−1} = (δa W_hh) ⊙ m_h
    through_mask(dh, mask, lo, hi)


@njit(**JIT)
def lstm_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `lstm_step`."""
    sequence_forward(lstm_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def lstm_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `lstm_step_backward`."""
    sequence_backward(lstm_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
