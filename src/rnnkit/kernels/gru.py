"""Compiled kernels of the GRU (`rnnkit.recurrent.gru.GRUStep`), both reset placements: the fused pointwise parts
of a step, and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`). Written as
`rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .blas import matmul_columns, matmul_gate_units, matmul_weight
from .jit import GLUE, INNER, JIT, dsigmoid, dtanh, gru_gate_grads, gru_mix, njit, one, sigmoid, tanh
from .sequence_loop import (
    add_rows,
    gates_into_grads,
    recurrent_read,
    sequence_backward,
    sequence_forward,
    through_mask,
)
from .team import barrier, own_rows, own_units


# -- reset after the recurrent product (PyTorch) -----------------------------------------------------------------
@njit(**JIT)
def gru_forward_reset_after(gates, xp, b_hn, h_prev, inner, h_new, gates_in_x, lecture):
    """`GRUStep.step` (reset after) after the GEMM: ``gates`` (n, 3H) holds h_{t-1} W_hhᵀ on entry, the activated
    [r, z, n] on exit (or ``xp`` does, with ``gates_in_x``: the whole-sequence loop); ``inner`` ← h_{t-1} W_hh[n]ᵀ
    + b_hn; h_t = n + z ⊙ (h_{t-1} − n), or with the ``lecture``'s update gate h_{t-1} + z ⊙ (n − h_{t-1})."""
    gru_forward_reset_after_units(gates, xp, b_hn, h_prev, inner, h_new, gates_in_x, lecture, 0, h_prev.shape[1])


@njit(**INNER)
def gru_forward_reset_after_units(gates, xp, b_hn, h_prev, inner, h_new, gates_in_x, lecture, lo, hi):
    """`gru_forward_reset_after` for units [lo, hi) of every row (a part of a team: `rnnkit.kernels.team`)."""
    hs = h_prev.shape[1]
    for b in range(gates.shape[0]):
        gru_row_reset_after(gate_views3(gates[b], hs, lo, hi), gate_views3(xp[b], hs, lo, hi), b_hn[lo:hi],
                            h_prev[b, lo:hi], inner[b, lo:hi], h_new[b, lo:hi], gates_in_x, lecture)


@njit(**GLUE)
def gate_views3(row, hs, lo, hi):
    """Units [lo, hi) of each block of a row of three ``hs``-wide gate blocks [r, z, n]: three 1-D views (read and
    written as arrays of their own, each from 0, the loop over units vectorizes: `rnnkit.kernels.lstm.gate_views`)."""
    return row[lo:hi], row[hs + lo:hs + hi], row[2 * hs + lo:2 * hs + hi]


@njit(**INNER)
def gru_row_reset_after(a, x, b_hn, hp, q, hn, gates_in_x, lecture):
    """One row of `gru_forward_reset_after` for the units of ``hp`` (1-D arrays of one batch row; ``a``, ``x``
    their `gate_views3`: LLVM vectorizes the loop over units in a function of its own, about 2× faster than the
    same loop over row views inside the batch loop). ``a`` holds the recurrent product, ``x`` the projection; the
    activated [r, z, n] go over ``a``, or over ``x`` with ``gates_in_x`` (the whole-sequence loop, whose gate
    history is the projection: `gru_reset_after_step`). The flag is the same for the whole loop, so LLVM makes one
    vectorized loop per value."""
    a_r, a_z, a_n = a
    x_r, x_z, x_n = x
    for j in range(hp.shape[0]):
        r, z = sigmoid(a_r[j] + x_r[j]), sigmoid(a_z[j] + x_z[j])
        q_j = a_n[j] + b_hn[j]
        n = tanh(x_n[j] + r * q_j)
        if gates_in_x:
            x_r[j], x_z[j], x_n[j] = r, z, n
        else:
            a_r[j], a_z[j], a_n[j] = r, z, n
        q[j] = q_j
        hn[j] = gru_mix(z, n, hp[j], lecture)


@njit(**JIT)
def gru_backward_reset_after(dh, gates, inner, h_prev, dxp, dq, keep_r, lecture):
    """`GRUStep.step_backward` (reset after) before the GEMM δh_{t-1} += δq W_hh: writes δa = [δa_r, δa_z, δa_n]
    into ``dxp``, δq = [δa_r, δa_z, δa_n ⊙ r] into ``dq`` and leaves δh ⊙ z (the ``lecture``'s: δh ⊙ (1 − z)) in
    ``dh``. ``dxp`` is ``gates`` itself (the whole-sequence loop writes δa over the gate history) or apart from it:
    then the gates are copied into it first, and δa goes over them there
    (`rnnkit.kernels.sequence_loop.gates_into_grads`). With ``keep_r``, r goes into ``inner`` (read first, not
    needed again), where the weight sums find it once δa has gone over the gates."""
    hs = dh.shape[1]
    gates_into_grads(gates, dxp, 3, 0, hs)
    for b in range(dh.shape[0]):
        _backward_reset_after_row(dh[b], gate_views3(dxp[b], hs, 0, hs), inner[b], h_prev[b],
                                  gate_views3(dq[b], hs, 0, hs), keep_r, lecture)


@njit(**INNER)
def _backward_reset_after_row(dhb, d, q, hp, dqb, keep_r, lecture):
    """One row of `gru_backward_reset_after` (``d``, ``dqb`` the rows' `gate_views3`; ``d`` holds [r, z, n] on entry,
    δa on exit)."""
    d_r, d_z, d_n = d
    q_r, q_z, q_n = dqb
    for j in range(dhb.shape[0]):
        r, z, n = d_r[j], d_z[j], d_n[j]
        da_r, da_z, da_n = gru_gate_grads(dhb[j], r, z, n, hp[j], q[j], lecture)
        d_r[j], d_z[j], d_n[j] = da_r, da_z, da_n
        q_r[j], q_z[j], q_n[j] = da_r, da_z, da_n * r
        dhb[j] = dhb[j] * (one(z) - z if lecture else z)
        if keep_r:
            q[j] = r


@njit(**GLUE)
def gru_reset_after_step(params, t, n, read, write, xp, states, team):
    """`GRUStep.step` (reset after) for the whole-sequence loop: h_{t−1} W_hhᵀ (BLAS) into a (B, 3H) buffer that
    stays in cache, then the fused pointwise forward, its gates written over xp_t (the projection becomes the gate
    history: no second (T, B, 3H) array); in a team (`rnnkit.kernels.team`) this part's units only. params =
    (W_hhᵀ, b_hn, product (B, 3H), inner (T, B, H), m_h, scratch, lecture): W_hhᵀ a
    `rnnkit.kernels.blas.loop_weight` tuple, m_h the recurrent dropout mask (B, H) or (0, 0), scratch (B, H) for
    h_{t−1} ⊙ m_h, which enters the product (z ⊙ h_{t−1} takes h_{t−1} itself), lecture: the lecture's update
    gate."""
    w_hh_t, b_hn, product, inner, mask, masked, lecture = params
    h = states[0]
    h_prev, a = h[read, :n], product[:n]
    lo, hi = own_units(h.shape[2], team)
    matmul_gate_units(recurrent_read(h_prev, mask, masked, team), w_hh_t, a, 3, team)
    gru_forward_reset_after_units(a, xp, b_hn, h_prev, inner[t, :n], h[write, :n], True, lecture, lo, hi)


@njit(**GLUE)
def gru_reset_after_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`GRUStep.step_backward` (reset after) for the whole-sequence loop: the fused pointwise backward (δa written
    over the step's gates, r kept in ``inner``: `GRUStep.grads_over_gates`), then δh_{t−1} = δh ⊙ z + (δq W_hh)
    ⊙ m_h (BLAS). In a team (`rnnkit.kernels.team`) a part takes whole rows of its share of the batch for the
    pointwise backward, then, once every row of δq is in, its units' columns of the product. params = (W_hh,
    gates, inner, dq (B, 3H) δq of the step, m_h (B, H) or (0, 0), scratch (B, H), lecture)."""
    w_hh, gates, inner, dq, mask, scratch, lecture = params
    dh, dq_t = dstate[0][:n], dq[:n]
    barrier(team)  # every unit of δh_t is in (the loop adds δy and zoneout's share per unit)
    r0, r1 = own_rows(n, team)
    gru_backward_reset_after(dh[r0:r1], gates[t, r0:r1], inner[t, r0:r1], states[0][read, r0:r1], dxp[r0:r1],
                             dq_t[r0:r1], True, lecture)
    barrier(team)
    lo, hi = own_units(dh.shape[1], team)
    if mask.shape[0] == 0:
        matmul_columns(dq_t, w_hh, dh, team, True)
        return
    rec = scratch[:n]
    matmul_columns(dq_t, w_hh, rec, team, False)
    through_mask(rec, mask, lo, hi)
    add_rows(rec, dh, lo, hi)


@njit(**JIT)
def gru_reset_after_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `gru_reset_after_step`."""
    sequence_forward(gru_reset_after_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def gru_reset_after_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `gru_reset_after_step_backward`."""
    sequence_backward(gru_reset_after_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout,
                      team)


# -- reset before the recurrent product (Cho et al. 2014) --------------------------------------------------------
@njit(**JIT)
def gru_gates_reset_before(gates, xp, h_prev, inner):
    """`GRUStep.step` (reset before), between its GEMMs: [r, z] = σ(h_{t-1} W_hh[r,z]ᵀ + xp) in place in ``gates``
    (n, 3H; the n block is untouched); ``inner`` ← r ⊙ h_{t-1}."""
    for b in range(gates.shape[0]):
        _gates_reset_before_row(gates[b], xp[b], h_prev[b], inner[b])


@njit(**INNER)
def _gates_reset_before_row(a, x, hp, q):
    """One row of `gru_gates_reset_before`."""
    hs = hp.shape[0]
    for j in range(hs):
        r, z = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
        a[j], a[hs + j], q[j] = r, z, r * hp[j]


@njit(**JIT)
def gru_output_reset_before(gates, xp, h_prev, h_new, lecture):
    """`GRUStep.step` (reset before), after its second GEMM: n = tanh(a_n + xp_n); h_t = n + z ⊙ (h_{t-1} − n), or
    with the ``lecture``'s update gate h_{t-1} + z ⊙ (n − h_{t-1})."""
    for b in range(gates.shape[0]):
        _output_reset_before_row(gates[b], xp[b], h_prev[b], h_new[b], lecture)


@njit(**INNER)
def _output_reset_before_row(a, x, hp, hn, lecture):
    """One row of `gru_output_reset_before`."""
    hs = hp.shape[0]
    for j in range(hs):
        n = tanh(a[2 * hs + j] + x[2 * hs + j])
        a[2 * hs + j] = n
        hn[j] = gru_mix(a[hs + j], n, hp[j], lecture)


@njit(**JIT)
def gru_backward_reset_before_zn(dh, gates, h_prev, dxp, lecture):
    """`GRUStep.step_backward` (reset before), first part: δa_n, δa_z into ``dxp``; δh ← δh ⊙ z (the ``lecture``'s
    update gate: δh ⊙ (1 − z); `rnnkit.kernels.jit.gru_gate_grads` has both forms' equations)."""
    for b in range(dh.shape[0]):
        _backward_reset_before_zn_row(dh[b], gates[b], h_prev[b], dxp[b], lecture)


@njit(**INNER)
def _backward_reset_before_zn_row(dhb, a, hp, d, lecture):
    """One row of `gru_backward_reset_before_zn`."""
    hs = dhb.shape[0]
    for j in range(hs):
        z, n = a[hs + j], a[2 * hs + j]
        d[2 * hs + j] = dhb[j] * (z if lecture else one(z) - z) * dtanh(n)
        d[hs + j] = dhb[j] * ((n - hp[j]) if lecture else (hp[j] - n)) * dsigmoid(z)
        dhb[j] = dhb[j] * (one(z) - z if lecture else z)


@njit(**JIT)
def gru_backward_reset_before_r(d_rh, gates, h_prev, dxp, dh):
    """Second part, after δ(r ⊙ h) = δa_n W_hh[n]: δa_r = δ(r ⊙ h) ⊙ h_{t-1} ⊙ r(1 − r) into ``dxp``;
    δh += δ(r ⊙ h) ⊙ r."""
    for b in range(dh.shape[0]):
        _backward_reset_before_r_row(d_rh[b], gates[b], h_prev[b], dxp[b], dh[b])


@njit(**INNER)
def _backward_reset_before_r_row(drh, a, hp, d, dhb):
    """One row of `gru_backward_reset_before_r`."""
    for j in range(dhb.shape[0]):
        r = a[j]
        d[j] = drh[j] * hp[j] * dsigmoid(r)
        dhb[j] += drh[j] * r


@njit(**GLUE)
def gru_reset_before_step(params, t, n, read, write, xp, states, team):
    """`GRUStep.step` (reset before) for the whole-sequence loop: [r, z] from h_{t−1} W_hh[r,z]ᵀ, then n from
    (r ⊙ h_{t−1}) W_hh[n]ᵀ — two GEMMs, each followed by its fused pointwise part. params = (W_hh[r,z]ᵀ, W_hh[n]ᵀ,
    gates (T, B, 3H), inner (T, B, H), lecture: the lecture's update gate)."""
    w_rz_t, w_n_t, gates, inner, lecture = params
    h = states[0]
    h_prev, a, rh = h[read, :n], gates[t, :n], inner[t, :n]
    hs = h_prev.shape[1]
    matmul_weight(h_prev, w_rz_t, a[:, :2 * hs], False)
    gru_gates_reset_before(a, xp, h_prev, rh)
    matmul_weight(rh, w_n_t, a[:, 2 * hs:], False)
    gru_output_reset_before(a, xp, h_prev, h[write, :n], lecture)


@njit(**GLUE)
def gru_reset_before_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`GRUStep.step_backward` (reset before) for the whole-sequence loop: δh_{t−1} = δh ⊙ z + δ(r ⊙ h) ⊙ r +
    [δa_r, δa_z] W_hh[r,z], with δ(r ⊙ h) = δa_n W_hh[n] (the lecture's update gate: δh ⊙ (1 − z)). params =
    (W_hh[r,z], W_hh[n], gates, scratch (B, H), lecture)."""
    w_rz, w_n, gates, scratch, lecture = params
    dh, a, h_prev, d_rh = dstate[0][:n], gates[t, :n], states[0][read, :n], scratch[:n]
    hs = h_prev.shape[1]
    gru_backward_reset_before_zn(dh, a, h_prev, dxp, lecture)
    matmul_weight(dxp[:, 2 * hs:], w_n, d_rh, False)  # δ(r ⊙ h) = δa_n W_hh[n]
    gru_backward_reset_before_r(d_rh, a, h_prev, dxp, dh)
    matmul_weight(dxp[:, :2 * hs], w_rz, dh, True)


@njit(**JIT)
def gru_reset_before_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `gru_reset_before_step`."""
    sequence_forward(gru_reset_before_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def gru_reset_before_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `gru_reset_before_step_backward`."""
    sequence_backward(gru_reset_before_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp,
                      zoneout, team)
