"""Compiled kernels of the newer cells — IndRNN, minGRU/minLSTM, the layer-normalised LSTM and GRU — written
as `rnnkit.kernels.compiled` describes and exported through it (cells call them as ``ws.kernels.NAME``)."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

from .jit import JIT, _is32, dsigmoid, dtanh, gru_gate_grads, one, sigmoid, tanh, zero


# -- IndRNN ----------------------------------------------------------------------------------------------------
@njit(**JIT)
def _indrnn_row_forward(h_prev, u, x, relu, h):
    """One row of `indrnn_forward`."""
    for j in range(h.shape[0]):
        a = x[j] + u[j] * h_prev[j]
        h[j] = max(a, zero(a)) if relu else tanh(a)


@njit(**JIT)
def _indrnn_row_backward(dh, h, u, relu, d):
    """One row of `indrnn_backward`."""
    for j in range(dh.shape[0]):
        if relu:
            da = dh[j] if h[j] > zero(h[j]) else zero(h[j])
        else:
            da = dh[j] * dtanh(h[j])
        d[j] = da
        dh[j] = da * u[j]


@njit(**JIT)
def indrnn_forward(h_prev, u, xp, relu, h):
    """`IndRNNStep.step`: h_t = φ(xp + u ⊙ h_{t-1}), φ = relu or tanh. h_prev, xp, h (n, H); u (H,)."""
    for b in range(h.shape[0]):
        _indrnn_row_forward(h_prev[b], u, xp[b], relu, h[b])


@njit(**JIT)
def indrnn_backward(dh, h, u, relu, dxp):
    """`IndRNNStep.step_backward`: δa = δh ⊙ φ'(a) into ``dxp``; ``dh`` ← δh_{t-1} = δa ⊙ u."""
    for b in range(dh.shape[0]):
        _indrnn_row_backward(dh[b], h[b], u, relu, dxp[b])


@njit(**JIT)
def indrnn_sequence_forward(xp, u, counts, reverse, relu, h):
    """The whole time loop of `Recurrence.forward` for an IndRNN: xp (T, B, H); h (T+1, B, H) the state history
    holding the initial state in slot 0 (slot T when ``reverse``); counts (T,) rows still inside their sequence."""
    steps, batch = xp.shape[0], xp.shape[1]
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        read, write = (t + 1, t) if reverse else (t, t + 1)
        for b in range(counts[t]):
            _indrnn_row_forward(h[read, b], u, xp[t, b], relu, h[write, b])
        for b in range(counts[t], batch):  # rows past their end carry their state
            h[write, b] = h[read, b]


@njit(**JIT)
def indrnn_sequence_backward(dy, dh, u, counts, reverse, detach, relu, h, dxp):
    """The whole backward loop for `indrnn_sequence_forward`: dy (T, B, H); dh (B, H) holds δ(final state) on entry
    and δ(initial state) on exit; writes δa into dxp (T, B, H). ``detach``: the gradient stops at each step."""
    steps = dy.shape[0]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        write = t if reverse else t + 1
        for b in range(counts[t]):
            dhb = dh[b]
            dhb += dy[t, b]
            _indrnn_row_backward(dhb, h[write, b], u, relu, dxp[t, b])
            if detach:
                dhb[:] = 0


# -- minGRU / minLSTM (sequential mode) -------------------------------------------------------------------------
@njit(**JIT)
def _log_sigmoid(k):
    """log σ(k) = −(max(−k, 0) + log(1 + e^{−|k|})), finite for every finite k."""
    return -(max(-k, zero(k)) + np.log1p(np.exp(-abs(k))))


@njit(**JIT)
def _min_row_forward(x, hp, lstm, g, a_out, h):
    """One row of `min_sequence_forward`: gates, decay a and h = a ⊙ h_{t-1} + b (`MinGRUStep.coefficients`,
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


@njit(**JIT)
def _min_row_backward(dh, g, a, hp, lstm, d):
    """One row of `min_sequence_backward` (`coefficients_backward` with δa = δh ⊙ h_{t-1}, δb = δh)."""
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


@njit(**JIT)
def min_sequence_forward(xp, counts, reverse, lstm, gates, decay, h):
    """The whole time loop of `Recurrence.forward` for minGRU (``lstm`` false) or minLSTM: xp (T, B, G); gates
    (T, B, G), decay (T, B, H): workspace; h (T+1, B, H) the state history with the initial state in slot 0
    (slot T when ``reverse``); counts (T,) rows still inside their sequence."""
    steps, batch = xp.shape[0], xp.shape[1]
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        read, write = (t + 1, t) if reverse else (t, t + 1)
        for b in range(counts[t]):
            _min_row_forward(xp[t, b], h[read, b], lstm, gates[t, b], decay[t, b], h[write, b])
        for b in range(counts[t], batch):  # rows past their end carry their state
            h[write, b] = h[read, b]


@njit(**JIT)
def min_sequence_backward(dy, dh, counts, reverse, detach, lstm, gates, decay, h, dxp):
    """The whole backward loop for `min_sequence_forward`: dy (T, B, H); dh (B, H) holds δ(final state) on entry
    and δ(initial state) on exit; writes δxp into dxp (T, B, G). ``detach``: the gradient stops at each step."""
    steps = dy.shape[0]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        read = t + 1 if reverse else t
        for b in range(counts[t]):
            dhb = dh[b]
            dhb += dy[t, b]
            _min_row_backward(dhb, gates[t, b], decay[t, b], h[read, b], lstm, dxp[t, b])
            if detach:
                dhb[:] = 0


# -- layer-normalised LSTM and GRU -------------------------------------------------------------------------------
def like(x, value):  # pragma: no cover - replaced by the overload inside compiled code
    """``value`` (a number) in the type of ``x``."""


@overload(like, jit_options=JIT)
def _like_overload(x, value):
    if _is32(x):
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@njit(**JIT)
def _layer_norm_row(v, gamma, beta, hat, out):
    """`rnnkit.recurrent.layernorm.layer_norm` of one row: hat ← v̂ = (v − μ) s, out ← γ ⊙ v̂ + β (``out`` may be
    ``v``); returns s = 1/√(σ² + 1e-5), σ² the biased variance over the row."""
    width = like(v[0], v.shape[0])
    mean = zero(v[0])
    for j in range(v.shape[0]):
        mean += v[j]
    mean = mean / width
    var = zero(mean)
    for j in range(v.shape[0]):
        d = v[j] - mean
        hat[j] = d
        var += d * d
    inv = one(mean) / np.sqrt(var / width + like(mean, 1e-5))
    for j in range(v.shape[0]):
        hat[j] *= inv
        out[j] = gamma[j] * hat[j] + beta[j]
    return inv


@njit(**JIT)
def _layer_norm_row_backward(d_hat, hat, inv):
    """`layer_norm_backward` of one row, in place: δv̂ (= δy ⊙ γ) → δv = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩)."""
    width = like(inv, d_hat.shape[0])
    mean_d, mean_dh = zero(inv), zero(inv)
    for j in range(d_hat.shape[0]):
        mean_d += d_hat[j]
        mean_dh += d_hat[j] * hat[j]
    mean_d, mean_dh = mean_d / width, mean_dh / width
    for j in range(d_hat.shape[0]):
        d_hat[j] = inv * (d_hat[j] - mean_d - hat[j] * mean_dh)


@njit(**JIT)
def layer_norm_rows(v, gamma, beta, hat, inv_std, out):
    """`rnnkit.recurrent.layernorm.layer_norm` of every row of v (N, G): ``hat``, ``inv_std`` (N, 1), ``out``."""
    for r in range(v.shape[0]):
        inv_std[r, 0] = _layer_norm_row(v[r], gamma, beta, hat[r], out[r])


@njit(**JIT)
def layer_norm_rows_backward(dy, gamma, hat, inv_std, out):
    """`rnnkit.recurrent.layernorm.layer_norm_backward` of every row: δv = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩), δv̂ = δy ⊙ γ."""
    for r in range(dy.shape[0]):
        row = out[r]
        for j in range(row.shape[0]):
            row[j] = dy[r, j] * gamma[j]
        _layer_norm_row_backward(row, hat[r], inv_std[r, 0])


@njit(**JIT)
def lnlstm_forward(gates, xp, g_h, b_h, g_c, b_c, c_prev, h_hat, h_inv, c_new, c_hat, c_inv, tanh_u, h_new):
    """`LayerNormLSTMStep.step` after the GEMM: ``gates`` (n, 4H) holds h_{t-1} W_hhᵀ on entry and the activated
    [i, f, g, o] on exit; writes ĥ, s_h (n,), c_t, ĉ, s_c (n,), k = tanh(γ_c ⊙ ĉ + β_c) and h_t = o ⊙ k."""
    hs = c_prev.shape[1]
    for b in range(gates.shape[0]):
        a, x, cp, cn, k = gates[b], xp[b], c_prev[b], c_new[b], tanh_u[b]
        h_inv[b] = _layer_norm_row(a, g_h, b_h, h_hat[b], a)  # a ← γ_h ⊙ ĥ + β_h
        for j in range(hs):
            i, f = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
            g, o = tanh(a[2 * hs + j] + x[2 * hs + j]), sigmoid(a[3 * hs + j] + x[3 * hs + j])
            a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j] = i, f, g, o
            cn[j] = f * cp[j] + i * g
        c_inv[b] = _layer_norm_row(cn, g_c, b_c, c_hat[b], k)  # k ← u = γ_c ⊙ ĉ + β_c
        for j in range(hs):
            k[j] = tanh(k[j])
            h_new[b, j] = a[3 * hs + j] * k[j]


@njit(**JIT)
def lnlstm_backward(dh, dc, gates, tanh_u, c_hat, c_inv, g_c, c_prev, h_hat, h_inv, g_h, dxp, du, dp_h):
    """`LayerNormLSTMStep.step_backward` before the GEMM δh_{t-1} = δP_h W_hh: from δh_t and δc_t (``dc``,
    overwritten with δc_{t-1}) write δa into ``dxp`` (n, 4H), δu into ``du`` (n, H), δP_h into ``dp_h`` (n, 4H)."""
    hs = dc.shape[1]
    for b in range(dc.shape[0]):
        a, k, d, dub, dp = gates[b], tanh_u[b], dxp[b], du[b], dp_h[b]
        dc_norm = dp[:hs]  # scratch until δP_h is written
        for j in range(hs):
            o = a[3 * hs + j]
            d[3 * hs + j] = dh[b, j] * k[j] * dsigmoid(o)
            dub[j] = dh[b, j] * o * dtanh(k[j])
            dc_norm[j] = dub[j] * g_c[j]
        _layer_norm_row_backward(dc_norm, c_hat[b], c_inv[b])
        for j in range(hs):
            i, f, g = a[j], a[hs + j], a[2 * hs + j]
            c_grad = dc[b, j] + dc_norm[j]
            d[j] = c_grad * g * dsigmoid(i)
            d[hs + j] = c_grad * c_prev[b, j] * dsigmoid(f)
            d[2 * hs + j] = c_grad * i * dtanh(g)
            dc[b, j] = c_grad * f
        for j in range(4 * hs):
            dp[j] = d[j] * g_h[j]
        _layer_norm_row_backward(dp, h_hat[b], h_inv[b])


@njit(**JIT)
def lngru_forward(gates, xp, g_h, b_h, b_hn, h_prev, h_hat, h_inv, inner, h_new):
    """`LayerNormGRUStep.step` after the GEMM: ``gates`` (n, 3H) holds h_{t-1} W_hhᵀ on entry, the activated
    [r, z, n] on exit; writes ĥ, s_h (n,), ``inner`` ← q_n + b_hn and h_t = n + z ⊙ (h_{t-1} − n)."""
    hs = h_prev.shape[1]
    for b in range(gates.shape[0]):
        a, x, q, hp = gates[b], xp[b], inner[b], h_prev[b]
        h_inv[b] = _layer_norm_row(a, g_h, b_h, h_hat[b], a)  # a ← q = γ_h ⊙ ĥ + β_h
        for j in range(hs):
            r, z = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
            q_j = a[2 * hs + j] + b_hn[j]
            n = tanh(x[2 * hs + j] + r * q_j)
            a[j], a[hs + j], a[2 * hs + j], q[j] = r, z, n, q_j
            h_new[b, j] = n + z * (hp[j] - n)


@njit(**JIT)
def lngru_backward(dh, gates, inner, h_prev, h_hat, h_inv, g_h, dxp, dp_h):
    """`LayerNormGRUStep.step_backward` before the GEMM δh_{t-1} += δP_h W_hh: writes [δa_r, δa_z, δa_n] into
    ``dxp``, δP_h = LN⁻(δq) with δq = [δa_r, δa_z, δa_n ⊙ r] into ``dp_h``, and leaves δh ⊙ z in ``dh``."""
    hs = dh.shape[1]
    for b in range(dh.shape[0]):
        a, q, hp, d, dp, dhb = gates[b], inner[b], h_prev[b], dxp[b], dp_h[b], dh[b]
        for j in range(hs):
            r, z, n = a[j], a[hs + j], a[2 * hs + j]
            da_r, da_z, da_n = gru_gate_grads(dhb[j], r, z, n, hp[j], q[j])
            d[j], d[hs + j], d[2 * hs + j] = da_r, da_z, da_n
            dp[j], dp[hs + j], dp[2 * hs + j] = da_r * g_h[j], da_z * g_h[hs + j], da_n * r * g_h[2 * hs + j]
            dhb[j] = dhb[j] * z
        _layer_norm_row_backward(dp, h_hat[b], h_inv[b])
