"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016): `LayerNormLSTMStep` math and the `LayerNormLSTM` layer."""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from ..errors import ConfigError
from ..module import check_float
from .catalog import CellEntry
from .cell import dsigmoid, dtanh, for_backward, per_step
from .layer import RecurrentLayer
from .layernorm import LayerNormCell, layer_norm, layer_norm_backward


class LayerNormLSTMStep(LayerNormCell):
    r"""One layer-normalised LSTM step; gates fused in PyTorch's order i, f, g, o. LN(·; γ, β) normalises each
    row over all its features (4H for the projections, H for the cell), see `rnnkit.recurrent.layernorm`.

    Forward (the first line is the runner's whole-sequence projection ``xp``; s_h, s_c are the 1/σ of the LNs):

        xp = LN(x_t W_ihᵀ; γ_x, β_x) + b                     (outside the loop, for all t at once)
        ĥ, s_h = normalise(h_{t-1} W_hhᵀ)
        a = xp + γ_h ⊙ ĥ + β_h                               split into a_i, a_f, a_g, a_o
        i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        ĉ, s_c = normalise(c_t);   u = γ_c ⊙ ĉ + β_c;   k = tanh(u)
        h_t = o ⊙ k

    Backward, given δh_t and δc_t (from the output at t and from step t+1); LN⁻(δy; γ, v̂, s) is the normalisation's
    backward s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩) with δv̂ = δy ⊙ γ:

        δa_o = δh_t ⊙ k ⊙ o (1 − o)
        δu = δh_t ⊙ o ⊙ (1 − k²)
        δc = δc_t + LN⁻(δu; γ_c, ĉ, s_c)
        δa_i = δc ⊙ g ⊙ i (1 − i),   δa_f = δc ⊙ c_{t-1} ⊙ f (1 − f),   δa_g = δc ⊙ i ⊙ (1 − g²)
        δc_{t-1} = δc ⊙ f
        δP_h = LN⁻(δa; γ_h, ĥ, s_h),   δa = [δa_i, δa_f, δa_g, δa_o]
        δh_{t-1} = δP_h W_hh
        over the rows (after the loop, or behind it on the other core: `row_sums_behind`, `sums_behind`):
                        δγ_c += Σ δu ⊙ ĉ,  δβ_c += Σ δu,  δγ_h += Σ δa ⊙ ĥ,  δβ_h += Σ δa,  δW_hh += Σ δP_hᵀ h_{t-1},
                        δb += Σ δa,  δγ_x += Σ δa ⊙ x̂,  δβ_x += Σ δa,  δP_x = LN⁻(δa; γ_x, x̂, s_x),
                        δW_ih += Σ δP_xᵀ x,  δx = δP_x W_ih

    One bias: b is added once after both normalisations, so PyTorch's second bias b_hh would always receive the
    same gradient as b_ih (b_ih + b_hh is one parameter written twice); the cell keeps ``bias_ih`` (Ba et al.'s b,
    where ``forget_bias`` goes) and has no ``bias_hh``. (β_x and β_h are also shifts of a, as in the paper.)

    Workspace: ``gates`` (T, B, 4H) the activated [i, f, g, o]; ``h_hat`` (T, B, 4H), ``h_inv_std`` (T, B, 1);
    ``c_hat`` (T, B, H), ``c_inv_std`` (T, B, 1); ``tanh_u`` (T, B, H) k; written by the backward: ``du`` (T, B, H)
    δu and ``dp_h`` (T, B, 4H) δP_h, and on the compiled loop δa over ``gates``; ``x_hat``, ``x_inv_std`` (from
    ``project``); ``scratch`` (2, B, H). The compiled whole-sequence loop writes the gates over the projection
    ``xp`` instead (`sequence_forward`: it becomes ``gates``), each step's product into ``product`` (B, 4H), and
    keeps one step of k (``tanh_u`` (B, H)): its backward takes k = tanh(γ_c ⊙ ĉ + β_c) again from ĉ.
    """

    num_gates = 4
    state_names = ("h", "c")
    gate_names = ("i", "f", "g", "o")
    hidden_bias = False

    def __init__(self, input_size, hidden_size, bias=True, forget_bias=None, dtype=np.float32, rng=None):
        forget_bias = None if forget_bias is None else check_float("forget_bias", forget_bias)
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng)
        self.layernorm_c_weight, self.layernorm_c_bias = self.gain_and_shift(hidden_size, dtype)
        if forget_bias is not None:
            if not self.bias:
                raise ConfigError("forget_bias needs bias=True")
            self.bias_ih.data[hidden_size:2 * hidden_size] = forget_bias

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, **options):
        return super().parameter_count(input_size, hidden_size, bias) + 2 * hidden_size

    @property
    def state_sizes(self):
        return (self.hidden_size, self.hidden_size)

    def input_bias(self):
        return self.bias_ih.data if self.bias else None

    def allocate(self, steps, batch, ragged=False):
        ws = super().allocate(steps, batch, ragged)
        h, dt, kept = self.hidden_size, self.dtype, self.history_steps(steps, batch)
        ws.c_hat = per_step(kept, batch, h, dt, ragged)
        ws.c_inv_std = per_step(kept, batch, 1, dt, ragged)
        # one step of k in the compiled whole-sequence loop, whose backward takes it again (the class notes)
        whole = self.runs_whole_sequence(batch)
        ws.tanh_u = np.empty((batch, h), dt) if whole else per_step(kept, batch, h, dt, ragged)
        ws.du = for_backward((steps, batch, h), dt, ragged)
        ws.scratch = np.empty((2, batch, h), dt)
        return ws

    whole_sequence = True
    grads_over_gates = True  # the backward step reads i, f, g, o of a unit, then writes its δa over them
    #: in a team (`rnnkit.kernels.team`) each part computes its columns of h_{t−1} W_hhᵀ, then whole rows of its
    #: share of the batch (a row's normalisation spans all its units); the backward, rows then columns
    team_units = ("forward", "backward")
    #: in inference only: its training calls gain nothing as halves, whose γ and β sums (NumPy, one core) come
    #: after both loops instead of behind the loop on the other core (input 64, H = 256, B = 32, ms, team →
    #: halves: inference 16.2 → 13.9, training 48.0 → 47.9)
    batch_halves = ("inference",)

    def compiled_loop(self, ws):
        from ..kernels import layernorm as fused  # numba is loaded only with compiled kernels active

        return fused.lnlstm_sequence_forward, (
            self.recurrent_loop_weight(ws), self.layernorm_h_weight.data, self.layernorm_h_bias.data,
            self.layernorm_c_weight.data, self.layernorm_c_bias.data, ws.product, ws.h_hat, ws.h_inv_std, ws.c_hat,
            ws.c_inv_std, ws.tanh_u)

    def compiled_loop_backward(self, ws):
        from ..kernels import layernorm as fused

        return fused.lnlstm_sequence_backward, (
            self.backward_loop_weight(ws), self.layernorm_c_weight.data, self.layernorm_c_bias.data,
            self.layernorm_h_weight.data, ws.gates, ws.h_hat, ws.h_inv_std, ws.c_hat, ws.c_inv_std, ws.du, ws.dp_h)

    def step(self, ws, t, xp, prev, new):
        (h_prev, c_prev), (h_new, c_new) = prev, new
        n = xp.shape[0]
        gates, h_hat, h_s = ws.gates[t, :n], ws.h_hat[t, :n], ws.h_inv_std[t, :n]
        c_hat, c_s, k = ws.c_hat[t, :n], ws.c_inv_std[t, :n], ws.tanh_u[t, :n]
        np.matmul(h_prev, ws.w_hh_t, out=gates)  # h_{t-1} W_hhᵀ
        if ws.kernels is not None:
            ws.kernels.lnlstm_forward(gates, xp, self.layernorm_h_weight.data, self.layernorm_h_bias.data,
                                      self.layernorm_c_weight.data, self.layernorm_c_bias.data, c_prev, h_hat,
                                      h_s[:, 0], c_new, c_hat, c_s[:, 0], k, h_new, False)
            return
        hs = self.hidden_size
        # a = xp + γ_h ⊙ ĥ + β_h
        layer_norm(gates, self.layernorm_h_weight.data, self.layernorm_h_bias.data, h_hat, h_s, out=gates)
        gates += xp
        i, f, g, o = gates[:, :hs], gates[:, hs:2 * hs], gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        sigmoid(gates[:, :2 * hs], out=gates[:, :2 * hs])
        np.tanh(g, out=g)
        sigmoid(o, out=o)
        # c_t = f ⊙ c_{t-1} + i ⊙ g
        np.multiply(f, c_prev, out=c_new)
        c_new += np.multiply(i, g, out=ws.scratch[0, :n])
        # k = tanh(γ_c ⊙ ĉ + β_c),  h_t = o ⊙ k
        layer_norm(c_new, self.layernorm_c_weight.data, self.layernorm_c_bias.data, c_hat, c_s, out=k)
        np.tanh(k, out=k)
        np.multiply(o, k, out=h_new)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        dh, dc = dstate
        n = dxp.shape[0]
        gates, h_hat, h_s = ws.gates[t, :n], ws.h_hat[t, :n], ws.h_inv_std[t, :n]
        # after a compiled whole-sequence forward (then stepped back here to record ‖∂L/∂h_t‖) no history of k is
        # kept: the kernel takes it again from ĉ, as the compiled loop does
        from_c = ws.tanh_u.ndim == 2
        c_hat, c_s, k = ws.c_hat[t, :n], ws.c_inv_std[t, :n], ws.tanh_u[:n] if from_c else ws.tanh_u[t, :n]
        du, dp_h = ws.du[t, :n], ws.dp_h[t, :n]
        gamma_c, beta_c = self.layernorm_c_weight.data, self.layernorm_c_bias.data
        if ws.kernels is not None:
            ws.kernels.lnlstm_backward(dh, dc, gates, k, c_hat, c_s[:, 0], gamma_c, beta_c, prev[1], h_hat, h_s[:, 0],
                                       self.layernorm_h_weight.data, dxp, du, dp_h, from_c)
        else:
            self._cell_backward(ws, n, dh, dc, gates, k, c_hat, c_s, prev[1], dxp, du)
            # δP_h = LN⁻(δa; γ_h, ĥ, s_h)
            layer_norm_backward(dxp, self.layernorm_h_weight.data, h_hat, h_s, out=dp_h)
        np.matmul(dp_h, self.weight_hh.data, out=dh)  # δh_{t-1} = δP_h W_hh

    def _cell_backward(self, ws, n, dh, dc, gates, k, c_hat, c_s, c_prev, dxp, du):
        """NumPy: δa into ``dxp``, δu into ``du``, δc_t → δc_{t-1} in ``dc``."""
        hs = self.hidden_size
        tmp, dc_norm = ws.scratch[0, :n], ws.scratch[1, :n]
        i, f, g, o = gates[:, :hs], gates[:, hs:2 * hs], gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        da_i, da_f, da_g, da_o = dxp[:, :hs], dxp[:, hs:2 * hs], dxp[:, 2 * hs:3 * hs], dxp[:, 3 * hs:]
        # δa_o = δh ⊙ k ⊙ o(1 − o)
        np.multiply(dh, k, out=da_o)
        da_o *= dsigmoid(o, out=tmp)
        # δu = δh ⊙ o ⊙ (1 − k²)
        np.multiply(dh, o, out=du)
        du *= dtanh(k, out=tmp)
        # δc = δc_t + LN⁻(δu; γ_c, ĉ, s_c)
        dc += layer_norm_backward(du, self.layernorm_c_weight.data, c_hat, c_s, out=dc_norm)
        # δa_i = δc ⊙ g ⊙ i(1 − i),  δa_f = δc ⊙ c_{t-1} ⊙ f(1 − f),  δa_g = δc ⊙ i ⊙ (1 − g²)
        np.multiply(dc, g, out=da_i)
        da_i *= dsigmoid(i, out=tmp)
        np.multiply(dc, c_prev, out=da_f)
        da_f *= dsigmoid(f, out=tmp)
        np.multiply(dc, i, out=da_g)
        da_g *= dtanh(g, out=tmp)
        # δc_{t-1} = δc ⊙ f
        dc *= f

    def accumulate(self, ws, x, dxp, prev, new, behind=None):
        """δγ_c += Σ δu ⊙ ĉ,  δβ_c += Σ δu,  the recurrent side's sums, δb += Σ δa, then the input side (``behind``:
        `LayerNormCell.sums_behind`, which made the sums over rows: `row_sums_behind`)."""
        rows, hs = dxp.shape[0], self.hidden_size
        if behind is not None and behind.row_sums:
            da_sum = ws.da_sum
        else:
            du = ws.du.reshape(rows, hs)
            self.layernorm_c_weight.grad += np.einsum("nh,nh->h", du, ws.c_hat.reshape(rows, hs))
            self.layernorm_c_bias.grad += du.sum(axis=0)
            da_sum = dxp.sum(axis=0)  # Σ δa: δβ_h, δb and δβ_x alike
        self.add_recurrent_grads(ws, dxp, da_sum, prev[0], behind)
        if self.bias:
            self.bias_ih.grad += da_sum
        return self.add_input_grads(ws, x, dxp, da_sum, behind)


    def row_sums_behind(self, ws, dxp):
        """`LayerNormCell.row_sums_behind`: δγ_x += Σ δa ⊙ X̂, δγ_h += Σ δa ⊙ ĥ, δγ_c += Σ δu ⊙ ĉ, δβ_c += Σ δu
        into the parameters' gradients, and Σ δa — δβ_x, δβ_h and δb alike — into ``ws.da_sum``."""
        from ..kernels.behind import row_product, row_total

        rows, hs = dxp.shape[0], self.hidden_size
        ws.da_sum = np.zeros(dxp.shape[1], dxp.dtype)
        du, c_hat = ws.du.reshape(rows, hs), ws.c_hat.reshape(rows, hs)
        products = (row_product(dxp, ws.x_hat, self.layernorm_x_weight.grad),
                    row_product(dxp, ws.h_hat.reshape(rows, -1), self.layernorm_h_weight.grad),
                    row_product(du, c_hat, self.layernorm_c_weight.grad))
        return products, (row_total(dxp, ws.da_sum), row_total(du, self.layernorm_c_bias.grad))


class LayerNormLSTM(RecurrentLayer):
    r"""Multi-layer layer-normalised LSTM (Ba, Kiros & Hinton 2016), PyTorch's gate order i, f, g, o:

        a = LN(x W_ihᵀ; γ_x, β_x) + LN(h_{t-1} W_hhᵀ; γ_h, β_h) + b,   c_t = f ⊙ c_{t-1} + i ⊙ g,
        h_t = o ⊙ tanh(LN(c_t; γ_c, β_c))

    (equations and backward in `LayerNormLSTMStep`). ``LayerNormLSTM(input_size, hidden_size, num_layers=1,
    bias=True, dropout=0.0, bidirectional=False, forget_bias=None, stateful=False, dtype=float32)``

    Parameters per layer k (suffix ``_reverse`` for the backward direction): ``weight_ih_l{k}`` (4H, H_in),
    ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` (4H) — b, the one bias (see `LayerNormLSTMStep`), these three
    drawn from U(−1/√H, 1/√H); ``layernorm_x_weight_l{k}``, ``layernorm_x_bias_l{k}`` (4H) γ_x, β_x;
    ``layernorm_h_weight_l{k}``, ``layernorm_h_bias_l{k}`` (4H) γ_h, β_h; ``layernorm_c_weight_l{k}``,
    ``layernorm_c_bias_l{k}`` (H) γ_c, β_c; γ = 1 and β = 0 initially. ``forget_bias`` sets b's forget block.

    ``forward(x, (h0, c0)=None, lengths=None)`` → (output (B, T, D·H), (h_n (D·L, B, H), c_n (D·L, B, H)));
    ``backward(d_output, (d_h_n, d_c_n)=None)`` → (δx, (δh0, δc0)).
    """

    cell_class = LayerNormLSTMStep
    catalog = CellEntry("lnlstm", options=("forget_bias",))

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 forget_bias=None, stateful=False, dtype=np.float32, rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         forget_bias=forget_bias, return_state=return_state)
