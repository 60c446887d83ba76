"""Compiled kernels of minGRU and minLSTM in their sequential mode (`rnnkit.recurrent.minimal`): the pointwise
step forward and backward (no recurrent GEMM: h_t = a_t ⊙ h_{t−1} + b_t) as the steps of the whole-sequence loop
(`rnnkit.kernels.sequence_loop`). Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

import numpy as np

from .jit import GLUE, INNER, JIT, njit, one, sigmoid, zero
from .sequence_loop import sequence_backward, sequence_forward


@njit(**INNER)
def _log_sigmoid(k):
    """log σ(k) = −(max(−k, 0) + log(1 + e^{−|k|})), finite for every finite k."""
    return -(max(-k, zero(k)) + np.log1p(np.exp(-abs(k))))


@njit(**INNER)
def _min_row_forward(x, hp, lstm, g, a_out, h):
    """One row of `min_step`: gates, decay a and h = a ⊙ h_{t-1} + b (`MinGRUStep.coefficients`,
    `MinLSTMStep.coefficients`, `MinimalStep.step`)."""
    hs = h.shape[0]
    for j in range(hs):
        if lstm:
            k_f, k_i, h_tilde = x[j], x[hs + j], x[2 * hs + j]
            log_f, log_i = _log_sigmoid(k_f), _log_sigmoid(k_i)
            a, i_norm = sigmoid(log_f - log_i), sigmoid(log_i - log_f)  # f' = f / (f + i), i' = i / (f + i)
            g[j], g[hs + j], g[2 * hs + j] = sigmoid(k_f), sigmoid(k_i), h_tilde
            h[j] = a * hp[j] + i_norm * h_tilde
        else:
            k_z, h_tilde = x[j], x[hs + j]
            z, a = sigmoid(k_z), sigmoid(-k_z)  # a = 1 − z
            g[j], g[hs + j] = z, h_tilde
            h[j] = a * hp[j] + z * h_tilde
        a_out[j] = a


@njit(**INNER)
def _min_row_backward(dh, g, a, hp, lstm, d):
    """One row of `min_step_backward` (`coefficients_backward` with δa = δh ⊙ h_{t-1}, δb = δh)."""
    hs = dh.shape[0]
    for j in range(hs):
        grad, decay = dh[j], a[j]
        if lstm:
            f, i, h_tilde = g[j], g[hs + j], g[2 * hs + j]
            i_norm = one(decay) - decay
            e = grad * (hp[j] - h_tilde) * decay * i_norm
            d[j], d[hs + j], d[2 * hs + j] = e * (one(f) - f), e * (i - one(i)), grad * i_norm
        else:
            z, h_tilde = g[j], g[hs + j]
            d[j], d[hs + j] = grad * (h_tilde - hp[j]) * z * decay, grad * z
        dh[j] = grad * decay


@njit(**GLUE)
def min_step(params, t, n, read, write, xp, states, team):
    """`MinimalStep.step` for the whole-sequence loop, minGRU (``lstm`` false) or minLSTM: writes the activated
    gates and the decay a_t of step t and h_t = a_t ⊙ h_{t−1} + b_t. params = (lstm, gates (T, B, G),
    decay (T, B, H))."""
    lstm, gates, decay = params
    h = states[0]
    for b in range(n):
        _min_row_forward(xp[b], h[read, b], lstm, gates[t, b], decay[t, b], h[write, b])


@njit(**GLUE)
def min_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`MinimalStep.step_backward` for the whole-sequence loop: δxp_t from δh_t, δh_{t−1} = δh_t ⊙ a_t.
    params as `min_step`'s."""
    lstm, gates, decay = params
    dh, h = dstate[0], states[0]
    for b in range(n):
        _min_row_backward(dh[b], gates[t, b], decay[t, b], h[read, b], lstm, dxp[b])


@njit(**JIT)
def min_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `min_step`."""
    sequence_forward(min_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def min_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `min_step_backward`."""
    sequence_backward(min_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
