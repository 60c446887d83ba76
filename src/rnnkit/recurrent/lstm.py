"""Long short-term memory: `LSTMStep` math and the `LSTM` layer, identical to ``torch.nn.LSTM`` by default."""

from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid
from ..errors import ConfigError
from ..module import Parameter, as_rng, check_bool, check_float, check_int
from .catalog import CellEntry
from .cell import dsigmoid, dtanh, for_backward, per_step, transposed
from .gated import GatedCell
from .layer import RecurrentLayer


class LSTMStep(GatedCell):
    r"""One LSTM step; gates fused in PyTorch's order i, f, g, o (rows of ``weight_ih``/``weight_hh``).

    Forward (x W_ihᵀ + b_ih + b_hh is the runner's projection ``xp``; ⊙ elementwise):

        a = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh          split into a_i, a_f, a_g, a_o
        (peephole)  a_i += w_ci ⊙ c_{t-1},  a_f += w_cf ⊙ c_{t-1}
        i = σ(a_i),  f = σ(a_f),  g = tanh(a_g)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        (peephole)  a_o += w_co ⊙ c_t
        o = σ(a_o)
        m_t = o ⊙ tanh(c_t)
        h_t = m_t W_hrᵀ   with ``proj_size`` P > 0 (h has P units), else h_t = m_t

    Backward, given δh_t and δc_t (from the output at t and from step t+1):

        δm_t = δh_t W_hr   (or δh_t)                       δW_hr += Σ_t δh_tᵀ m_t
        δa_o = δm_t ⊙ tanh(c_t) ⊙ o (1 − o)
        δc   = δc_t + δm_t ⊙ o ⊙ (1 − tanh²(c_t))  (+ δa_o ⊙ w_co)
        δa_i = δc ⊙ g ⊙ i (1 − i),   δa_f = δc ⊙ c_{t-1} ⊙ f (1 − f),   δa_g = δc ⊙ i ⊙ (1 − g²)
        δc_{t-1} = δc ⊙ f  (+ δa_i ⊙ w_ci + δa_f ⊙ w_cf)
        δh_{t-1} = δa W_hh,   δa = [δa_i, δa_f, δa_g, δa_o]
        after the loop: δW_ih += Σ δaᵀ x,  δW_hh += Σ δaᵀ h_{t-1},  δb = Σ δa,
                        δw_ci += Σ δa_i ⊙ c_{t-1},  δw_cf += Σ δa_f ⊙ c_{t-1},  δw_co += Σ δa_o ⊙ c_t

    Workspace: ``gates`` (T, B, 4H) the activated [i, f, g, o] (in the whole-sequence loop: the projection's array,
    activated in place); ``tanh_c`` (T, B, H) (in the whole-sequence loop (B, H), one step's: its backward takes
    tanh(c_t) again); ``product`` (B, 4H) one step's h_{t−1} W_hhᵀ (whole-sequence loop only); ``scratch`` (3, B, H);
    ``w_hh_t``; ``peepholes`` (w_ci, w_cf, w_co) or empty arrays; with projection also ``m`` (T, B, H), ``dh``
    (T, B, P) (written by the backward) and ``w_hr_t``.
    """

    num_gates = 4
    state_names = ("h", "c")
    gate_names = ("i", "f", "g", "o")
    supports_recurrent_masks = True

    def __init__(self, input_size, hidden_size, bias=True, proj_size=0, peephole=False, forget_bias=None,
                 dtype=np.float32, rng=None):
        proj_size = check_int(f"proj_size (below hidden_size={hidden_size})", proj_size, 0, max(hidden_size - 1, 0))
        peephole = check_bool("peephole", peephole)
        forget_bias = None if forget_bias is None else check_float("forget_bias", forget_bias)
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=bias, recurrent_size=proj_size or hidden_size, dtype=dtype,
                         rng=rng)
        self.proj_size, self.peephole = proj_size, peephole
        bound = 1.0 / math.sqrt(hidden_size)
        if peephole:
            self.weight_ci, self.weight_cf, self.weight_co = (
                Parameter(rng.uniform(-bound, bound, hidden_size).astype(dtype)) for _ in range(3))
        if proj_size:
            self.weight_hr = Parameter(rng.uniform(-bound, bound, (proj_size, hidden_size)).astype(dtype))
        if forget_bias is not None:
            if not bias:
                raise ConfigError("forget_bias needs bias=True")
            f = slice(hidden_size, 2 * hidden_size)
            self.bias_ih.data[f] = forget_bias
            self.bias_hh.data[f] = 0.0

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, proj_size=0, peephole=False, **options):
        g, r = 4 * hidden_size, proj_size or hidden_size
        return (g * (input_size + r) + (2 * g if bias else 0) + (3 * hidden_size if peephole else 0)
                + proj_size * hidden_size)

    @classmethod
    def output_width(cls, hidden_size, proj_size=0, **options):
        return proj_size or hidden_size

    @property
    def state_sizes(self):
        return (self.recurrent_size, self.hidden_size)

    def allocate(self, steps, batch, ragged=False):
        ws = super().allocate(steps, batch, ragged)
        h, dt = self.hidden_size, self.dtype
        # the whole-sequence loop's gate history is the projection itself (`sequence_forward`), each step's product
        # goes into one (B, 4H) buffer, and its backward takes tanh(c_t) again: it keeps one step of tanh(c_t)
        whole = self.runs_whole_sequence(batch)
        ws.gates = None if whole else per_step(steps, batch, 4 * h, dt, ragged)
        ws.product = np.empty((batch, 4 * h), dt) if whole else None
        ws.tanh_c = np.empty((batch, h), dt) if whole else per_step(steps, batch, h, dt, ragged)
        ws.scratch = np.empty((3, batch, h), dt)  # no temporaries in the loop
        ws.peepholes = ((self.weight_ci.data, self.weight_cf.data, self.weight_co.data) if self.peephole
                        else (np.empty(0, dt),) * 3)
        if self.proj_size:
            ws.m = per_step(steps, batch, h, dt, ragged)
            ws.dh = for_backward((steps, batch, self.proj_size), dt, ragged)
            ws.w_hr_t = transposed(self.weight_hr.data)
        return ws

    whole_sequence = True
    forward_only = ("w_hh_t", "w_hh_loop", "w_hr_t", "product")
    grads_over_gates = True  # the backward step reads i, f, g, o of a unit, then writes its δa over them
    team_units = ("forward", "backward")  # a unit's gates need only its columns of h_{t−1} W_hhᵀ
    team_blocks = 4  # i, f, g, o
    batch_halves = ("inference", "training")

    def team_parts(self, batch, loop):
        return 1 if self.proj_size else super().team_parts(batch, loop)  # h_t = m_t W_hrᵀ needs all of m_t

    def sequence_forward(self, ws, xp, states, counts, reverse, zoneout, ahead=None):
        """The compiled loop writes the gates over the projection ``xp`` (a_t = xp_t + h_{t−1} W_hhᵀ, activated
        where xp_t was), so ``xp`` becomes the call's gate history (`allocate` makes no ``ws.gates`` for it: one
        (T, B, 4H) array less in memory) — unless the workspace holds a gate history of its own, as a Mogrifier's
        does (its ``xp`` is x itself)."""
        if ws.gates is None:
            ws.gates = xp
        super().sequence_forward(ws, xp, states, counts, reverse, zoneout, ahead)

    def compiled_loop(self, ws):
        from ..kernels import lstm as fused  # numba is loaded only with compiled kernels active
        from ..kernels.blas import loop_weight

        projected, dt = bool(self.proj_size), self.dtype
        return fused.lstm_sequence_forward, (self.recurrent_loop_weight(ws), *ws.peepholes, self.peephole, ws.product,
                                             ws.tanh_c, ws.m if projected else np.empty((0, 0, 0), dt),
                                             loop_weight(ws.w_hr_t if projected else np.empty((0, 0), dt)),
                                             projected, *self.loop_mask(ws), self.recurrent_history(ws))

    def recurrent_history(self, ws) -> np.ndarray:
        """What the compiled step's recurrent product reads in place of h_{t−1} (T, B, P): none, (0, 0, 0) — the
        Mogrifier's rounds give one."""
        return np.empty((0, 0, 0), self.dtype)

    def compiled_loop_backward(self, ws):
        from ..kernels import lstm as fused
        from ..kernels.blas import loop_weight

        projected, dt = bool(self.proj_size), self.dtype
        return fused.lstm_sequence_backward, (self.backward_loop_weight(ws), *ws.peepholes, self.peephole, ws.gates,
                                              ws.dh if projected else np.empty((0, 0, 0), dt),
                                              loop_weight(self.weight_hr.data if projected else np.empty((0, 0), dt)),
                                              projected, ws.scratch[2], self.loop_mask(ws)[0])

    def step(self, ws, t, xp, prev, new):
        (h_prev, c_prev), (h_new, c_new) = prev, new
        n = xp.shape[0]
        gates, tanh_c = ws.gates[t, :n], ws.tanh_c[t, :n]
        out = ws.m[t, :n] if self.proj_size else h_new  # o ⊙ tanh(c_t): m_t, or h_t itself
        np.matmul(self.recurrent_input(ws, h_prev), ws.w_hh_t, out=gates)
        if ws.kernels is not None:
            ws.kernels.lstm_forward(gates, xp, c_prev, *ws.peepholes, self.peephole, c_new, tanh_c, out)
        else:
            self._gates_forward(gates, xp, c_prev, c_new, tanh_c, out, ws.scratch[0, :n])
        if self.proj_size:
            np.matmul(out, ws.w_hr_t, out=h_new)  # h_t = m_t W_hrᵀ

    def _gates_forward(self, gates, xp, c_prev, c_new, tanh_c, out, tmp):
        """The pointwise forward in NumPy (`rnnkit.kernels.lstm.lstm_forward` fuses it)."""
        hs = self.hidden_size
        gates += xp
        i, f, g, o = gates[:, :hs], gates[:, hs:2 * hs], gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        if self.peephole:
            i += np.multiply(c_prev, self.weight_ci.data, out=tmp)
            f += np.multiply(c_prev, self.weight_cf.data, out=tmp)
        sigmoid(gates[:, :2 * hs], out=gates[:, :2 * hs])
        np.tanh(g, out=g)
        np.multiply(f, c_prev, out=c_new)
        c_new += np.multiply(i, g, out=tmp)
        if self.peephole:
            o += np.multiply(c_new, self.weight_co.data, out=tmp)
        sigmoid(o, out=o)
        np.tanh(c_new, out=tanh_c)
        np.multiply(o, tanh_c, out=out)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        dh, dc = dstate
        n = dxp.shape[0]
        # after a whole-sequence forward (then stepped back here to record ‖∂L/∂h_t‖) no tanh(c_t) history is kept:
        # the kernel takes the tanh of c_t again, as the compiled loop does
        from_c = ws.tanh_c.ndim == 2
        gates, tanh_c = ws.gates[t, :n], new[1] if from_c else ws.tanh_c[t, :n]
        if self.proj_size:  # δm = δh W_hr
            ws.dh[t, :n] = dh
            dm = np.matmul(dh, self.weight_hr.data, out=ws.scratch[2, :n])
        else:
            dm = dh
        if ws.kernels is not None:
            ws.kernels.lstm_backward(dm, dc, gates, tanh_c, prev[1], *ws.peepholes, self.peephole, dxp, from_c)
        else:
            self._gates_backward(dm, dc, gates, tanh_c, prev[1], dxp, ws.scratch[0, :n], ws.scratch[1, :n])
        self.through_recurrent_mask(ws, np.matmul(dxp, ws.w_hh, out=dh))  # δh_{t-1} = δa W_hh (⊙ m_h)

    def _gates_backward(self, dm, dc, gates, tanh_c, c_prev, dxp, tmp, dm_o):
        """The pointwise backward in NumPy (`rnnkit.kernels.lstm.lstm_backward` fuses it): δa into ``dxp``,
        δc_t → δc_{t-1} in ``dc``."""
        hs = self.hidden_size
        i, f, g, o = gates[:, :hs], gates[:, hs:2 * hs], gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        da_i, da_f, da_g, da_o = dxp[:, :hs], dxp[:, hs:2 * hs], dxp[:, 2 * hs:3 * hs], dxp[:, 3 * hs:]
        # δa_o = δm ⊙ tanh(c) ⊙ o(1 − o)
        np.multiply(dm, o, out=dm_o)
        np.multiply(dm_o, tanh_c, out=da_o)
        da_o *= np.subtract(1.0, o, out=tmp)  # δm ⊙ o already holds one factor of σ' = o(1 − o)
        # δc += δm ⊙ o ⊙ (1 − tanh²(c))
        dtanh(tanh_c, out=tmp)
        tmp *= dm_o
        dc += tmp
        if self.peephole:
            dc += np.multiply(da_o, self.weight_co.data, out=tmp)
        # δa_i = δc ⊙ g ⊙ i(1 − i),  δa_f = δc ⊙ c_{t-1} ⊙ f(1 − f),  δa_g = δc ⊙ i ⊙ (1 − g²)
        np.multiply(dc, g, out=da_i)
        da_i *= dsigmoid(i, out=tmp)
        np.multiply(dc, c_prev, out=da_f)
        da_f *= dsigmoid(f, out=tmp)
        dtanh(g, out=tmp)
        tmp *= i
        np.multiply(dc, tmp, out=da_g)
        # δc_{t-1} = δc ⊙ f (+ δa_i ⊙ w_ci + δa_f ⊙ w_cf)
        dc *= f
        if self.peephole:
            dc += np.multiply(da_i, self.weight_ci.data, out=tmp)
            dc += np.multiply(da_f, self.weight_cf.data, out=tmp)

    def add_extra_grads(self, ws, dxp, prev, new):
        self.add_cell_extra_grads(ws, dxp, prev[1], new[1])

    def add_cell_extra_grads(self, ws, dxp, c_prev, c_new) -> None:
        """δw_ci += Σ δa_i ⊙ c_{t-1},  δw_cf += Σ δa_f ⊙ c_{t-1},  δw_co += Σ δa_o ⊙ c_t,  δW_hr += Σ δh_tᵀ m_t."""
        if self.peephole:
            hs = self.hidden_size
            self.weight_ci.grad += np.einsum("nh,nh->h", dxp[:, :hs], c_prev)
            self.weight_cf.grad += np.einsum("nh,nh->h", dxp[:, hs:2 * hs], c_prev)
            self.weight_co.grad += np.einsum("nh,nh->h", dxp[:, 3 * hs:], c_new)
        if self.proj_size:
            rows = dxp.shape[0]
            self.weight_hr.grad += ws.dh.reshape(rows, -1).T @ ws.m.reshape(rows, -1)


class LSTM(RecurrentLayer):
    r"""Multi-layer LSTM with PyTorch's parameters, gate order (i, f, g, o) and semantics.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False, proj_size=0,
    peephole=False, forget_bias=None, stateful=False, dtype=float32)``

    Parameters per layer k (suffix ``_reverse`` for the backward direction): ``weight_ih_l{k}`` (4H, H_in),
    ``weight_hh_l{k}`` (4H, R), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H); with ``proj_size`` P > 0
    ``weight_hr_l{k}`` (P, H) and R = P, else R = H; with ``peephole=True`` (Gers & Schmidhuber 2000: i and f
    see c_{t-1}, o sees c_t) ``weight_ci_l{k}``, ``weight_cf_l{k}``, ``weight_co_l{k}`` (H). All drawn from
    U(−1/√H, 1/√H); ``forget_bias`` (char-rnn and Keras use 1) sets the forget gate's b_ih and zeroes its b_hh.

    ``forward(x, (h0, c0)=None, lengths=None)`` → (output (B, T, D·R), (h_n (D·L, B, R), c_n (D·L, B, H)));
    ``backward(d_output, (d_h_n, d_c_n)=None)`` → (δx, (δh0, δc0)).

    ``dropout_input``, ``dropout_recurrent`` (variational, one mask per sequence), ``zoneout`` (a rate, or (z_h,
    z_c)) and ``weight_drop`` (on W_hh, one mask per call) regularise the recurrence in training; see
    `RecurrentLayer.regularize` and `rnnkit.recurrent.noise`.
    """

    cell_class = LSTMStep
    catalog = CellEntry("lstm", options=("proj_size", "peephole", "forget_bias", "zoneout_cell"), torch_name="LSTM",
                        variants={"": {}, "peephole": {"peephole": True},
                                  "peephole-proj": {"peephole": True, "proj_size": 3}})

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 proj_size=0, peephole=False, forget_bias=None, stateful=False, dtype=np.float32, rng=None,
                 return_state=True, dropout_input=0.0, dropout_recurrent=0.0, zoneout=0.0, weight_drop=0.0):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng, proj_size=proj_size,
                         peephole=peephole, forget_bias=forget_bias, return_state=return_state)
        self.proj_size, self.peephole = proj_size, peephole
        self.regularize(dropout_input, dropout_recurrent, zoneout, weight_drop)

    def extra_repr(self) -> str:
        extra = f", proj_size={self.proj_size}" if self.proj_size else ""
        return super().extra_repr() + extra + (", peephole=True" if self.peephole else "")
