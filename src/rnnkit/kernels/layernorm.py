"""Compiled kernels of the layer-normalised LSTM and GRU (`rnnkit.recurrent.lnlstm`, `rnnkit.recurrent.lngru`)
and of the whole-sequence input normalisation (`rnnkit.recurrent.layernorm`): layer norm of a row and its
backward, fused with each cell's pointwise step, and the steps of the whole-sequence loop
(`rnnkit.kernels.sequence_loop`). Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

import numpy as np

from .blas import matmul_columns
from .gru import gate_views3, gru_row_reset_after
from .jit import GLUE, INNER, JIT, dsigmoid, dtanh, gru_gate_grads, like, njit, one, row_dot, row_sum, sigmoid, tanh
from .sequence_loop import gates_into_grads, history_slot, sequence_backward, sequence_forward
from .team import barrier, own_rows


@njit(**INNER)
def _layer_norm_row(v, gamma, beta, hat, out):
    """`rnnkit.recurrent.layernorm.layer_norm` of one row: hat ← v̂ = (v − μ) s, out ← γ ⊙ v̂ + β (``out`` may be
    ``v``); returns s = 1/√(σ² + 1e-5), σ² the biased variance over the row."""
    width = like(v[0], v.shape[0])
    mean = row_sum(v) / width
    for j in range(v.shape[0]):
        hat[j] = v[j] - mean
    inv = one(mean) / np.sqrt(row_dot(hat, hat) / width + like(mean, 1e-5))
    for j in range(v.shape[0]):
        hat[j] *= inv
        out[j] = gamma[j] * hat[j] + beta[j]
    return inv


@njit(**INNER)
def _layer_norm_row_backward(d_hat, hat, inv):
    """`layer_norm_backward` of one row, in place: δv̂ (= δy ⊙ γ) → δv = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩)."""
    width = like(inv, d_hat.shape[0])
    mean_d, mean_dh = row_sum(d_hat) / width, row_dot(d_hat, hat) / width
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
def lnlstm_forward(gates, xp, g_h, b_h, g_c, b_c, c_prev, h_hat, h_inv, c_new, c_hat, c_inv, tanh_u, h_new, gates_in_x):
    """`LayerNormLSTMStep.step` after the GEMM: ``gates`` (n, 4H) holds h_{t-1} W_hhᵀ on entry and the activated
    [i, f, g, o] on exit, or γ_h ⊙ ĥ + β_h with ``gates_in_x``, where the activated gates go over ``xp`` instead (the
    whole-sequence loop, whose gate history is the projection: `lnlstm_step`); writes ĥ, s_h (n,), c_t, ĉ, s_c (n,),
    k = tanh(γ_c ⊙ ĉ + β_c) and h_t = o ⊙ k."""
    for b in range(gates.shape[0]):
        h_inv[b], c_inv[b] = _lnlstm_row_forward(gates[b], xp[b], g_h, b_h, g_c, b_c, c_prev[b], h_hat[b], c_new[b],
                                                 c_hat[b], tanh_u[b], h_new[b], gates_in_x)


@njit(**INNER)
def _lnlstm_row_forward(a, x, g_h, b_h, g_c, b_c, cp, h_hat, cn, c_hat, k, hn, gates_in_x):
    """One row of `lnlstm_forward` (1-D arrays of one batch row, so that LLVM vectorizes the loops over units);
    returns (s_h, s_c). The flag is the same for the whole loop, so LLVM makes one vectorized loop per value (as
    `rnnkit.kernels.gru.gru_row_reset_after`'s)."""
    hs = cp.shape[0]
    h_inv = _layer_norm_row(a, g_h, b_h, h_hat, a)  # a ← γ_h ⊙ ĥ + β_h
    for j in range(hs):
        i, f = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
        g, o = tanh(a[2 * hs + j] + x[2 * hs + j]), sigmoid(a[3 * hs + j] + x[3 * hs + j])
        if gates_in_x:
            x[j], x[hs + j], x[2 * hs + j], x[3 * hs + j] = i, f, g, o
        else:
            a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j] = i, f, g, o
        cn[j] = f * cp[j] + i * g
        hn[j] = o  # o until h_t replaces it below
    c_inv = _layer_norm_row(cn, g_c, b_c, c_hat, k)  # k ← u = γ_c ⊙ ĉ + β_c
    for j in range(hs):
        k[j] = tanh(k[j])
        hn[j] = hn[j] * k[j]
    return h_inv, c_inv


@njit(**JIT)
def lnlstm_backward(dh, dc, gates, tanh_u, c_hat, c_inv, g_c, b_c, c_prev, h_hat, h_inv, g_h, dxp, du, dp_h, from_c):
    """`LayerNormLSTMStep.step_backward` before the GEMM δh_{t-1} = δP_h W_hh: from δh_t and δc_t (``dc``,
    overwritten with δc_{t-1}) write δa into ``dxp`` (n, 4H), δu into ``du`` (n, H), δP_h into ``dp_h`` (n, 4H).
    ``dxp`` is ``gates`` itself (the whole-sequence loop writes δa over the gate history) or apart from it: then
    the gates are copied into it first, and δa goes over them there
    (`rnnkit.kernels.sequence_loop.gates_into_grads`). ``tanh_u`` holds k = tanh(u), or, with ``from_c``, nothing
    this reads: k is taken again from ĉ, u = γ_c ⊙ ĉ + β_c (the whole-sequence loop keeps no history of k)."""
    gates_into_grads(gates, dxp, 4, 0, dc.shape[1])
    for b in range(dc.shape[0]):
        _lnlstm_row_backward(dh[b], dc[b], dxp[b], tanh_u[b], c_hat[b], c_inv[b], g_c, b_c, c_prev[b], h_hat[b],
                             h_inv[b], g_h, du[b], dp_h[b], from_c)


@njit(**INNER)
def _lnlstm_row_backward(dhb, dcb, d, k, c_hat, c_inv, g_c, b_c, cp, h_hat, h_inv, g_h, dub, dp, from_c):
    """One row of `lnlstm_backward`: ``d`` holds [i, f, g, o] on entry, δa on exit."""
    hs = dcb.shape[0]
    dc_norm = dp[:hs]  # scratch until δP_h is written
    for j in range(hs):
        o = d[3 * hs + j]
        kj = tanh(g_c[j] * c_hat[j] + b_c[j]) if from_c else k[j]
        d[3 * hs + j] = dhb[j] * kj * dsigmoid(o)
        dub[j] = dhb[j] * o * dtanh(kj)
        dc_norm[j] = dub[j] * g_c[j]
    _layer_norm_row_backward(dc_norm, c_hat, c_inv)
    for j in range(hs):
        i, f, g = d[j], d[hs + j], d[2 * hs + j]
        c_grad = dcb[j] + dc_norm[j]
        d[j] = c_grad * g * dsigmoid(i)
        d[hs + j] = c_grad * cp[j] * dsigmoid(f)
        d[2 * hs + j] = c_grad * i * dtanh(g)
        dcb[j] = c_grad * f
    for j in range(4 * hs):
        dp[j] = d[j] * g_h[j]
    _layer_norm_row_backward(dp, h_hat, h_inv)


@njit(**JIT)
def lngru_forward(gates, xp, g_h, b_h, b_hn, h_prev, h_hat, h_inv, inner, h_new, gates_in_x):
    """`LayerNormGRUStep.step` after the GEMM: ``gates`` (n, 3H) holds h_{t-1} W_hhᵀ on entry, the activated
    [r, z, n] on exit, or q = γ_h ⊙ ĥ + β_h with ``gates_in_x``, where the activated gates go over ``xp`` instead
    (the whole-sequence loop, whose gate history is the projection: `lngru_step`); writes ĥ, s_h (n,),
    ``inner`` ← q_n + b_hn and h_t = n + z ⊙ (h_{t-1} − n)."""
    for b in range(gates.shape[0]):
        h_inv[b] = _lngru_row_forward(gates[b], xp[b], g_h, b_h, b_hn, h_prev[b], h_hat[b], inner[b], h_new[b],
                                      gates_in_x)


@njit(**INNER)
def _lngru_row_forward(a, x, g_h, b_h, b_hn, hp, h_hat, q, hn, gates_in_x):
    """One row of `lngru_forward`; returns s_h."""
    h_inv = _layer_norm_row(a, g_h, b_h, h_hat, a)  # a ← q = γ_h ⊙ ĥ + β_h
    hs = hp.shape[0]  # then the GRU's reset-after step on the normalised q
    gru_row_reset_after(gate_views3(a, hs, 0, hs), gate_views3(x, hs, 0, hs), b_hn, hp, q, hn, gates_in_x, False)
    return h_inv


@njit(**JIT)
def lngru_backward(dh, gates, inner, h_prev, h_hat, h_inv, g_h, dxp, dp_h):
    """`LayerNormGRUStep.step_backward` before the GEMM δh_{t-1} += δP_h W_hh: writes [δa_r, δa_z, δa_n] into
    ``dxp``, δP_h = LN⁻(δq) with δq = [δa_r, δa_z, δa_n ⊙ r] into ``dp_h``, and leaves δh ⊙ z in ``dh``. ``dxp``
    is ``gates`` itself (the whole-sequence loop writes δa over the gate history; r then goes into ``inner``, read
    first and not needed again, where the weight sums find it) or apart from it: then the gates are copied into it
    first, and δa goes over them there (`rnnkit.kernels.sequence_loop.gates_into_grads`)."""
    keep_r = gates_into_grads(gates, dxp, 3, 0, dh.shape[1])
    for b in range(dh.shape[0]):
        _lngru_row_backward(dh[b], dxp[b], inner[b], h_prev[b], h_hat[b], h_inv[b], g_h, dp_h[b], keep_r)


@njit(**INNER)
def _lngru_row_backward(dhb, d, q, hp, h_hat, h_inv, g_h, dp, keep_r):
    """One row of `lngru_backward`: ``d`` holds [r, z, n] on entry, δa on exit; with ``keep_r``, r goes into ``q``."""
    hs = dhb.shape[0]
    for j in range(hs):
        r, z, n = d[j], d[hs + j], d[2 * hs + j]
        da_r, da_z, da_n = gru_gate_grads(dhb[j], r, z, n, hp[j], q[j], False)
        d[j], d[hs + j], d[2 * hs + j] = da_r, da_z, da_n
        dp[j], dp[hs + j], dp[2 * hs + j] = da_r * g_h[j], da_z * g_h[hs + j], da_n * r * g_h[2 * hs + j]
        dhb[j] = dhb[j] * z
        if keep_r:
            q[j] = r
    _layer_norm_row_backward(dp, h_hat, h_inv)


# -- the steps of the whole-sequence loop ------------------------------------------------------------------------
@njit(**GLUE)
def product_then_rows(a, weight, out, team):
    """out = a @ matrix, each part of ``team`` its share of the columns, then the barrier: the row kernels that
    follow read every column of their rows."""
    matmul_columns(a, weight, out, team, False)
    barrier(team)


@njit(**GLUE)
def rows_then_product(a, weight, out, accumulate, team):
    """The barrier (each part has written its rows of ``a``), then out = a @ matrix (or += with ``accumulate``),
    each part its share of the columns."""
    barrier(team)
    matmul_columns(a, weight, out, team, accumulate)


@njit(**GLUE)
def lnlstm_step(params, t, n, read, write, xp, states, team):
    """`LayerNormLSTMStep.step` for the whole-sequence loop: the product h_{t−1} W_hhᵀ (BLAS) into a (B, 4H) buffer
    that stays in cache, then `lnlstm_forward` with the activated gates written over xp_t (the projection becomes
    the gate history: no second (T, B, 4H) array); in a team (`rnnkit.kernels.team`) a part computes its columns of
    the product, then, once every column is in, the whole rows of its share of the batch (a row's normalisation
    needs all of it). params = (W_hhᵀ a `rnnkit.kernels.blas.loop_weight`, γ_h, β_h, γ_c, β_c, product (B, 4H),
    ĥ (T, B, 4H), s_h (T, B, 1), ĉ (T, B, H), s_c (T, B, 1), k (B, H) of one step (the backward takes it again
    from ĉ)), the histories of one step each where no backward will read them (`history_slot`)."""
    w_hh_t, g_h, b_h, g_c, b_c, product, h_hat, h_inv, c_hat, c_inv, tanh_u = params
    h, c = states
    k = history_slot(h_hat, t)
    a = product[:n]
    product_then_rows(h[read, :n], w_hh_t, a, team)
    r0, r1 = own_rows(n, team)
    lnlstm_forward(a[r0:r1], xp[r0:r1], g_h, b_h, g_c, b_c, c[read, r0:r1], h_hat[k, r0:r1], h_inv[k, r0:r1, 0],
                   c[write, r0:r1], c_hat[k, r0:r1], c_inv[k, r0:r1, 0], tanh_u[r0:r1], h[write, r0:r1], True)
    barrier(team)  # every row of s_t is in before the loop's per-unit work


@njit(**GLUE)
def lnlstm_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`LayerNormLSTMStep.step_backward` for the whole-sequence loop: `lnlstm_backward` (k taken again from ĉ), then
    δh_{t−1} = δP_h W_hh (BLAS); in a team, the rows of a part's share of the batch, then its columns of the
    product. params = (W_hh, γ_c, β_c, γ_h, gates (the projection, `lnlstm_step`), ĥ, s_h, ĉ, s_c, δu (T, B, H),
    δP_h (T, B, 4H))."""
    w_hh, g_c, b_c, g_h, gates, h_hat, h_inv, c_hat, c_inv, du, dp_h = params
    dh, dc = dstate[0][:n], dstate[1][:n]
    barrier(team)  # every unit of δh_t, δc_t is in (the loop adds δy and zoneout's share per unit)
    r0, r1 = own_rows(n, team)
    c_rows = c_hat[t, r0:r1]
    lnlstm_backward(dh[r0:r1], dc[r0:r1], gates[t, r0:r1], c_rows, c_rows, c_inv[t, r0:r1, 0], g_c, b_c,
                    states[1][read, r0:r1], h_hat[t, r0:r1], h_inv[t, r0:r1, 0], g_h, dxp[r0:r1], du[t, r0:r1],
                    dp_h[t, r0:r1], True)
    rows_then_product(dp_h[t, :n], w_hh, dh, False, team)


@njit(**JIT)
def lnlstm_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `lnlstm_step`."""
    sequence_forward(lnlstm_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def lnlstm_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `lnlstm_step_backward`."""
    sequence_backward(lnlstm_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)


@njit(**GLUE)
def lngru_step(params, t, n, read, write, xp, states, team):
    """`LayerNormGRUStep.step` for the whole-sequence loop: the product h_{t−1} W_hhᵀ (BLAS) into a (B, 3H) buffer,
    then `lngru_forward` with the activated gates written over xp_t (the gate history); in a team, columns of the
    product, then rows, as `lnlstm_step`. params = (W_hhᵀ a `loop_weight`, γ_h, β_h, b_hn, product (B, 3H),
    ĥ (T, B, 3H), s_h (T, B, 1), inner (T, B, H))."""
    w_hh_t, g_h, b_h, b_hn, product, h_hat, h_inv, inner = params
    h = states[0]
    k = history_slot(h_hat, t)
    a = product[:n]
    product_then_rows(h[read, :n], w_hh_t, a, team)
    r0, r1 = own_rows(n, team)
    lngru_forward(a[r0:r1], xp[r0:r1], g_h, b_h, b_hn, h[read, r0:r1], h_hat[k, r0:r1], h_inv[k, r0:r1, 0],
                  inner[k, r0:r1], h[write, r0:r1], True)
    barrier(team)  # every row of h_t is in before the loop's per-unit work


@njit(**GLUE)
def lngru_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`LayerNormGRUStep.step_backward` for the whole-sequence loop: `lngru_backward` (δh ← δh ⊙ z), then
    δh_{t−1} += δP_h W_hh (BLAS); in a team, rows, then columns, as `lnlstm_step_backward`. params = (W_hh, γ_h,
    gates, ĥ, s_h, inner, δP_h (T, B, 3H))."""
    w_hh, g_h, gates, h_hat, h_inv, inner, dp_h = params
    dh = dstate[0][:n]
    barrier(team)  # every unit of δh_t is in (the loop adds δy and zoneout's share per unit)
    r0, r1 = own_rows(n, team)
    lngru_backward(dh[r0:r1], gates[t, r0:r1], inner[t, r0:r1], states[0][read, r0:r1], h_hat[t, r0:r1],
                   h_inv[t, r0:r1, 0], g_h, dxp[r0:r1], dp_h[t, r0:r1])
    rows_then_product(dp_h[t, :n], w_hh, dh, True, team)


@njit(**JIT)
def lngru_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `lngru_step`."""
    sequence_forward(lngru_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def lngru_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `lngru_step_backward`."""
    sequence_backward(lngru_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
