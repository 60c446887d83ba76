"""Mogrifier LSTM (Melis, Kočiský & Blunsom 2020): x and h gate each other before every LSTM step."""

from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid
from ..module import MAX_COUNT, Parameter, as_rng, check_int, check_positive_int
from .catalog import CellEntry
from .cell import for_backward, transposed
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
        rounds = check_int("rounds", rounds, 0, MAX_COUNT)
        rank = None if rank is None else check_positive_int("rank (or None)", rank)
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=bias, proj_size=proj_size, peephole=peephole,
                         forget_bias=forget_bias, dtype=dtype, rng=rng)
        self.rounds, self.rank = rounds, rank
        self.n_q, self.n_r = (rounds + 1) // 2, rounds // 2
        size_x, size_h = input_size, self.recurrent_size
        bound = 1.0 / math.sqrt(hidden_size)

        def param(*shape):
            return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))

        for tag, count, rows, cols in (("mq", self.n_q, size_x, size_h), ("mr", self.n_r, size_h, size_x)):
            if not count:
                continue
            if rank is None:
                setattr(self, f"weight_{tag}", param(count, rows, cols))
            else:
                setattr(self, f"weight_{tag}_u", param(count, rows, rank))
                setattr(self, f"weight_{tag}_v", param(count, rank, cols))

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, rounds=5, rank=None, proj_size=0, **options):
        lstm = super().parameter_count(input_size, hidden_size, bias=bias, proj_size=proj_size, **options)
        size_h = proj_size or hidden_size
        per_round = input_size * size_h if rank is None else rank * (input_size + size_h)
        return lstm + rounds * per_round

    def project(self, x, ws=None):
        return x  # the input projection depends on the state: it is done per step, after the rounds

    def allocate(self, steps, batch, ragged=False):
        """The LSTM's workspace plus ``xs`` (⌈r/2⌉+1, T, B, I): x^{-1}, x^1, x^3, ...; ``hs`` (⌊r/2⌋+1, T, B, R):
        h^0, h^2, ...; ``gq``/``gr`` the rounds' gates 2σ(z); ``dzq``/``dzr`` their δz; with ``rank`` the k-wide
        middle activations ``mq``, ``mr`` and their gradients ``dmq``, ``dmr``; ``dx`` (T, B, I) δx_t;
        ``w_ih_t``, ``b`` = b_ih + b_hh, and ``gates_in`` (B, 4H) scratch for x↑ W_ihᵀ + b (the step-by-step loop's);
        the compiled loop writes a_t = x↑ W_ihᵀ + b into ``gates`` (T, B, 4H) instead, which its LSTM step
        activates in place and its backward overwrites with δa, as the LSTM's compiled loop does with its
        projection."""
        ws = super().allocate(steps, batch, ragged)
        make = np.zeros if ragged else np.empty
        size_x, size_h, k, dt = self.input_size, self.recurrent_size, self.rank, self.dtype
        ws.xs = make((self.n_q + 1, steps, batch, size_x), dt)
        ws.hs = make((self.n_r + 1, steps, batch, size_h), dt)
        shapes = {"q": (self.n_q, steps, batch, size_x), "r": (self.n_r, steps, batch, size_h),
                  "mq": (self.n_q, steps, batch, k), "mr": (self.n_r, steps, batch, k)}
        ws.gq, ws.dzq = make(shapes["q"], dt), for_backward(shapes["q"], dt, ragged)
        ws.gr, ws.dzr = make(shapes["r"], dt), for_backward(shapes["r"], dt, ragged)
        if k:
            ws.mq, ws.dmq = make(shapes["mq"], dt), for_backward(shapes["mq"], dt, ragged)
            ws.mr, ws.dmr = make(shapes["mr"], dt), for_backward(shapes["mr"], dt, ragged)
        ws.dx = for_backward((steps, batch, size_x), dt, ragged)
        ws.w_ih_t = transposed(self.weight_ih.data)
        ws.b = (self.bias_ih.data + self.bias_hh.data) if self.bias else None
        ws.gates_in = np.empty((batch, 4 * self.hidden_size), dt)
        if ws.gates is None:  # the whole-sequence loop: the gates go into a history of their own (x is no projection)
            ws.gates = make((steps, batch, 4 * self.hidden_size), dt)
        return ws

    # -- the whole loop in one compiled call --------------------------------------------------------------------
    whole_sequence = True
    forward_only = (*LSTMStep.forward_only, "w_ih_t", "gates_in")
    #: the forward splits each round's columns between the cores, a barrier after each round (every product of a
    #: step reads whole rows: `rnnkit.kernels.mogrifier.mogrifier_step`); the backward runs on one core
    team_units = ("forward",)

    def team_parts(self, batch, loop):
        """One part with a rank (both parts would write the round's whole middle), else the LSTM's policy."""
        return 1 if self.rank is not None else super().team_parts(batch, loop)

    def sequence_forward(self, ws, xp, states, counts, reverse, zoneout, ahead=None):
        """The compiled loop (`rnnkit.kernels.mogrifier`), with x^{-1} = x (``xp``: the projection is the identity)
        in its history once for all steps; the gates have a history of their own (`allocate`)."""
        ws.xs[0] = xp
        super().sequence_forward(ws, xp, states, counts, reverse, zoneout, ahead)

    def compiled_loop(self, ws):
        from ..kernels import mogrifier as fused  # numba is loaded only with compiled kernels active
        from ..kernels.blas import loop_weight

        lstm = super().compiled_loop(ws)[1]
        bias = ws.b if self.bias else np.empty(0, self.dtype)
        columns = self.team_shares(ws, "forward", 1)  # a team splits each round's columns
        return fused.mogrifier_sequence_forward, (
            lstm, self.rounds, ws.xs, ws.hs, ws.gq, ws.gr, *self._middles(ws, "mq", "mr"),
            self._round_stacks(True, True, columns), self._round_stacks(False, True, columns), self.rank is not None,
            loop_weight(ws.w_ih_t, self.team_shares(ws, "forward", self.team_blocks)), bias, self.bias, ws.gates)

    def compiled_loop_backward(self, ws):
        from ..kernels import mogrifier as fused
        from ..kernels.blas import loop_weight

        lstm = super().compiled_loop_backward(ws)[1]
        return fused.mogrifier_sequence_backward, (
            lstm, self.rounds, ws.xs, ws.hs, ws.gq, ws.gr, ws.dzq, ws.dzr, *self._middles(ws, "dmq", "dmr"),
            self._round_stacks(True, False), self._round_stacks(False, False), self.rank is not None,
            loop_weight(self.weight_ih.data), ws.dx)

    def loop_work(self, steps, batch):
        """The LSTM's recurrent product, the input projection of x↑ and the rounds' products, per step."""
        size_x, size_h = self.input_size, self.recurrent_size
        per_round = size_x * size_h if self.rank is None else self.rank * (size_x + size_h)
        per_step = size_x * 4 * self.hidden_size + self.rounds * per_round
        return super().loop_work(steps, batch) + steps * batch * per_step

    def recurrent_history(self, ws):
        """h↑, the last h of the rounds (T, B, R): the LSTM step's recurrent product reads it instead of h_{t−1}."""
        return ws.hs[self.n_r]

    def _middles(self, ws, *names):
        """The rank-k middle arrays ``names`` of the workspace, or empty ones at full rank."""
        none = np.empty((0, 0, 0, 0), self.dtype)
        return tuple(getattr(ws, name) if self.rank else none for name in names)

    def _round_stacks(self, odd: bool, forward: bool, team_blocks: int = 0) -> tuple:
        """The (first, second) `rnnkit.kernels.blas.loop_weights` stacks of the Q (``odd``) or R rounds (for a team
        of ``team_blocks``): forward z = inp · Mᵀ, M = Q_k or R_k, as (Mᵀ, unused), low rank M = U V as (Vᵀ, Uᵀ);
        backward δinput = δz · M as (M, unused), low rank (U, V)."""
        from ..kernels.blas import loop_weights

        mats = [m.data for m in self._matrices(odd)] if (self.n_q if odd else self.n_r) else []
        if not mats:  # no round of this kind (rounds < 2): an empty stack
            mats = [np.empty((0, 0, 0), self.dtype)]
        if forward:
            mats = [np.ascontiguousarray(m.transpose(0, 2, 1)) for m in reversed(mats)]
        stacks = [loop_weights(m, team_blocks) for m in mats]
        return stacks[0], stacks[-1]

    @staticmethod
    def _round(i: int) -> tuple[bool, int]:
        """(odd, k): round i gates x with Q_k (odd i) or h with R_k (even i)."""
        return (True, (i - 1) // 2) if i % 2 else (False, i // 2 - 1)

    def _round_arrays(self, ws, odd: bool, k: int, t: int, n: int):
        """(input of the round's gate, value being gated, output slot, gate) of round (odd, k) at step t."""
        if odd:
            return ws.hs[k, t, :n], ws.xs[k, t, :n], ws.xs[k + 1, t, :n], ws.gq[k, t, :n]
        return ws.xs[k + 1, t, :n], ws.hs[k, t, :n], ws.hs[k + 1, t, :n], ws.gr[k, t, :n]

    def _matrices(self, odd: bool):
        """The round's matrix stack: (Q or R,) full rank, or its factors (U, V)."""
        tag = "mq" if odd else "mr"
        if self.rank is None:
            return (getattr(self, f"weight_{tag}"),)
        return getattr(self, f"weight_{tag}_u"), getattr(self, f"weight_{tag}_v")

    def _gate_preactivation(self, ws, odd, k, t, n, inp, out):
        """z = inp · Mᵀ for the round's matrix M (Q_k or R_k), possibly through the rank-k middle V."""
        mats = self._matrices(odd)
        if self.rank is None:
            np.matmul(inp, mats[0].data[k].T, out=out)
        else:
            mid = (ws.mq if odd else ws.mr)[k, t, :n]
            np.matmul(inp, mats[1].data[k].T, out=mid)
            np.matmul(mid, mats[0].data[k].T, out=out)

    def step(self, ws, t, xp, prev, new):
        n = xp.shape[0]
        ws.xs[0, t, :n] = xp
        ws.hs[0, t, :n] = prev[0]
        for i in range(1, self.rounds + 1):  # x^i = 2σ(h^{i-1} Q_iᵀ) ⊙ x^{i-2}  or  h^i = 2σ(x^{i-1} R_iᵀ) ⊙ h^{i-2}
            odd, k = self._round(i)
            inp, gated, out, g = self._round_arrays(ws, odd, k, t, n)
            self._gate_preactivation(ws, odd, k, t, n, inp, g)
            if ws.kernels is not None:
                ws.kernels.mogrifier_round(g, gated, out)
            else:
                sigmoid(g, out=g)
                g *= 2.0
                np.multiply(g, gated, out=out)
        x_m, h_m = ws.xs[self.n_q, t, :n], ws.hs[self.n_r, t, :n]
        gates_in = ws.gates_in[:n]
        np.matmul(x_m, ws.w_ih_t, out=gates_in)
        if self.bias:
            gates_in += ws.b
        super().step(ws, t, gates_in, (h_m, prev[1]), new)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        n = dxp.shape[0]
        h_m = ws.hs[self.n_r, t, :n]
        super().step_backward(ws, t, dstate, (h_m, prev[1]), new, dxp)  # δa → dxp, δh↑ → dstate[0], δc_{t-1}
        dx, dh = ws.dx[t, :n], dstate[0]
        np.matmul(dxp, self.weight_ih.data, out=dx)  # δx↑ = δa W_ih
        for i in range(self.rounds, 0, -1):
            odd, k = self._round(i)
            _, gated, _, g = self._round_arrays(ws, odd, k, t, n)
            dz = (ws.dzq if odd else ws.dzr)[k, t, :n]
            d_out, d_in = (dx, dh) if odd else (dh, dx)
            # δz = δout ⊙ gated ⊙ g(1 − g/2);  δgated = δout ⊙ g;  δinput += δz M
            if ws.kernels is not None:
                ws.kernels.mogrifier_round_backward(g, gated, d_out, dz)
            else:
                np.multiply(g, 0.5, out=dz)
                np.subtract(1.0, dz, out=dz)
                dz *= g
                dz *= gated
                dz *= d_out
                d_out *= g
            mats = self._matrices(odd)
            if self.rank is None:
                d_in += dz @ mats[0].data[k]
            else:
                dmid = (ws.dmq if odd else ws.dmr)[k, t, :n]
                np.matmul(dz, mats[0].data[k], out=dmid)
                d_in += dmid @ mats[1].data[k]

    def accumulate(self, ws, x, dxp, prev, new):
        rows = dxp.shape[0]

        def flat(a):
            return a.reshape(rows, -1)

        x_up, h_up = flat(ws.xs[self.n_q]), flat(ws.hs[self.n_r])  # the LSTM's inputs after the rounds
        self.add_cell_extra_grads(ws, dxp, prev[1], new[1])
        self.add_gate_weight_grads(x_up, dxp, h_up)
        for odd, count in ((True, self.n_q), (False, self.n_r)):
            mats = self._matrices(odd) if count else ()
            for k in range(count):  # δQ_k += Σ_t δzᵀ h^{i-1},  δR_k += Σ_t δzᵀ x^{i-1}  (through U, V if low rank)
                inp = flat(ws.hs[k] if odd else ws.xs[k + 1])
                dz = flat((ws.dzq if odd else ws.dzr)[k])
                if self.rank is None:
                    mats[0].grad[k] += dz.T @ inp
                else:
                    mid, dmid = flat((ws.mq if odd else ws.mr)[k]), flat((ws.dmq if odd else ws.dmr)[k])
                    mats[0].grad[k] += dz.T @ mid
                    mats[1].grad[k] += dmid.T @ inp
        return flat(ws.dx)


class MogrifierLSTM(RecurrentLayer):
    r"""Mogrifier LSTM: ``MogrifierLSTM(input_size, hidden_size, rounds=5, rank=None, num_layers=1, bias=True,
    dropout=0.0, bidirectional=False, proj_size=0, peephole=False, forget_bias=None, stateful=False,
    dtype=float32)``. The LSTM's parameters (PyTorch names and layout) plus the mogrifier matrices per layer,
    ``weight_mq_l{k}`` / ``weight_mr_l{k}`` (or their ``_u``/``_v`` low-rank factors). See `MogrifierStep`.
    """

    cell_class = MogrifierStep
    catalog = CellEntry("mogrifier", options=("rounds", "rank", "proj_size", "peephole", "forget_bias"),
                        variants={"": {"rounds": 3}, "low-rank": {"rounds": 2, "rank": 2}})

    def __init__(self, input_size, hidden_size, rounds=5, rank=None, num_layers=1, bias=True, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, forget_bias=None, stateful=False,
                 dtype=np.float32, rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng, rounds=rounds,
                         rank=rank, proj_size=proj_size, peephole=peephole, forget_bias=forget_bias,
                         return_state=return_state)
        self.rounds, self.rank, self.proj_size, self.peephole = rounds, rank, proj_size, peephole
