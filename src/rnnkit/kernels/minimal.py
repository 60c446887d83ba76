"""Compiled kernels of minGRU and minLSTM in their sequential mode (`rnnkit.recurrent.minimal`): the pointwise
step forward and backward (no recurrent GEMM: h_t = a_t ⊙ h_{t−1} + b_t) as the steps of the whole-sequence loop
(`rnnkit.kernels.sequence_loop`). Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .jit import GLUE, INNER, JIT, exp, njit, one, sigmoid, zero
from .sequence_loop import sequence_backward, sequence_forward


@njit(**GLUE)  # inlined by numba: as a function of its own, LLVM left it a call in the row loop (three inlined
def _normalised_gates(k_f, k_i):  # e^x over its inlining budget at numba's level 2), and the loop stayed scalar
    """f' = f / (f + i) and i' = i / (f + i) for f = σ(k_f), i = σ(k_i) (where the NumPy code goes through logs,
    `MinLSTMStep.coefficients`). With E = e^{−k}, f / (f + i) = (1 + E_i) / (2 + E_f + E_i); each term is scaled by
    e^{−m}, m = max(0, −k_f, −k_i), so that no exponent is positive and one is 0: the denominator is at least 1, and
    the three e^x (`exp`, which vectorizes in float32) cannot overflow — finite for every k_f, k_i whose difference
    is finite (|k| under half the largest float)."""
    m = max(max(-k_f, -k_i), zero(k_f))
    e_0, e_f, e_i = exp(-m), exp(-k_f - m), exp(-k_i - m)
    scale = one(k_f) / (e_0 + e_0 + e_f + e_i)
    return (e_0 + e_i) * scale, (e_0 + e_f) * scale


@njit(**INNER)
def _minlstm_row_forward(x, hp, g, a_out, h):
    """One row of `min_step` for minLSTM: gates [f, i, h̃], decay a = f' and h = f' ⊙ h_{t-1} + i' ⊙ h̃
    (`MinLSTMStep.coefficients`, `MinimalStep.step`)."""
    hs = h.shape[0]
    for j in range(hs):
        k_f, k_i, h_tilde = x[j], x[hs + j], x[2 * hs + j]
        a, i_norm = _normalised_gates(k_f, k_i)  # f', i'
        g[j], g[hs + j], g[2 * hs + j] = sigmoid(k_f), sigmoid(k_i), h_tilde
        h[j] = a * hp[j] + i_norm * h_tilde
        a_out[j] = a


@njit(**INNER)
def _mingru_row_forward(x, hp, g, a_out, h):
    """One row of `min_step` for minGRU: gates [z, h̃], decay a = 1 − z and h = a ⊙ h_{t-1} + z ⊙ h̃
    (`MinGRUStep.coefficients`, `MinimalStep.step`)."""
    hs = h.shape[0]
    for j in range(hs):
        k_z, h_tilde = x[j], x[hs + j]
        z, a = sigmoid(k_z), sigmoid(-k_z)  # a = 1 − z
        g[j], g[hs + j] = z, h_tilde
        h[j] = a * hp[j] + z * h_tilde
        a_out[j] = a


@njit(**INNER)
def _minlstm_row_backward(dh, g, a, hp, d):
    """One row of `min_step_backward` for minLSTM (`MinLSTMStep.coefficients_backward` with δa = δh ⊙ h_{t-1},
    δb = δh): δxp into ``d``, δh ← δh ⊙ a."""
    hs = dh.shape[0]
    for j in range(hs):
        grad, decay = dh[j], a[j]
        f, i, h_tilde = g[j], g[hs + j], g[2 * hs + j]
        i_norm = one(decay) - decay
        e = grad * (hp[j] - h_tilde) * decay * i_norm
        d[j], d[hs + j], d[2 * hs + j] = e * (one(f) - f), e * (i - one(i)), grad * i_norm
        dh[j] = grad * decay


@njit(**INNER)
def _mingru_row_backward(dh, g, a, hp, d):
    """One row of `min_step_backward` for minGRU (`MinGRUStep.coefficients_backward`), as `_minlstm_row_backward`."""
    hs = dh.shape[0]
    for j in range(hs):
        grad, decay = dh[j], a[j]
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
    for b in range(n):  # each cell its own row loop: a branch inside one would keep minLSTM's from vectorizing
        if lstm:
            _minlstm_row_forward(xp[b], h[read, b], gates[t, b], decay[t, b], h[write, b])
        else:
            _mingru_row_forward(xp[b], h[read, b], gates[t, b], decay[t, b], h[write, b])


@njit(**GLUE)
def min_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`MinimalStep.step_backward` for the whole-sequence loop: δxp_t from δh_t, δh_{t−1} = δh_t ⊙ a_t.
    params as `min_step`'s."""
    lstm, gates, decay = params
    dh, h = dstate[0], states[0]
    for b in range(n):
        if lstm:
            _minlstm_row_backward(dh[b], gates[t, b], decay[t, b], h[read, b], dxp[b])
        else:
            _mingru_row_backward(dh[b], gates[t, b], decay[t, b], h[read, b], dxp[b])


@njit(**JIT)
def min_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `min_step`."""
    sequence_forward(min_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def min_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `min_step_backward`."""
    sequence_backward(min_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
