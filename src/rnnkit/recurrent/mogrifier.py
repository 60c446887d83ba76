"""Mogrifier LSTM (Melis, Kočiský & Blunsom 2020): x and h gate each other before every LSTM step."""

from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid
from ..module import Parameter, as_rng
from .layer import RecurrentLayer
from .lstm import LSTMStep


class MogrifierStep(LSTMStep):
    r"""One Mogrifier LSTM step: ``rounds`` r alternating gating rounds, then the `LSTMStep` equations.

    With x^{-1} = x_t and h^0 = h_{t-1}, for i = 1..r:

        i odd:   x^i = 2σ(h^{i-1} Q_iᵀ) ⊙ x^{i-2}          Q_i (I, R)  [low rank: Q_i = U_i V_i]
        i even:  h^i = 2σ(x^{i-1} R_iᵀ) ⊙ h^{i-2}          R_i (R, I)  [low rank: R_i = U_i V_i]

    then the LSTM step on (x↑, h↑), the last x and h; ``rounds=0`` is exactly the LSTM. Because the input gates
    depend on the state, the projection x↑ W_ihᵀ happens inside the loop (``project`` is the identity here).

    Backward, with g = 2σ(z) the round's gate (dg/dz = g (1 − g/2)): from the LSTM's δa,
    δx↑ = δa W_ih and δh↑ = δa W_hh, then for i = r..1:

        i odd:   δz = δx^i ⊙ x^{i-2} ⊙ g(1 − g/2),   δx^{i-2} = δx^i ⊙ g,   δh^{i-1} += δz Q_i
        i even:  δz = δh^i ⊙ h^{i-2} ⊙ g(1 − g/2),   δh^{i-2} = δh^i ⊙ g,   δx^{i-1} += δz R_i
        after the loop: δQ_i += Σ_t δzᵀ h^{i-1},  δR_i += Σ_t δzᵀ x^{i-1}  (low rank: through U_i, V_i),
                        and the LSTM's δW_ih, δW_hh with x↑, h↑ in place of x, h.

    Parameters beyond the LSTM's: ``weight_mq`` (⌈r/2⌉, I, R) and ``weight_mr`` (⌊r/2⌋, R, I), or with
    ``rank`` k: ``weight_mq_u`` (⌈r/2⌉, I, k), ``weight_mq_v`` (⌈r/2⌉, k, R), ``weight_mr_u`` (⌊r/2⌋, R, k),
    ``weight_mr_v`` (⌊r/2⌋, k, I).
    """

    def __init__(self, input_size, hidden_size, bias=True, rounds=5, rank=None, proj_size=0, peephole=False,
                 forget_bias=None, dtype=np.float32, rng=None):
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if rank is not None and rank < 1:
            raise ValueError(f"rank must be a positive integer or None, got {rank}")
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=bias, proj_size=proj_size, peephole=peephole,
                         forget_bias=forget_bias, dtype=dtype, rng=rng)
        self.rounds, self.rank = rounds, rank
        self.n_q, self.n_r = (rounds + 1) // 2, rounds // 2
        size_x, size_h = input_size, self.recurrent_size
        bound = 1.0 / math.sqrt(hidden_size)

        def param(*shape):
            return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))

        self.mog = []  # (name, Parameter) in state-dict order
        for tag, count, rows, cols in (("mq", self.n_q, size_x, size_h), ("mr", self.n_r, size_h, size_x)):
            if not count:
                continue
            if rank is None:
                self.mog.append((f"weight_{tag}", param(count, rows, cols)))
            else:
                self.mog += [(f"weight_{tag}_u", param(count, rows, rank)),
                             (f"weight_{tag}_v", param(count, rank, cols))]
        for name, p in self.mog:
            setattr(self, name, p)

    def named_params(self):
        return super().named_params() + self.mog

    def project(self, x):
        return x  # the input projection depends on the state: it is done per step, after the rounds

    def allocate(self, steps, batch, ragged=False):
        super().allocate(steps, batch, ragged)
        make = np.zeros if ragged else np.empty
        size_x, size_h, k = self.input_size, self.recurrent_size, self.rank
        self.xs = make((self.n_q + 1, steps, batch, size_x), self.dtype)  # x^{-1}, x^1, x^3, ...
        self.hs = make((self.n_r + 1, steps, batch, size_h), self.dtype)  # h^0, h^2, ...
        self.gq = make((self.n_q, steps, batch, size_x), self.dtype)  # 2σ(z) of the x-rounds, then δz
        self.gr = make((self.n_r, steps, batch, size_h), self.dtype)
        self.dzq = make((self.n_q, steps, batch, size_x), self.dtype)
        self.dzr = make((self.n_r, steps, batch, size_h), self.dtype)
        if k:  # low rank: the k-wide middle activations and their gradients
            self.mq, self.dmq = make((2, self.n_q, steps, batch, k), self.dtype)
            self.mr, self.dmr = make((2, self.n_r, steps, batch, k), self.dtype)
        self.dx = make((steps, batch, size_x), self.dtype)
        self._w_ih_t = np.ascontiguousarray(self.weight_ih.data.T)
        self._b = (self.bias_ih.data + self.bias_hh.data) if self.bias else None
        self._xp = np.empty((batch, 4 * self.hidden_size), self.dtype)

    def _round_input(self, odd: bool, k: int, t: int, n: int):
        """(input of the round's gate, value being gated, output slot) for odd round k or even round k."""
        if odd:
            return self.hs[k, t, :n], self.xs[k, t, :n], self.xs[k + 1, t, :n]
        return self.xs[k + 1, t, :n], self.hs[k, t, :n], self.hs[k + 1, t, :n]

    def _gate_preactivation(self, odd, k, t, n, inp, out):
        """z = inp · Mᵀ for the round's matrix M (Q_k or R_k), possibly through the rank-k middle."""
        name = "mq" if odd else "mr"
        if self.rank is None:
            np.matmul(inp, getattr(self, f"weight_{name}").data[k].T, out=out)
        else:
            mid = (self.mq if odd else self.mr)[k, t, :n]
            np.matmul(inp, getattr(self, f"weight_{name}_v").data[k].T, out=mid)
            np.matmul(mid, getattr(self, f"weight_{name}_u").data[k].T, out=out)

    def step(self, t, xp, prev, new):
        n = xp.shape[0]
        self.xs[0, t, :n] = xp
        self.hs[0, t, :n] = prev[0]
        for i in range(1, self.rounds + 1):
            odd, k = i % 2 == 1, (i - 1) // 2 if i % 2 else i // 2 - 1
            inp, gated, out = self._round_input(odd, k, t, n)
            g = (self.gq if odd else self.gr)[k, t, :n]
            self._gate_preactivation(odd, k, t, n, inp, g)
            sigmoid(g, out=g)
            g *= 2.0
            np.multiply(g, gated, out=out)
        x_m, h_m = self.xs[self.n_q, t, :n], self.hs[self.n_r, t, :n]
        gates_in = self._xp[:n]
        np.matmul(x_m, self._w_ih_t, out=gates_in)
        if self.bias:
            gates_in += self._b
        super().step(t, gates_in, (h_m, prev[1]), new)

    def step_backward(self, t, dstate, prev, new, dxp):
        n = dxp.shape[0]
        h_m = self.hs[self.n_r, t, :n]
        super().step_backward(t, dstate, (h_m, prev[1]), new, dxp)  # δa → dxp, δh↑ → dstate[0], δc_{t-1}
        dx, dh = self.dx[t, :n], dstate[0]
        np.matmul(dxp, self.weight_ih.data, out=dx)  # δx↑
        for i in range(self.rounds, 0, -1):
            odd, k = i % 2 == 1, (i - 1) // 2 if i % 2 else i // 2 - 1
            _, gated, _ = self._round_input(odd, k, t, n)
            g = (self.gq if odd else self.gr)[k, t, :n]
            dz = (self.dzq if odd else self.dzr)[k, t, :n]
            d_out, d_in = (dx, dh) if odd else (dh, dx)
            # δz = δout ⊙ gated ⊙ g(1 − g/2);  δgated = δout ⊙ g;  δinput += δz M
            np.multiply(g, 0.5, out=dz)
            np.subtract(1.0, dz, out=dz)
            dz *= g
            dz *= gated
            dz *= d_out
            d_out *= g
            name = "mq" if odd else "mr"
            if self.rank is None:
                d_in += dz @ getattr(self, f"weight_{name}").data[k]
            else:
                dmid = (self.dmq if odd else self.dmr)[k, t, :n]
                np.matmul(dz, getattr(self, f"weight_{name}_u").data[k], out=dmid)
                d_in += dmid @ getattr(self, f"weight_{name}_v").data[k]

    def accumulate(self, x, dxp, prev, new):
        steps, batch = self.dx.shape[:2]
        rows = steps * batch

        def flat(a):
            return a.reshape(rows, -1)

        super().accumulate(flat(self.xs[self.n_q]), dxp, (flat(self.hs[self.n_r]), prev[1]), new, input_grad=False)
        for odd, count in ((True, self.n_q), (False, self.n_r)):
            name = "mq" if odd else "mr"
            for k in range(count):
                inp = flat(self.hs[k] if odd else self.xs[k + 1])
                dz = flat((self.dzq if odd else self.dzr)[k])
                if self.rank is None:
                    getattr(self, f"weight_{name}").grad[k] += dz.T @ inp
                else:
                    mid, dmid = flat((self.mq if odd else self.mr)[k]), flat((self.dmq if odd else self.dmr)[k])
                    getattr(self, f"weight_{name}_u").grad[k] += dz.T @ mid
                    getattr(self, f"weight_{name}_v").grad[k] += dmid.T @ inp
        return flat(self.dx)


class MogrifierLSTM(RecurrentLayer):
    r"""Mogrifier LSTM: ``MogrifierLSTM(input_size, hidden_size, rounds=5, rank=None, num_layers=1, bias=True,
    dropout=0.0, bidirectional=False, proj_size=0, peephole=False, forget_bias=None, stateful=False,
    dtype=float32)``. The LSTM's parameters (PyTorch names and layout) plus the mogrifier matrices per layer,
    ``weight_mq_l{k}`` / ``weight_mr_l{k}`` (or their ``_u``/``_v`` low-rank factors). See `MogrifierStep`.
    """

    cell_class = MogrifierStep

    def __init__(self, input_size, hidden_size, rounds=5, rank=None, num_layers=1, bias=True, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, forget_bias=None, stateful=False,
                 dtype=np.float32, rng=None):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng, rounds=rounds,
                         rank=rank, proj_size=proj_size, peephole=peephole, forget_bias=forget_bias)
        self.rounds, self.rank, self.proj_size, self.peephole = rounds, rank, proj_size, peephole
