"""Compiled kernels of the Mogrifier LSTM (`rnnkit.recurrent.mogrifier.MogrifierStep`): a gating round forward and
backward, and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`): the rounds (each a BLAS product
through Q_k or R_k — two through a low-rank pair U_k V_k — and the round's kernel), the input projection of the last
x (BLAS: it depends on the state, so it cannot be one GEMM over the sequence), then the LSTM's step
(`rnnkit.kernels.lstm.lstm_step`, whose params name the last h history as the product's input) on the last h.
Written as `rnnkit.kernels.compiled` describes.

A round's matrices come as two `rnnkit.kernels.blas.loop_weights` stacks over k, ``first`` and ``second``: z = inp ·
first_k (full rank; ``second`` unused), or z = (inp · first_k) · second_k through the low-rank middle, whose values go
into ``mids`` (the backward's ``first``/``second`` are the matrices of δinput = δz · M_k the same way)."""

from __future__ import annotations

from .blas import matmul_columns, matmul_gate_units, matmul_weight, weight_at
from .jit import GLUE, INNER, JIT, half, njit, one, sigmoid, unliteral
from .lstm import lstm_step, lstm_step_backward
from .sequence_loop import copy_rows, sequence_backward, sequence_forward
from .team import barrier, own_units


@njit(**JIT)
def mogrifier_round(g, gated, out):
    """`MogrifierStep.step`, one round after its GEMM: ``g`` (n, K) holds z on entry and 2σ(z) on exit;
    out = 2σ(z) ⊙ gated."""
    _round_units(g, gated, out, unliteral(0), g.shape[1])


@njit(**INNER)
def _round_units(g, gated, out, lo, hi):
    """`mogrifier_round` for units [lo, hi) of every row (a part of a team: `rnnkit.kernels.team`)."""
    for b in range(g.shape[0]):  # each row's units a slice, indexed from 0 (as `sequence_loop.copy_rows`'s)
        gb, xb, ob = g[b, lo:hi], gated[b, lo:hi], out[b, lo:hi]
        for j in range(gb.shape[0]):
            two_sigma = sigmoid(gb[j]) * (one(gb[j]) + one(gb[j]))
            gb[j] = two_sigma
            ob[j] = two_sigma * xb[j]


@njit(**JIT)
def mogrifier_round_backward(g, gated, d_out, dz):
    """`MogrifierStep.step_backward`, one round: δz = δout ⊙ gated ⊙ g(1 − g/2), then δout ← δout ⊙ g (δgated)."""
    for b in range(g.shape[0]):
        gb, xb, db, dzb = g[b], gated[b], d_out[b], dz[b]
        for j in range(gb.shape[0]):
            dzb[j] = db[j] * xb[j] * gb[j] * (one(gb[j]) - half(gb[j]) * gb[j])
            db[j] = db[j] * gb[j]


@njit(**GLUE)
def round_product(inp, first, second, k, mids, t, n, low_rank, out, accumulate, team):
    """out = inp · M_k (or out += with ``accumulate``) for a round's matrix stack pair (see the module notes), at full
    rank in a team the columns of this part's units (`rnnkit.kernels.blas.matmul_columns`). The flag goes on as a
    variable (`rnnkit.kernels.jit.unliteral`): one compiled product serves the forward's assignments and the
    backward's sums."""
    _round_product(inp, first, second, k, mids, t, n, low_rank, out, unliteral(accumulate), team)


@njit(**INNER)
def _round_product(inp, first, second, k, mids, t, n, low_rank, out, accumulate, team):
    if low_rank:  # never in a team of two parts (`MogrifierStep.team_parts`): both would write the whole middle
        mid = mids[k, t, :n]
        matmul_weight(inp, weight_at(first, k), mid, False)
        matmul_weight(mid, weight_at(second, k), out, accumulate)
    else:
        matmul_columns(inp, weight_at(first, k), out, team, accumulate)


@njit(**INNER)
def _rounds_forward(rounds, t, n, xs, hs, gq, gr, mq, mr, q_stacks, r_stacks, low_rank, team):
    """Rounds 1..r at step t: x^i = 2σ(h^{i-1} Q_kᵀ) ⊙ x^{i-2} (odd i) and h^i = 2σ(x^{i-1} R_kᵀ) ⊙ h^{i-2} (even i),
    into the histories (`MogrifierStep.allocate`). ``q_stacks``, ``r_stacks``: the (first, second) stacks of Q_kᵀ,
    R_kᵀ. In a team each part computes its units of each round, then waits at a barrier: the next round's product
    reads all of them."""
    for i in range(1, rounds + 1):
        if i % 2:
            k = (i - 1) // 2
            g = gq[k, t, :n]
            round_product(hs[k, t, :n], q_stacks[0], q_stacks[1], k, mq, t, n, low_rank, g, False, team)
            lo, hi = own_units(g.shape[1], team)
            _round_units(g, xs[k, t, :n], xs[k + 1, t, :n], lo, hi)
        else:
            k = i // 2 - 1
            g = gr[k, t, :n]
            round_product(xs[k + 1, t, :n], r_stacks[0], r_stacks[1], k, mr, t, n, low_rank, g, False, team)
            lo, hi = own_units(g.shape[1], team)
            _round_units(g, hs[k, t, :n], hs[k + 1, t, :n], lo, hi)
        barrier(team)


@njit(**GLUE)
def mogrifier_step(params, t, n, read, write, xp, states, team):
    """`MogrifierStep.step` for the whole-sequence loop (x^{-1} = x_t is in the xs history before the loop: ``xp`` is
    unused): h^0 = h_{t−1} into the hs history, the rounds, a_t = x↑ W_ihᵀ + b (BLAS, into the gate history), then
    the LSTM's step on (a_t, h↑). params = (the LSTM's `lstm_step` params with recurrent_history the last h history,
    rounds, xs, hs, gq, gr, mq, mr (empty without a rank), the (first, second) stacks of Q_kᵀ and of R_kᵀ, low_rank,
    W_ihᵀ as a `loop_weight` tuple, b = b_ih + b_hh, has_bias, gates (T, B, 4H)). In a team (`rnnkit.kernels.team`;
    full rank, the forward only: `MogrifierStep.team_units`) each part copies, gates and projects its own units, and
    waits at a barrier before each product that reads whole rows."""
    lstm, rounds, xs, hs, gq, gr, mq, mr, q_stacks, r_stacks, low_rank, w_ih_t, bias, has_bias, gates = params
    lo, hi = own_units(hs.shape[3], team)
    copy_rows(states[0][read, :n], hs[0, t, :n], lo, hi)
    barrier(team)  # the first round reads all of h^0
    _rounds_forward(rounds, t, n, xs, hs, gq, gr, mq, mr, q_stacks, r_stacks, low_rank, team)
    a = gates[t, :n]
    matmul_gate_units(xs[xs.shape[0] - 1, t, :n], w_ih_t, a, 4, team)  # x↑ W_ihᵀ
    if has_bias:  # this part's units of each gate block (the LSTM's step reads no others), as matmul_gate_units's
        hidden = a.shape[1] // 4
        unit_lo, unit_hi = own_units(hidden, team)
        _add_bias_units(a, bias, hidden, unit_lo, unit_hi)
    lstm_step(lstm, t, n, read, write, a, states, team)  # its params read h↑ from the last h history


@njit(**INNER)
def _add_bias_units(a, bias, hidden, lo, hi):
    """a[b, g·H + j] += bias[g·H + j] for units j in [lo, hi) of each gate block g of every row (H = ``hidden``; all
    of them in the plain loop), each block's units a slice of the row, as `sequence_loop.copy_rows`'s."""
    for b in range(a.shape[0]):
        for block in range(0, a.shape[1], hidden):
            row, add = a[b, block + lo:block + hi], bias[block + lo:block + hi]
            for j in range(row.shape[0]):
                row[j] += add[j]


@njit(**GLUE)
def mogrifier_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`MogrifierStep.step_backward` for the whole-sequence loop: the LSTM's step backward (δa into ``dxp``, δh↑ into
    δh, δc_{t−1}), δx↑ = δa W_ih (BLAS, into the δx history), then rounds r..1: δz = δout ⊙ gated ⊙ g(1 − g/2),
    δgated = δout ⊙ g, δinput += δz M_k (BLAS), for each round i its matrix M_k. params = (the LSTM's
    `lstm_step_backward` params, rounds, xs, hs, gq, gr, dzq, dzr, dmq, dmr, the (first, second) stacks of Q_k and
    of R_k (U_k, V_k low rank), low_rank, W_ih as a `loop_weight` tuple, dx (T, B, I)). Never a team of two parts
    (`MogrifierStep.team_units`: the forward only): the rounds' products take whole rows."""
    lstm, rounds, xs, hs, gq, gr, dzq, dzr, dmq, dmr, q_stacks, r_stacks, low_rank, w_ih, dx_history = params
    lstm_step_backward(lstm, t, n, read, write, dstate, states, dxp, team)
    dx, dh = dx_history[t, :n], dstate[0][:n]
    matmul_weight(dxp, w_ih, dx, False)  # δx↑ = δa W_ih
    for i in range(rounds, 0, -1):
        if i % 2:  # δz → δh^{i-1} through Q_k
            k = (i - 1) // 2
            dz = dzq[k, t, :n]
            mogrifier_round_backward(gq[k, t, :n], xs[k, t, :n], dx, dz)
            round_product(dz, q_stacks[0], q_stacks[1], k, dmq, t, n, low_rank, dh, True, None)
        else:  # δz → δx^{i-1} through R_k
            k = i // 2 - 1
            dz = dzr[k, t, :n]
            mogrifier_round_backward(gr[k, t, :n], hs[k, t, :n], dh, dz)
            round_product(dz, r_stacks[0], r_stacks[1], k, dmr, t, n, low_rank, dx, True, None)


@njit(**JIT)
def mogrifier_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `mogrifier_step`."""
    sequence_forward(mogrifier_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def mogrifier_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `mogrifier_step_backward`."""
    sequence_backward(mogrifier_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout,
                      team)
