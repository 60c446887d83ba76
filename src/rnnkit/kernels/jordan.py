"""Compiled kernels of the Jordan network (`rnnkit.recurrent.jordan.JordanStep`): the pointwise parts of a step
forward and backward, and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`): the state units,
the BLAS product into the hidden layer and its tanh, the BLAS product into the output and its activation ψ —
sigmoid, tanh, identity or softmax (`OUTPUT_ACTIVATIONS` of the cell: 0, 1, 2, 3). Written as
`rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .blas import matmul_weight
from .jit import GLUE, INNER, JIT, dsigmoid, dtanh, exp, njit, row_dot, row_sum, sigmoid, tanh
from .sequence_loop import copy_rows, sequence_backward, sequence_forward

SOFTMAX = 3


@njit(**JIT)
def jordan_state(s_prev, y_prev, decay, s):
    """`JordanStep.step`: s_t = μ s_{t-1} + y_{t-1} (μ = ``decay``, in the arrays' precision)."""
    for b in range(s.shape[0]):
        for j in range(s.shape[1]):
            s[b, j] = decay * s_prev[b, j] + y_prev[b, j]


@njit(**JIT)
def jordan_hidden(h, xp):
    """h ← tanh(h + xp) after the state GEMM."""
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[b, j] = tanh(h[b, j] + xp[b, j])


@njit(**JIT)
def jordan_output(y, bias, has_bias, activation):
    """y ← ψ(y + b_hy) after the output GEMM; ``activation`` 0 sigmoid, 1 tanh, 2 identity, 3 softmax (over each
    row: e = exp(a − max a), y = e / Σ e, as `rnnkit.activations.softmax`)."""
    for b in range(y.shape[0]):
        row = y[b]
        for j in range(row.shape[0]):
            a = row[j] + bias[j] if has_bias else row[j]
            row[j] = sigmoid(a) if activation == 0 else (tanh(a) if activation == 1 else a)
        if activation == SOFTMAX:
            _softmax_row(row)


@njit(**INNER)
def _softmax_row(row):
    """row ← exp(row − max row) / Σ exp(row − max row), in place."""
    top = row[0]
    for j in range(row.shape[0]):
        top = max(top, row[j])
    for j in range(row.shape[0]):
        row[j] = exp(row[j] - top)
    total = row_sum(row)
    for j in range(row.shape[0]):
        row[j] = row[j] / total


@njit(**JIT)
def jordan_output_backward(dy, y, activation, da_y):
    """δa_y = δy ⊙ ψ'(y): y(1 − y), 1 − y², 1, or for softmax y ⊙ (δy − Σ_j δy_j y_j) (the Jacobian couples a
    row's units)."""
    for b in range(y.shape[0]):
        if activation == SOFTMAX:
            through_sum = row_dot(dy[b], y[b])  # Σ_j δy_j y_j, the part every unit's δa shares
            for j in range(y.shape[1]):
                da_y[b, j] = y[b, j] * (dy[b, j] - through_sum)
            continue
        for j in range(y.shape[1]):
            d = dy[b, j]
            da_y[b, j] = d * dsigmoid(y[b, j]) if activation == 0 else (d * dtanh(y[b, j]) if activation == 1 else d)


@njit(**JIT)
def jordan_hidden_backward(dxp, h):
    """δa_h = (δa_y W_hy) ⊙ (1 − h²), in place in ``dxp``."""
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            dxp[b, j] = dxp[b, j] * dtanh(h[b, j])


@njit(**GLUE)
def jordan_step(params, t, n, read, write, xp, states, team):
    """`JordanStep.step` for the whole-sequence loop: s_t = μ s_{t−1} + y_{t−1}, h_t = tanh(xp_t + s_t W_hhᵀ) (BLAS,
    into the hidden history), y_t = ψ(h_t W_hyᵀ + b_hy) (BLAS). States (y, s). params = (W_hhᵀ, W_hyᵀ, each a
    `rnnkit.kernels.blas.loop_weight` tuple, hidden (T, B, H), μ, b_hy, has_bias, ψ's index)."""
    w_hh_t, w_hy_t, hidden, decay, b_hy, has_bias, activation = params
    ys, ss = states
    y, s, h = ys[write, :n], ss[write, :n], hidden[t, :n]
    jordan_state(ss[read, :n], ys[read, :n], decay, s)
    matmul_weight(s, w_hh_t, h, False)
    jordan_hidden(h, xp)
    matmul_weight(h, w_hy_t, y, False)
    jordan_output(y, b_hy, has_bias, activation)


@njit(**GLUE)
def jordan_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`JordanStep.step_backward` for the whole-sequence loop: δa_y (into its history), δa_h = (δa_y W_hy) ⊙ (1 − h²)
    (BLAS) into ``dxp``, δs = δs_t + δa_h W_hh (BLAS), then δy_{t−1} = δs and δs_{t−1} = μ δs. params = (W_hy, W_hh,
    each a `loop_weight` tuple, hidden (T, B, H), δa_y (T, B, O), μ, ψ's index)."""
    w_hy, w_hh, hidden, da_y_history, decay, activation = params
    dy, ds = dstate[0][:n], dstate[1][:n]
    da_y = da_y_history[t, :n]
    jordan_output_backward(dy, states[0][write, :n], activation, da_y)
    matmul_weight(da_y, w_hy, dxp, False)
    jordan_hidden_backward(dxp, hidden[t, :n])
    matmul_weight(dxp, w_hh, ds, True)
    copy_rows(ds, dy, 0, ds.shape[1])
    for b in range(ds.shape[0]):
        row = ds[b]
        for j in range(row.shape[0]):
            row[j] *= decay


@njit(**JIT)
def jordan_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `jordan_step`."""
    sequence_forward(jordan_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def jordan_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `jordan_step_backward`."""
    sequence_backward(jordan_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
