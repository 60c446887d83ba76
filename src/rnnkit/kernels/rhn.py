"""Compiled kernels of the recurrent highway network (`rnnkit.recurrent.rhn.RHNStep`): the pointwise micro-cell
forward and backward, and the steps of the whole-sequence loop (`rnnkit.kernels.sequence_loop`), each time step L
micro-cells of a BLAS product s^{l-1} R_lᵀ and the micro-cell's pointwise kernel right after it. Written as
`rnnkit.kernels.compiled` describes."""

from __future__ import annotations

from .blas import matmul_weight, weight_at
from .jit import GLUE, JIT, dsigmoid, dtanh, njit, one, sigmoid, tanh
from .sequence_loop import copy_rows, sequence_backward, sequence_forward


@njit(**JIT)
def rhn_forward(a, b_l, xp, first, s_in, coupled, out):
    """`RHNStep.step`, micro-cell l, after its GEMM: ``a`` (n, G) holds s^{l-1} R_lᵀ on entry (+ b_l, + xp when
    ``first``) and the activated [h, τ(, c)] on exit; ``out`` ← s^l = h ⊙ τ + s^{l-1} ⊙ c (c = 1 − τ coupled)."""
    hs = s_in.shape[1]
    for b in range(a.shape[0]):
        ab, sb, ob = a[b], s_in[b], out[b]
        for j in range(hs):
            a_h, a_t = ab[j] + b_l[j], ab[hs + j] + b_l[hs + j]
            if first:
                a_h += xp[b, j]
                a_t += xp[b, hs + j]
            h, tau = tanh(a_h), sigmoid(a_t)
            ab[j], ab[hs + j] = h, tau
            if coupled:
                ob[j] = sb[j] + tau * (h - sb[j])
            else:
                a_c = ab[2 * hs + j] + b_l[2 * hs + j]
                if first:
                    a_c += xp[b, 2 * hs + j]
                c = sigmoid(a_c)
                ab[2 * hs + j] = c
                ob[j] = h * tau + sb[j] * c


@njit(**JIT)
def rhn_backward(ds, a, s_in, coupled, da):
    """`RHNStep.step_backward`, micro-cell l, before δs^{l-1} += δa^l R_l: writes δa^l = [δa_h, δa_τ(, δa_c)] into
    ``da`` and leaves δs^l ⊙ c (the carry's direct part) in ``ds``."""
    hs = ds.shape[1]
    for b in range(ds.shape[0]):
        ab, sb, db, dsb = a[b], s_in[b], da[b], ds[b]
        for j in range(hs):
            h, tau, d = ab[j], ab[hs + j], dsb[j]
            db[j] = d * tau * dtanh(h)
            if coupled:
                db[hs + j] = d * (h - sb[j]) * dsigmoid(tau)
                dsb[j] = d * (one(tau) - tau)
            else:
                c = ab[2 * hs + j]
                db[hs + j] = d * h * dsigmoid(tau)
                db[2 * hs + j] = d * sb[j] * dsigmoid(c)
                dsb[j] = d * c


@njit(**GLUE)
def rhn_step(params, t, n, read, write, xp, states, team):
    """`RHNStep.step` for the whole-sequence loop: s^0 = s_{t−1} into the first micro-cell's input slot, then for
    l = 1..L the product a^l = s^{l-1} R_lᵀ (BLAS) into the gate history and the micro-cell (`rhn_forward`), which
    writes s^l into the next micro-cell's input slot and s^L into the state. params = (R_lᵀ stacked (L, H, G) as
    `rnnkit.kernels.blas.loop_weights` gives it, b_l (L, G), gates (L, T, B, G), inputs (L, T, B, H), coupled)."""
    r_t, biases, gates, inputs, coupled = params
    s = states[0]
    depth = gates.shape[0]
    copy_rows(s[read, :n], inputs[0, t, :n], 0, s.shape[2])
    for l in range(depth):
        a, s_in = gates[l, t, :n], inputs[l, t, :n]
        matmul_weight(s_in, weight_at(r_t, l), a, False)  # a^l = s^{l-1} R_lᵀ
        out = s[write, :n] if l == depth - 1 else inputs[l + 1, t, :n]
        rhn_forward(a, biases[l], xp, l == 0, s_in, coupled, out)


@njit(**GLUE)
def rhn_step_backward(params, t, n, read, write, dstate, states, dxp, team):
    """`RHNStep.step_backward` for the whole-sequence loop: for l = L..1, δa^l (`rhn_backward`) into ``dxp`` (the
    first micro-cell's: the loop's δxp) or the δa history, and δs^{l-1} = δs^l ⊙ c + δa^l R_l (BLAS, added to the
    carry's part). params = (R_l stacked (L, G, H) as `loop_weights` gives it, gates, inputs, dgates (L, T, B, G),
    coupled)."""
    r, gates, inputs, dgates, coupled = params
    ds = dstate[0][:n]
    for l in range(gates.shape[0] - 1, -1, -1):
        da = dxp if l == 0 else dgates[l, t, :n]
        rhn_backward(ds, gates[l, t, :n], inputs[l, t, :n], coupled, da)
        matmul_weight(da, weight_at(r, l), ds, True)  # δs^{l-1} = δs^l ⊙ c + δa^l R_l


@njit(**JIT)
def rhn_sequence_forward(params, xp, states, counts, reverse, zoneout, team):
    """The whole forward loop (`sequence_loop.sequence_forward`) with `rhn_step`."""
    sequence_forward(rhn_step, params, xp, states, counts, reverse, zoneout, team)


@njit(**JIT)
def rhn_sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):
    """The whole backward loop (`sequence_loop.sequence_backward`) with `rhn_step_backward`."""
    sequence_backward(rhn_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team)
