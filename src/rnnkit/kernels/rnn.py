"""Compiled kernels of the Elman RNN (`rnnkit.recurrent.rnn.RNNStep`): the fused pointwise step and the step of
the whole-sequence loop (`rnnkit.kernels.sequence_loop`). φ is given by its index in the cell's ``NONLINEARITIES``:
0 tanh, 1 relu, 2 sigmoid. Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .blas import matmul_columns, matmul_gate_units
from .jit import GLUE, INNER, JIT, dsigmoid, dtanh, njit, sigmoid, tanh, zero
from .sequence_loop import recurrent_read, sequence_backward, sequence_forward, through_mask
from .team import barrier, own_units


@njit(**JIT)
def rnn_forward(h, xp, activation):
    """`RNNStep.step` after the GEMM: h ← φ(h + xp), φ = tanh, relu or sigmoid (``activation`` 0, 1, 2). h, xp
    (n, H)."""
    rnn_forward_units(h, xp, activation, 0, h.shape[1])


@njit(**GLUE)
def rnn_forward_units(h, xp, activation, lo, hi):
    """`rnn_forward` for units [lo, hi) of every row (a part of a team: `rnnkit.kernels.team`)."""
    for b in range(h.shape[0]):
        _forward_row(h[b, lo:hi], xp[b, lo:hi], activation)


@njit(**INNER)
def _forward_row(hb, xb, activation):
    """One row of `rnn_forward` (1-D arrays of one batch row: LLVM vectorizes the loop over units in a function of
    its own, as in `rnnkit.kernels.gru`)."""
    for j in range(hb.shape[0]):
        a = hb[j] + xb[j]
        hb[j] = tanh(a) if activation == 0 else (max(a, zero(a)) if activation == 1 else sigmoid(a))


@njit(**JIT)
def rnn_backward(dh, h, activation, dxp):
    """`RNNStep.step_backward` before the GEMM: δa = δh ⊙ φ'(a), φ' = 1 − h², [h > 0] or h (1 − h)."""
    rnn_backward_units(dh, h, activation, dxp, 0, dh.shape[1])


@njit(**GLUE)
def rnn_backward_units(dh, h, activation, dxp, lo, hi):
    """`rnn_backward` for units [lo, hi) of every row (a part of a team)."""
    for b in range(dh.shape[0]):
        _backward_row(dh[b, lo:hi], h[b, lo:hi], activation, dxp[b, lo:hi])


@njit(**INNER)
def _backward_row(db, hb, activation, out):
    """One row of `rnn_backward`."""
    for j in range(db.shape[0]):
        if activation == 0:
            out[j] = db[j] * dtanh(hb[j])
        elif activation == 1:
            out[j] = db[j] if hb[j] > zero(hb[j]) else zero(hb[j])
        else:
            out[j] = db[j] * dsigmoid(hb[j])


@njit(**GLUE)
def rnn_step(params, t, n, read, write, xp, states, team):
    """`RNNStep.step` for the whole-sequence loop: h_t = φ((h_{t−1} ⊙ m_h) W_hhᵀ + xp); in a team
    (`rnnkit.kernels.team`) this part's units only. params = (W_hhᵀ, φ's index, m_h, scratch): W_hhᵀ a
    `rnnkit.kernels.blas.loop_weight` tuple, m_h the recurrent dropout mask (B, H) or (0, 0), scratch (B, H) for
    h_{t−1} ⊙ m_h."""
    w_hh_t, activation, mask, scratch = params
    h = states[0]
    h_new = h[write, :n]
    lo, hi = own_units(h.shape[2], team)
    matmul_gate_units(recurrent_read(h[read, :n], mask, scratch, team), w_hh_t, h_new, 1, team)
    rnn_forward_units(h_new, xp, activation, lo, hi)


@njit(**GLUE)
def rnn_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`RNNStep.step_backward` for the whole-sequence loop: δa = δh ⊙ φ'(a), δh_{t−1} = (δa W_hh) ⊙ m_h; in a team:
    this part's units of δa, the barrier, then its units of δh_{t−1}. params = (W_hh, φ's index, m_h)."""
    w_hh, activation, mask = params
    dh = dstate[0][:n]
    lo, hi = own_units(dh.shape[1], team)
    rnn_backward_units(dh, states[0][write, :n], activation, dxp, lo, hi)
    barrier(team)
    matmul_columns(dxp, w_hh, dh, team, False)
    through_mask(dh, mask, lo, hi)


@njit(**JIT)
def rnn_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `rnn_step`."""
    sequence_forward(rnn_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def rnn_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `rnn_step_backward`."""
    sequence_backward(rnn_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
