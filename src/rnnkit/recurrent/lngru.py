"""Layer-normalised GRU: `LayerNormGRUStep` math (PyTorch's reset-after form) and the `LayerNormGRU` layer."""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from .catalog import CellEntry
from .cell import per_step
from .gru import GRUStep, backward_r_after, backward_z_n, gru_output
from .layer import RecurrentLayer
from .layernorm import LayerNormCell, layer_norm, layer_norm_backward


class LayerNormGRUStep(LayerNormCell):
    r"""One layer-normalised GRU step; gates fused in PyTorch's order r, z, n, the reset gate applied after the
    recurrent matmul (PyTorch's placement). LN(·; γ, β) normalises each row over its 3H features.

    Forward (the first line is the runner's whole-sequence projection ``xp``; b_h{r,z} are folded into it):

        xp = LN(x_t W_ihᵀ; γ_x, β_x) + b_ih + [b_hr, b_hz, 0]          (outside the loop, for all t at once)
        ĥ, s_h = normalise(h_{t-1} W_hhᵀ);   q = γ_h ⊙ ĥ + β_h              split into q_r, q_z, q_n
        r = σ(xp_r + q_r),   z = σ(xp_z + q_z)
        n = tanh(xp_n + r ⊙ (q_n + b_hn))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    that is r = σ(LN_x(x W_ihᵀ)_r + LN_h(h W_hhᵀ)_r + b_ir + b_hr), z likewise, and
    n = tanh(LN_x(x W_ihᵀ)_n + b_in + r ⊙ (LN_h(h W_hhᵀ)_n + b_hn)).

    Backward, given δh_t; LN⁻(δy; γ, v̂, s) = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩) with δv̂ = δy ⊙ γ:

        δa_n = δh_t ⊙ (1 − z) ⊙ (1 − n²),   δa_z = δh_t ⊙ (h_{t-1} − n) ⊙ z (1 − z)
        δa_r = δa_n ⊙ (q_n + b_hn) ⊙ r (1 − r)
        δxp = [δa_r, δa_z, δa_n],   δq = [δa_r, δa_z, δa_n ⊙ r]
        δP_h = LN⁻(δq; γ_h, ĥ, s_h)
        δh_{t-1} = δh_t ⊙ z + δP_h W_hh
        after the loop: δγ_h += Σ δq ⊙ ĥ,  δβ_h += Σ δq,  δb_hh += Σ δq,  δW_hh += Σ δP_hᵀ h_{t-1},
                        δb_ih += Σ δxp,  δγ_x += Σ δxp ⊙ x̂,  δβ_x += Σ δxp,  δP_x = LN⁻(δxp; γ_x, x̂, s_x),
                        δW_ih += Σ δP_xᵀ x,  δx = δP_x W_ih
        (δq is rebuilt there from δxp and r, so the steps store only δP_h.)

    Two biases as PyTorch's GRU: b_hn sits inside r ⊙ (…), so it is not b_in's double; b_hr and b_hz are (they are
    kept so that the parameters are named and shaped as ``torch.nn.GRU``'s).

    Workspace: ``gates`` (T, B, 3H) the activated [r, z, n]; ``inner`` (T, B, H) q_n + b_hn; ``h_hat`` (T, B, 3H),
    ``h_inv_std`` (T, B, 1); written by the backward: ``dp_h`` (T, B, 3H), and on the compiled loop δa over
    ``gates`` and r over ``inner`` (`reset_history`); ``x_hat``, ``x_inv_std`` (from ``project``); ``b_hn``;
    ``scratch`` (B, 3H) δq of one step, ``tmp`` (B, H). The compiled whole-sequence loop writes the gates over the
    projection ``xp`` instead (`LayerNormCell.sequence_forward`: it becomes ``gates``), each step's product into
    ``product`` (B, 3H).
    """

    num_gates = 3
    gate_names = ("r", "z", "n")
    fold_hidden_bias = False

    def input_bias(self):
        if not self.bias:
            return None
        b = self.bias_ih.data.copy()
        b[:2 * self.hidden_size] += self.bias_hh.data[:2 * self.hidden_size]
        return b

    def allocate(self, steps, batch, ragged=False):
        ws = super().allocate(steps, batch, ragged)
        h, dt, kept = self.hidden_size, self.dtype, self.history_steps(steps, batch)
        ws.inner = per_step(kept, batch, h, dt, ragged)
        ws.b_hn = self.bias_hh.data[2 * h:] if self.bias else np.zeros(h, dt)
        ws.scratch = np.empty((batch, 3 * h), dt)
        ws.tmp = np.empty((batch, h), dt)
        return ws

    whole_sequence = True
    grads_over_gates = True  # the backward step reads r, z, n of a unit, writes its δa over them and keeps r in inner
    reset_history = GRUStep.reset_history  # r of the call, in ``inner`` once δa has gone over the gates
    #: in a team (`rnnkit.kernels.team`) each part computes its columns of h_{t−1} W_hhᵀ, then whole rows of its
    #: share of the batch (a row's normalisation spans all its units); the backward, rows then columns
    team_units = ("forward", "backward")
    #: in inference only: its training calls gain nothing as halves, whose γ and β sums (NumPy, one core) come
    #: after both loops instead of behind the loop on the other core (input 64, H = 256, B = 32, ms, team →
    #: halves: inference 11.8 → 10.8, training 35.0 → 36.7)
    batch_halves = ("inference",)

    def compiled_loop(self, ws):
        from ..kernels import layernorm as fused  # numba is loaded only with compiled kernels active

        return fused.lngru_sequence_forward, (
            self.recurrent_loop_weight(ws), self.layernorm_h_weight.data, self.layernorm_h_bias.data, ws.b_hn,
            ws.product, ws.h_hat, ws.h_inv_std, ws.inner)

    def compiled_loop_backward(self, ws):
        from ..kernels import layernorm as fused

        return fused.lngru_sequence_backward, (
            self.backward_loop_weight(ws), self.layernorm_h_weight.data, ws.gates, ws.h_hat, ws.h_inv_std, ws.inner,
            ws.dp_h)

    def step(self, ws, t, xp, prev, new):
        (h_prev,), (h_new,) = prev, new
        rows, hs = xp.shape[0], self.hidden_size
        gates, inner, h_hat, h_s = ws.gates[t, :rows], ws.inner[t, :rows], ws.h_hat[t, :rows], ws.h_inv_std[t, :rows]
        gamma, beta = self.layernorm_h_weight.data, self.layernorm_h_bias.data
        np.matmul(h_prev, ws.w_hh_t, out=gates)  # h_{t-1} W_hhᵀ
        if ws.kernels is not None:
            ws.kernels.lngru_forward(gates, xp, gamma, beta, ws.b_hn, h_prev, h_hat, h_s[:, 0], inner, h_new, False)
            return
        layer_norm(gates, gamma, beta, h_hat, h_s, out=gates)  # q = γ_h ⊙ ĥ + β_h
        # inner = q_n + b_hn
        np.add(gates[:, 2 * hs:], ws.b_hn, out=inner)
        # r = σ(xp_r + q_r),  z = σ(xp_z + q_z)
        gates[:, :2 * hs] += xp[:, :2 * hs]
        sigmoid(gates[:, :2 * hs], out=gates[:, :2 * hs])
        # n = tanh(xp_n + r ⊙ inner)
        n, z = gates[:, 2 * hs:], gates[:, hs:2 * hs]
        np.multiply(gates[:, :hs], inner, out=n)
        n += xp[:, 2 * hs:]
        np.tanh(n, out=n)
        gru_output(n, z, h_prev, h_new)  # h_t = n + z ⊙ (h_{t-1} − n)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dh,), (h_prev,) = dstate, prev
        rows = dxp.shape[0]
        gates, inner, h_hat, h_s = ws.gates[t, :rows], ws.inner[t, :rows], ws.h_hat[t, :rows], ws.h_inv_std[t, :rows]
        gamma, dp_h = self.layernorm_h_weight.data, ws.dp_h[t, :rows]
        if ws.kernels is not None:
            ws.kernels.lngru_backward(dh, gates, inner, h_prev, h_hat, h_s[:, 0], gamma, dxp, dp_h)
        else:
            dq = ws.scratch[:rows]
            # δxp = [δa_r, δa_z, δa_n], δq = [δa_r, δa_z, δa_n ⊙ r], δh ← δh ⊙ z: the GRU's gate backward
            backward_z_n(self.hidden_size, dh, gates, h_prev, dxp, ws.tmp[:rows])
            backward_r_after(self.hidden_size, gates, inner, dxp, dq, ws.tmp[:rows])
            # δP_h = LN⁻(δq; γ_h, ĥ, s_h)
            layer_norm_backward(dq, gamma, h_hat, h_s, out=dp_h)
        # δh_{t-1} = δh_t ⊙ z + δP_h W_hh  (δh ⊙ z is already in dh)
        dh += np.matmul(dp_h, self.weight_hh.data, out=ws.tmp[:rows])

    def accumulate(self, ws, x, dxp, prev, new, behind=None):
        """The recurrent side's sums with δq = [δa_r, δa_z, δa_n ⊙ r], δb_hh += Σ δq, δb_ih += Σ δxp, then the input
        side (``behind``: `LayerNormCell.sums_behind`, which made the sums over rows: `row_sums_behind`)."""
        hs = self.hidden_size
        if behind is not None and behind.row_sums:
            dq, dq_sum, da_sum = dxp, ws.dq_sum, ws.da_sum  # δq itself is not read again
        else:
            dq = dxp.copy()
            dq[:, 2 * hs:] *= self.reset_history(ws).reshape(-1, hs)  # δa_n ⊙ r
            dq_sum, da_sum = dq.sum(axis=0), dxp.sum(axis=0)  # δβ_h and δb_hh alike; δb_ih and δβ_x alike
        self.add_recurrent_grads(ws, dq, dq_sum, prev[0], behind)
        if self.bias:
            self.bias_hh.grad += dq_sum
            self.bias_ih.grad += da_sum
        return self.add_input_grads(ws, x, dxp, da_sum, behind)


    def row_sums_behind(self, ws, dxp):
        """`LayerNormCell.row_sums_behind`: δγ_x += Σ δa ⊙ X̂ and δγ_h += Σ δq ⊙ ĥ into the parameters' gradients,
        Σ δa (δb_ih and δβ_x alike) into ``ws.da_sum`` and Σ δq (δb_hh and δβ_h alike) into ``ws.dq_sum``, with
        δq = [δa_r, δa_z, δa_n ⊙ r] made row by row (r from `reset_history`, where the loop leaves it)."""
        from ..kernels.behind import row_product, row_total

        rows, g, hs = dxp.shape[0], dxp.shape[1], self.hidden_size
        r = self.reset_history(ws).reshape(rows, hs)
        ws.da_sum, ws.dq_sum = np.zeros(g, dxp.dtype), np.zeros(g, dxp.dtype)
        products = (row_product(dxp, ws.x_hat, self.layernorm_x_weight.grad),
                    row_product(dxp, ws.h_hat.reshape(rows, g), self.layernorm_h_weight.grad, r, 2 * hs))
        return products, (row_total(dxp, ws.da_sum), row_total(dxp, ws.dq_sum, r, 2 * hs))


class LayerNormGRU(RecurrentLayer):
    r"""Multi-layer layer-normalised GRU, PyTorch's gate order r, z, n and reset-after placement:

        r = σ(LN(x W_ihᵀ; γ_x, β_x)_r + LN(h_{t-1} W_hhᵀ; γ_h, β_h)_r + b_ir + b_hr),   z likewise,
        n = tanh(LN(x W_ihᵀ)_n + b_in + r ⊙ (LN(h_{t-1} W_hhᵀ)_n + b_hn)),   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    (equations and backward in `LayerNormGRUStep`). ``LayerNormGRU(input_size, hidden_size, num_layers=1,
    bias=True, dropout=0.0, bidirectional=False, stateful=False, dtype=float32)``

    Parameters per layer k (suffix ``_reverse`` for the backward direction): ``weight_ih_l{k}`` (3H, H_in),
    ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H), these drawn from U(−1/√H, 1/√H);
    ``layernorm_x_weight_l{k}``, ``layernorm_x_bias_l{k}`` (3H) γ_x, β_x; ``layernorm_h_weight_l{k}``,
    ``layernorm_h_bias_l{k}`` (3H) γ_h, β_h; γ = 1 and β = 0 initially.

    ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H), h_n (D·L, B, H)); ``backward(d_output,
    d_h_n=None)`` → (δx, δh0).
    """

    cell_class = LayerNormGRUStep
    catalog = CellEntry("lngru")

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 stateful=False, dtype=np.float32, rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state)
