"""Compiled kernels of the LSTM (`rnnkit.recurrent.lstm.LSTMStep`): the fused pointwise step forward and backward,
and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`), peepholes and projection included.
Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from numba import njit

from .blas import matmul_weight
from .jit import JIT, dsigmoid, dtanh, sigmoid, tanh
from .sequence_loop import copy_rows, recurrent_read, sequence_backward, sequence_forward, through_mask


@njit(**JIT)
def _lstm_row_forward(a, x, cp, cn, tc, y, w_ci, w_cf, w_co, peephole):
    """One row of `lstm_forward` (1-D arrays of one batch row)."""
    hs = cp.shape[0]
    for j in range(hs):
        a_i, a_f = a[j] + x[j], a[hs + j] + x[hs + j]
        if peephole:
            a_i += w_ci[j] * cp[j]
            a_f += w_cf[j] * cp[j]
        i, f, g = sigmoid(a_i), sigmoid(a_f), tanh(a[2 * hs + j] + x[2 * hs + j])
        c = f * cp[j] + i * g
        a_o = a[3 * hs + j] + x[3 * hs + j]
        if peephole:
            a_o += w_co[j] * c
        o = sigmoid(a_o)
        t = tanh(c)
        a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j] = i, f, g, o
        cn[j], tc[j], y[j] = c, t, o * t


@njit(**JIT)
def lstm_forward(gates, xp, c_prev, w_ci, w_cf, w_co, peephole, c_new, tanh_c, out):
    """`LSTMStep.step` after the GEMM. ``gates`` (n, 4H) holds h_{t-1} W_hhᵀ on entry and the activated
    [i, f, g, o] on exit; writes c_t, tanh(c_t) and ``out`` = o ⊙ tanh(c_t) (h_t, or m_t with a projection).
    The sum is symmetric: the whole-sequence loop passes the projection's row block as ``gates`` and the product
    as ``xp`` (`lstm_step`), the same numbers."""
    for b in range(gates.shape[0]):
        _lstm_row_forward(gates[b], xp[b], c_prev[b], c_new[b], tanh_c[b], out[b], w_ci, w_cf, w_co, peephole)


@njit(**JIT)
def _lstm_row_backward(dm, dc, a, tc, cp, d, w_ci, w_cf, w_co, peephole, from_c):
    """One row of `lstm_backward`."""
    hs = dc.shape[0]
    for j in range(hs):
        i, f, g, o = a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j]
        t = tanh(tc[j]) if from_c else tc[j]
        da_o = dm[j] * t * dsigmoid(o)
        c_grad = dc[j] + dm[j] * o * dtanh(t)
        if peephole:
            c_grad += da_o * w_co[j]
        da_i = c_grad * g * dsigmoid(i)
        da_f = c_grad * cp[j] * dsigmoid(f)
        d[j], d[hs + j], d[2 * hs + j], d[3 * hs + j] = da_i, da_f, c_grad * i * dtanh(g), da_o
        c_grad = c_grad * f
        if peephole:
            c_grad += da_i * w_ci[j] + da_f * w_cf[j]
        dc[j] = c_grad


@njit(**JIT)
def lstm_backward(dm, dc, gates, tanh_c, c_prev, w_ci, w_cf, w_co, peephole, dxp, from_c):
    """`LSTMStep.step_backward` before the GEMM δh_{t-1} = δa W_hh: from δm (n, H) and δc_t (n, H, overwritten
    with δc_{t-1}) write δa = [δa_i, δa_f, δa_g, δa_o] into ``dxp`` (n, 4H). ``tanh_c`` holds tanh(c_t), or c_t
    itself with ``from_c`` (the whole-sequence loop keeps no tanh(c_t) history and takes the tanh again)."""
    for b in range(dc.shape[0]):
        _lstm_row_backward(dm[b], dc[b], gates[b], tanh_c[b], c_prev[b], dxp[b], w_ci, w_cf, w_co, peephole, from_c)


@njit(**JIT)
def lstm_step(params, t, n, read, write, xp, states):
    """`LSTMStep.step` for the whole-sequence loop: the product h_{t−1} W_hhᵀ (BLAS) into a (B, 4H) buffer that
    stays in cache, the fused pointwise forward on xp_t + product, its gates written over xp_t (the projection
    becomes the gate history: no second (T, B, 4H) array), then h_t = m_t W_hrᵀ with a projection.
    params = (W_hhᵀ, w_ci, w_cf, w_co, peephole, product (B, 4H), tanh_c (B, H) of one step (the backward takes
    the tanh of c_t again), m (T, B, H), W_hrᵀ, projected, m_h, scratch), each weight a
    `rnnkit.kernels.blas.loop_weight` triple; m and W_hrᵀ are unused without a projection; m_h (B, P) the recurrent
    dropout mask (h_{t−1} ⊙ m_h, in scratch (B, P), enters the product) or (0, 0)."""
    w_hh_t, w_ci, w_cf, w_co, peephole, product, tanh_c, m, w_hr_t, projected, mask, masked = params
    h, c = states
    p = product[:n]
    matmul_weight(recurrent_read(h[read, :n], mask, masked), w_hh_t, p, False)
    out = m[t, :n] if projected else h[write, :n]  # o ⊙ tanh(c_t): m_t, or h_t itself
    lstm_forward(xp, p, c[read, :n], w_ci, w_cf, w_co, peephole, c[write, :n], tanh_c[:n], out)
    if projected:
        matmul_weight(out, w_hr_t, h[write, :n], False)  # h_t = m_t W_hrᵀ


@njit(**JIT)
def lstm_step_backward(params, t, n, read, write, dstate, states, dxp):
    """`LSTMStep.step_backward` for the whole-sequence loop: (δm = δh W_hr, keeping δh_t for δW_hr), the fused
    pointwise backward (tanh(c_t) taken again from c_t), δh_{t−1} = (δa W_hh) ⊙ m_h (BLAS). params = (W_hh, w_ci,
    w_cf, w_co, peephole, gates, dh (T, B, P) the δh_t history, W_hr, projected, scratch (B, H), m_h (B, P) or
    (0, 0))."""
    w_hh, w_ci, w_cf, w_co, peephole, gates, dh_history, w_hr, projected, scratch, mask = params
    c = states[1]
    dh, dc = dstate[0][:n], dstate[1][:n]
    if projected:
        copy_rows(dh, dh_history[t, :n])
        dm = scratch[:n]
        matmul_weight(dh, w_hr, dm, False)  # δm = δh W_hr
    else:
        dm = dh
    lstm_backward(dm, dc, gates[t, :n], c[write, :n], c[read, :n], w_ci, w_cf, w_co, peephole, dxp, True)
    matmul_weight(dxp, w_hh, dh, False)  # δh_{t−1} = (δa W_hh) ⊙ m_h
    through_mask(dh, mask)


@njit(**JIT)
def lstm_sequence_forward(params, xp, states, counts, reverse, zoneout):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `lstm_step`."""
    sequence_forward(lstm_step, params, xp, states, counts, reverse, zoneout)


@njit(**JIT)
def lstm_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `lstm_step_backward`."""
    sequence_backward(lstm_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout)
