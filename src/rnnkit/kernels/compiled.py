"""Fused step kernels, compiled with numba: the pointwise part of one time step in one pass over the gates.

Each kernel is the exact counterpart of a block of NumPy code in a cell's ``step`` or ``step_backward`` (named in
its docstring), called between the same BLAS GEMMs and writing into the same workspace arrays, so the NumPy
code stays the readable definition and the oracle the tests compare against.

How they are written, so that LLVM vectorizes them (AVX2/AVX-512):

* ``fastmath=True`` and ``error_model="numpy"`` — the default error model puts a zero-division branch into every
  division and blocks SIMD;
* one simple loop over a row's contiguous units; no Python-float literals in the arithmetic (a float64 constant
  would promote float32 math): constants come from the typed helpers below;
* float32: tanh is Eigen's clamped rational (13/6) approximation — no libm call, a few ulp (< 4e-7 relative);
  σ(a) = ½ tanh(a/2) + ½ as in `rnnkit.activations.sigmoid`. float64 calls libm's tanh (accurate to 1 ulp).

Kernels are cached on disk (``cache=True``), so only the first use after installation compiles them.
"""

from __future__ import annotations

from numba import njit

from .jit import JIT, dsigmoid, dtanh, gru_gate_grads, half, one, sigmoid, tanh, zero


# -- Elman (vanilla) RNN ---------------------------------------------------------------------------------------
@njit(**JIT)
def rnn_forward(h, xp, relu):
    """`ElmanStep.step` after the GEMM: h ← φ(h + xp), φ = tanh or relu. h, xp (n, H)."""
    for b in range(h.shape[0]):
        hb, xb = h[b], xp[b]
        for j in range(hb.shape[0]):
            a = hb[j] + xb[j]
            hb[j] = max(a, zero(a)) if relu else tanh(a)


@njit(**JIT)
def rnn_backward(dh, h, relu, dxp):
    """`ElmanStep.step_backward` before the GEMM: δa = δh ⊙ φ'(a), φ' = 1 − h² or [h > 0]."""
    for b in range(dh.shape[0]):
        db, hb, out = dh[b], h[b], dxp[b]
        for j in range(db.shape[0]):
            if relu:
                out[j] = db[j] if hb[j] > zero(hb[j]) else zero(hb[j])
            else:
                out[j] = db[j] * dtanh(hb[j])


# -- LSTM ------------------------------------------------------------------------------------------------------
@njit(**JIT)
def _lstm_row_forward(a, x, cp, cn, tc, y, w_ci, w_cf, w_co, peephole):
    """One row of `lstm_forward` (1-D arrays of one batch row)."""
    hs = cp.shape[0]
    for j in range(hs):
        a_i, a_f = a[j] + x[j], a[hs + j] + x[hs + j]
        if peephole:
            a_i += w_ci[j] * cp[j]
            a_f += w_cf[j] * cp[j]
        i, f, g = sigmoid(a_i), sigmoid(a_f), tanh(a[2 * hs + j] + x[2 * hs + j])
        c = f * cp[j] + i * g
        a_o = a[3 * hs + j] + x[3 * hs + j]
        if peephole:
            a_o += w_co[j] * c
        o = sigmoid(a_o)
        t = tanh(c)
        a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j] = i, f, g, o
        cn[j], tc[j], y[j] = c, t, o * t


@njit(**JIT)
def lstm_forward(gates, xp, c_prev, w_ci, w_cf, w_co, peephole, c_new, tanh_c, out):
    """`LSTMStep.step` after the GEMM. ``gates`` (n, 4H) holds h_{t-1} W_hhᵀ on entry and the activated
    [i, f, g, o] on exit; writes c_t, tanh(c_t) and ``out`` = o ⊙ tanh(c_t) (h_t, or m_t with a projection)."""
    for b in range(gates.shape[0]):
        _lstm_row_forward(gates[b], xp[b], c_prev[b], c_new[b], tanh_c[b], out[b], w_ci, w_cf, w_co, peephole)


@njit(**JIT)
def _lstm_row_backward(dm, dc, a, tc, cp, d, w_ci, w_cf, w_co, peephole):
    """One row of `lstm_backward`."""
    hs = dc.shape[0]
    for j in range(hs):
        i, f, g, o = a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j]
        da_o = dm[j] * tc[j] * dsigmoid(o)
        c_grad = dc[j] + dm[j] * o * dtanh(tc[j])
        if peephole:
            c_grad += da_o * w_co[j]
        da_i = c_grad * g * dsigmoid(i)
        da_f = c_grad * cp[j] * dsigmoid(f)
        d[j], d[hs + j], d[2 * hs + j], d[3 * hs + j] = da_i, da_f, c_grad * i * dtanh(g), da_o
        c_grad = c_grad * f
        if peephole:
            c_grad += da_i * w_ci[j] + da_f * w_cf[j]
        dc[j] = c_grad


@njit(**JIT)
def lstm_backward(dm, dc, gates, tanh_c, c_prev, w_ci, w_cf, w_co, peephole, dxp):
    """`LSTMStep.step_backward` before the GEMM δh_{t-1} = δa W_hh: from δm (n, H) and δc_t (n, H, overwritten
    with δc_{t-1}) write δa = [δa_i, δa_f, δa_g, δa_o] into ``dxp`` (n, 4H)."""
    for b in range(dc.shape[0]):
        _lstm_row_backward(dm[b], dc[b], gates[b], tanh_c[b], c_prev[b], dxp[b], w_ci, w_cf, w_co, peephole)


@njit(**JIT)
def _row_times_matrix(v, w, out):
    """out = v W for a row v (K,) and W (K, N), as N-wide contiguous updates (vectorized)."""
    out[:] = 0
    for k in range(w.shape[0]):
        vk, wk = v[k], w[k]
        for j in range(w.shape[1]):
            out[j] += vk * wk[j]


@njit(**JIT)
def lstm_sequence_forward(xp, w_hh_t, w_ci, w_cf, w_co, peephole, counts, reverse, h, c, gates, tanh_c):
    """The whole time loop of `Recurrence.forward` for an LSTM without projection, for small B·H where Python's
    per-step cost would dominate. xp (T, B, 4H); h, c (T+1, B, H) state histories holding the initial state in
    slot 0 (slot T when ``reverse``); counts (T,) rows still inside their sequence; gates, tanh_c: workspace."""
    steps, batch = xp.shape[0], xp.shape[1]
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        read, write = (t + 1, t) if reverse else (t, t + 1)
        n = counts[t]
        for b in range(n):
            a = gates[t, b]
            _row_times_matrix(h[read, b], w_hh_t, a)  # h_{t-1} W_hhᵀ
            _lstm_row_forward(a, xp[t, b], c[read, b], c[write, b], tanh_c[t, b], h[write, b], w_ci, w_cf, w_co,
                              peephole)
        for b in range(n, batch):  # rows past their end carry their state
            h[write, b] = h[read, b]
            c[write, b] = c[read, b]


@njit(**JIT)
def lstm_sequence_backward(dy, dh, dc, w_hh, w_ci, w_cf, w_co, peephole, counts, reverse, detach, c, gates,
                           tanh_c, dxp):
    """The whole backward loop of `Recurrence.backward` for `lstm_sequence_forward`: dy (T, B, H); dh, dc (B, H)
    hold δ(final state) on entry and δ(initial state) on exit; writes δa into dxp (T, B, 4H). ``detach``: Elman's
    training, the gradient stops at each step's previous state."""
    steps = dy.shape[0]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        read = t + 1 if reverse else t
        for b in range(counts[t]):
            dhb, dcb, d = dh[b], dc[b], dxp[t, b]
            dhb += dy[t, b]
            _lstm_row_backward(dhb, dcb, gates[t, b], tanh_c[t, b], c[read, b], d, w_ci, w_cf, w_co, peephole)
            _row_times_matrix(d, w_hh, dhb)  # δh_{t-1} = δa W_hh
            if detach:
                dhb[:] = 0
                dcb[:] = 0


# -- GRU -------------------------------------------------------------------------------------------------------
@njit(**JIT)
def gru_forward_reset_after(gates, xp, b_hn, h_prev, inner, h_new):
    """`GRUStep.step` (reset after) after the GEMM: ``gates`` (n, 3H) holds h_{t-1} W_hhᵀ on entry, the activated
    [r, z, n] on exit; ``inner`` ← h_{t-1} W_hnᵀ + b_hn; h_t = n + z ⊙ (h_{t-1} − n)."""
    hs = h_prev.shape[1]
    for b in range(gates.shape[0]):
        a, x, hp, q, hn = gates[b], xp[b], h_prev[b], inner[b], h_new[b]
        for j in range(hs):
            r, z = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
            q_j = a[2 * hs + j] + b_hn[j]
            n = tanh(x[2 * hs + j] + r * q_j)
            a[j], a[hs + j], a[2 * hs + j], q[j] = r, z, n, q_j
            hn[j] = n + z * (hp[j] - n)


@njit(**JIT)
def gru_backward_reset_after(dh, gates, inner, h_prev, dxp, dq):
    """`GRUStep.step_backward` (reset after) before the GEMM δh_{t-1} += δq W_hh: writes δa = [δa_r, δa_z, δa_n]
    into ``dxp``, δq = [δa_r, δa_z, δa_n ⊙ r] into ``dq`` and leaves δh ⊙ z in ``dh``."""
    hs = dh.shape[1]
    for b in range(dh.shape[0]):
        a, q, hp, d, dqb, dhb = gates[b], inner[b], h_prev[b], dxp[b], dq[b], dh[b]
        for j in range(hs):
            r, z, n = a[j], a[hs + j], a[2 * hs + j]
            da_r, da_z, da_n = gru_gate_grads(dhb[j], r, z, n, hp[j], q[j])
            d[j], d[hs + j], d[2 * hs + j] = da_r, da_z, da_n
            dqb[j], dqb[hs + j], dqb[2 * hs + j] = da_r, da_z, da_n * r
            dhb[j] = dhb[j] * z


@njit(**JIT)
def gru_gates_reset_before(gates, xp, h_prev, inner):
    """`GRUStep.step` (reset before), between its GEMMs: [r, z] = σ(h_{t-1} W_h{r,z}ᵀ + xp) in place in ``gates``
    (n, 3H; the n block is untouched); ``inner`` ← r ⊙ h_{t-1}."""
    hs = h_prev.shape[1]
    for b in range(gates.shape[0]):
        a, x, hp, q = gates[b], xp[b], h_prev[b], inner[b]
        for j in range(hs):
            r, z = sigmoid(a[j] + x[j]), sigmoid(a[hs + j] + x[hs + j])
            a[j], a[hs + j], q[j] = r, z, r * hp[j]


@njit(**JIT)
def gru_output_reset_before(gates, xp, h_prev, h_new):
    """`GRUStep.step` (reset before), after its second GEMM: n = tanh(a_n + xp_n); h_t = n + z ⊙ (h_{t-1} − n)."""
    hs = h_prev.shape[1]
    for b in range(gates.shape[0]):
        a, x, hp, hn = gates[b], xp[b], h_prev[b], h_new[b]
        for j in range(hs):
            n = tanh(a[2 * hs + j] + x[2 * hs + j])
            a[2 * hs + j] = n
            hn[j] = n + a[hs + j] * (hp[j] - n)


@njit(**JIT)
def gru_backward_reset_before_zn(dh, gates, h_prev, dxp):
    """`GRUStep.step_backward` (reset before), first part: δa_n, δa_z into ``dxp``; δh ← δh ⊙ z."""
    hs = dh.shape[1]
    for b in range(dh.shape[0]):
        a, hp, d, dhb = gates[b], h_prev[b], dxp[b], dh[b]
        for j in range(hs):
            z, n = a[hs + j], a[2 * hs + j]
            d[2 * hs + j] = dhb[j] * (one(z) - z) * dtanh(n)
            d[hs + j] = dhb[j] * (hp[j] - n) * dsigmoid(z)
            dhb[j] = dhb[j] * z


@njit(**JIT)
def gru_backward_reset_before_r(d_rh, gates, h_prev, dxp, dh):
    """Second part, after δ(r ⊙ h) = δa_n W_hn: δa_r = δ(r ⊙ h) ⊙ h_{t-1} ⊙ r(1 − r) into ``dxp``;
    δh += δ(r ⊙ h) ⊙ r."""
    hs = dh.shape[1]
    for b in range(dh.shape[0]):
        a, hp, d, drh, dhb = gates[b], h_prev[b], dxp[b], d_rh[b], dh[b]
        for j in range(hs):
            r = a[j]
            d[j] = drh[j] * hp[j] * dsigmoid(r)
            dhb[j] += drh[j] * r


# -- Recurrent highway network ---------------------------------------------------------------------------------
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


# -- Mogrifier rounds ------------------------------------------------------------------------------------------
@njit(**JIT)
def mogrifier_round(g, gated, out):
    """`MogrifierStep.step`, one round after its GEMM: ``g`` (n, K) holds z on entry and 2σ(z) on exit;
    out = 2σ(z) ⊙ gated."""
    for b in range(g.shape[0]):
        gb, xb, ob = g[b], gated[b], out[b]
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


# -- Jordan network --------------------------------------------------------------------------------------------
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
    """y ← ψ(y + b_hy) after the output GEMM; ``activation`` 0 sigmoid, 1 tanh, 2 identity."""
    for b in range(y.shape[0]):
        for j in range(y.shape[1]):
            a = y[b, j] + bias[j] if has_bias else y[b, j]
            y[b, j] = sigmoid(a) if activation == 0 else (tanh(a) if activation == 1 else a)


@njit(**JIT)
def jordan_output_backward(dy, y, activation, da_y):
    """δa_y = δy ⊙ ψ'(y): y(1 − y), 1 − y², or 1."""
    for b in range(y.shape[0]):
        for j in range(y.shape[1]):
            d = dy[b, j]
            da_y[b, j] = d * dsigmoid(y[b, j]) if activation == 0 else (d * dtanh(y[b, j]) if activation == 1 else d)


@njit(**JIT)
def jordan_hidden_backward(dxp, h):
    """δa_h = (δa_y W_hy) ⊙ (1 − h²), in place in ``dxp``."""
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            dxp[b, j] = dxp[b, j] * dtanh(h[b, j])


# -- Zoneout (applied by the runner, for every cell) -------------------------------------------------------------
#: without fastmath: d·prev + (1 − d)·proposed must stay exactly prev where d = 1 (no reassociation, no fma)
EXACT = {**JIT, "fastmath": False}


@njit(**EXACT)
def zoneout_mix(prev, proposed, keep, out):
    """`Recurrence._zoneout_loop`: s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t. All (n, S)."""
    for b in range(out.shape[0]):
        for j in range(out.shape[1]):
            d = keep[b, j]
            out[b, j] = d * prev[b, j] + (one(d) - d) * proposed[b, j]


@njit(**EXACT)
def zoneout_split(ds, keep, direct):
    """Zoneout's backward: ``direct`` = d ⊙ δs_t (to s_{t−1}, around the cell), δs_t ← (1 − d) ⊙ δs_t (to s̃_t)."""
    for b in range(ds.shape[0]):
        for j in range(ds.shape[1]):
            d, g = keep[b, j], ds[b, j]
            direct[b, j] = d * g
            ds[b, j] = (one(d) - d) * g


from .compiled_newer import *  # noqa: E402,F401,F403 - the kernels of the newer cells, same interface
