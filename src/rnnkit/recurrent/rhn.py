"""Recurrent Highway Network (Zilly et al. 2017): L highway micro-cells per time step."""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from ..module import Parameter, as_rng
from .cell import Cell
from .layer import RecurrentLayer


class RHNStep(Cell):
    r"""One RHN time step of ``depth`` L micro-cells; gates fused per depth as [h, t] (coupled) or [h, t, c].

    With s^0 = s_{t-1} (the previous step's last micro-state) and l = 1..L:

        a^l = s^{l-1} R_lᵀ + b_l  (+ x_t W_ihᵀ + b_ih for l = 1 only: the input enters the first micro-cell)
        h^l = tanh(a^l_h),   t^l = σ(a^l_t),   c^l = 1 − t^l (coupled) or σ(a^l_c)
        s^l = h^l ⊙ t^l + s^{l-1} ⊙ c^l,        s_t = s^L (the output and the state)

    Parameters: ``weight_ih`` (G, I), ``bias_ih`` (G) for the first micro-cell; ``weight_hh`` (L·G, H) and
    ``bias_hh`` (L·G) hold R_l and b_l stacked by depth (G = 2H coupled, 3H otherwise).

    Backward through the micro-cells, from δs^L = δs_t:

        δh = δs^l ⊙ t,   δt = δs^l ⊙ (h − s^{l-1}) coupled, δs^l ⊙ h otherwise,   δc = δs^l ⊙ s^{l-1}
        δa_h = δh ⊙ (1 − h²),   δa_t = δt ⊙ t (1 − t),   δa_c = δc ⊙ c (1 − c)
        δs^{l-1} = δs^l ⊙ c + δa^l R_l,     δs_{t-1} = δs^0
        after the loop, per depth: δR_l += Σ_t δa^lᵀ s^{l-1},  δb_l += Σ_t δa^l;  δW_ih += Σ_t δa^1ᵀ x_t

    Caches: activated gates per depth (L, T, B, G), micro-state inputs s^{l-1} (L, T, B, H), and δa^l for l ≥ 2.
    """

    def __init__(self, input_size, hidden_size, bias=True, depth=1, coupled=True, transform_bias=-2.0,
                 dtype=np.float32, rng=None):
        if depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth}")
        self.num_gates = 2 if coupled else 3
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng)
        self.depth, self.coupled = depth, coupled
        g, bound = self.num_gates * hidden_size, 1.0 / np.sqrt(hidden_size)
        self.weight_hh = Parameter(rng.uniform(-bound, bound, (depth * g, hidden_size)).astype(dtype))
        if bias:
            b = rng.uniform(-bound, bound, (depth, self.num_gates, hidden_size))
            b[:, 1] = transform_bias  # the transform gate starts mostly closed: s^l ≈ s^{l-1}
            self.bias_hh = Parameter(b.reshape(-1).astype(dtype))
            self.bias_ih.data[hidden_size:2 * hidden_size] = 0.0

    def allocate(self, steps, batch, ragged=False):
        make = np.zeros if ragged else np.empty
        g, hs, depth = self.num_gates * self.hidden_size, self.hidden_size, self.depth
        self.gates = make((depth, steps, batch, g), self.dtype)
        self.inputs = make((depth, steps, batch, hs), self.dtype)
        self.dgates = make((depth, steps, batch, g), self.dtype)
        w = self.weight_hh.data.reshape(depth, g, hs)
        self.r_t = [np.ascontiguousarray(w[l].T) for l in range(depth)]  # (H, G) per depth
        self.r = [w[l] for l in range(depth)]  # (G, H) views, contiguous
        self.b = [None] * depth if not self.bias else list(self.bias_hh.data.reshape(depth, g))
        self._tmp = np.empty((2, batch, hs), self.dtype)

    def project(self, x):
        xp = x @ np.ascontiguousarray(self.weight_ih.data.T)
        if self.bias:
            xp += self.bias_ih.data
        return xp

    def step(self, t, xp, prev, new):
        n, hs = xp.shape[0], self.hidden_size
        s = prev[0]
        for l in range(self.depth):
            a, s_in = self.gates[l, t, :n], self.inputs[l, t, :n]
            s_in[...] = s
            np.matmul(s, self.r_t[l], out=a)
            if self.bias:
                a += self.b[l]
            if l == 0:
                a += xp
            h, tg = a[:, :hs], a[:, hs:2 * hs]
            np.tanh(h, out=h)
            sigmoid(a[:, hs:], out=a[:, hs:])  # t (and c when uncoupled)
            out = new[0] if l == self.depth - 1 else self.inputs[l + 1, t, :n]
            if self.coupled:  # s^l = s^{l-1} + t ⊙ (h − s^{l-1})
                np.subtract(h, s_in, out=out)
                out *= tg
                out += s_in
            else:  # s^l = h ⊙ t + s^{l-1} ⊙ c
                np.multiply(h, tg, out=out)
                out += np.multiply(s_in, a[:, 2 * hs:], out=self._tmp[0, :n])
            s = out

    def step_backward(self, t, dstate, prev, new, dxp):
        n, hs = dxp.shape[0], self.hidden_size
        ds = dstate[0]
        tmp = self._tmp[0, :n]
        for l in reversed(range(self.depth)):
            a, s_in = self.gates[l, t, :n], self.inputs[l, t, :n]
            da = dxp if l == 0 else self.dgates[l, t, :n]
            h, tg = a[:, :hs], a[:, hs:2 * hs]
            da_h, da_t = da[:, :hs], da[:, hs:2 * hs]
            # δa_h = δs ⊙ t ⊙ (1 − h²)
            np.multiply(h, h, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            np.multiply(ds, tg, out=da_h)
            da_h *= tmp
            # δa_t = δs ⊙ (h − s^{l-1}) ⊙ t(1 − t)  [coupled]  or  δs ⊙ h ⊙ t(1 − t)
            np.subtract(1.0, tg, out=tmp)
            tmp *= tg
            if self.coupled:
                np.subtract(h, s_in, out=da_t)
                da_t *= ds
                da_t *= tmp
                np.subtract(1.0, tg, out=tmp)  # δs^{l-1} direct part: δs ⊙ (1 − t)
            else:
                np.multiply(ds, h, out=da_t)
                da_t *= tmp
                c, da_c = a[:, 2 * hs:], da[:, 2 * hs:]
                np.subtract(1.0, c, out=tmp)
                tmp *= c
                np.multiply(ds, s_in, out=da_c)
                da_c *= tmp
                tmp[...] = c  # δs^{l-1} direct part: δs ⊙ c
            ds *= tmp
            ds += da @ self.r[l]

    def accumulate(self, x, dxp, prev, new):
        steps, batch = self.gates.shape[1:3]
        rows, g = steps * batch, self.num_gates * self.hidden_size
        self.dgates[0] = dxp.reshape(steps, batch, g)
        grad = self.weight_hh.grad.reshape(self.depth, g, self.hidden_size)
        for l in range(self.depth):
            da = self.dgates[l].reshape(rows, g)
            grad[l] += da.T @ self.inputs[l].reshape(rows, -1)
            if self.bias:
                self.bias_hh.grad[l * g:(l + 1) * g] += da.sum(axis=0)
        self.weight_ih.grad += dxp.T @ x
        if self.bias:
            self.bias_ih.grad += dxp.sum(axis=0)
        return dxp @ self.weight_ih.data


class RHN(RecurrentLayer):
    r"""Recurrent Highway Network: ``RHN(input_size, hidden_size, depth=1, coupled=True, transform_bias=-2.0,
    num_layers=1, bias=True, dropout=0.0, bidirectional=False, stateful=False, dtype=float32)``.

    Per layer k: ``weight_ih_l{k}`` (G, H_in), ``bias_ih_l{k}`` (G), ``weight_hh_l{k}`` (depth·G, H),
    ``bias_hh_l{k}`` (depth·G), G = 2H (coupled carry gate c = 1 − t) or 3H. See `RHNStep` for the equations.
    ``forward(x, s0=None, lengths=None)`` → (output (B, T, D·H), s_n (D·L, B, H)).
    """

    cell_class = RHNStep

    def __init__(self, input_size, hidden_size, depth=1, coupled=True, transform_bias=-2.0, num_layers=1, bias=True,
                 dropout=0.0, bidirectional=False, stateful=False, dtype=np.float32, rng=None):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng, depth=depth,
                         coupled=coupled, transform_bias=transform_bias)
        self.depth, self.coupled = depth, coupled
