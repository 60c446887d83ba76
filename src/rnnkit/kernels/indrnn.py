"""Compiled kernels of the IndRNN (`rnnkit.recurrent.indrnn.IndRNNStep`): the pointwise step forward and backward
(the step has no recurrent GEMM: u ⊙ h_{t−1}), and the step of the whole-sequence loop
(`rnnkit.kernels.sequence_loop`). Written as `rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .jit import GLUE, INNER, JIT, dtanh, njit, tanh, zero
from .sequence_loop import sequence_backward, sequence_forward


@njit(**INNER)
def _indrnn_row_forward(h_prev, u, x, relu, h):
    """One row of `indrnn_forward`."""
    for j in range(h.shape[0]):
        a = x[j] + u[j] * h_prev[j]
        h[j] = max(a, zero(a)) if relu else tanh(a)


@njit(**INNER)
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


@njit(**GLUE)
def indrnn_step(params, t, n, read, write, xp, states, team):
    """`IndRNNStep.step` for the whole-sequence loop. params = (u, relu)."""
    u, relu = params
    h = states[0]
    indrnn_forward(h[read, :n], u, xp, relu, h[write, :n])


@njit(**GLUE)
def indrnn_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`IndRNNStep.step_backward` for the whole-sequence loop: δa = δh ⊙ φ'(a), δh_{t−1} = δa ⊙ u.
    params = (u, relu)."""
    u, relu = params
    indrnn_backward(dstate[0][:n], states[0][write, :n], u, relu, dxp)


@njit(**JIT)
def indrnn_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `indrnn_step`."""
    sequence_forward(indrnn_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def indrnn_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `indrnn_step_backward`."""
    sequence_backward(indrnn_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
