"""The Jordan network (Jordan 1986): the previous step's *output* is fed back into the hidden layer."""

from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid, softmax
from ..module import Parameter, as_rng, check_choice, check_float, check_positive_int
from .catalog import CellEntry
from .cell import for_backward, per_step, transposed
from .gated import GatedCell
from .layer import RecurrentLayer

OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "identity", "softmax")  # their indices are the kernels' (kernels.jordan)


class JordanStep(GatedCell):
    r"""One step of a Jordan network with hidden size H and O output units.

    State units s collect the fed-back outputs, optionally with a self-loop of fixed strength μ
    (``state_decay``; μ = 0 feeds back exactly y_{t-1}):

        s_t = μ s_{t-1} + y_{t-1}
        h_t = tanh(x_t W_ihᵀ + b_ih + s_t W_hhᵀ + b_hh)          W_hh (H, O): state → hidden
        y_t = ψ(h_t W_hyᵀ + b_hy)                                ψ = sigmoid (default), tanh, identity or softmax

    Backward, given δy_t (from the output at t and from s_{t+1}) and δs_t (from s_{t+1} = μ s_t + y_t):

        δa_y = δy_t ⊙ ψ'(y_t)                  (y(1 − y), 1 − y², or 1)
               softmax: δa_y = y_t ⊙ (δy_t − Σ_j δy_tj y_tj)   (the Jacobian couples the units)
        δa_h = (δa_y W_hy) ⊙ (1 − h_t²)
        δs   = δs_t + δa_h W_hh
        δy_{t-1} = δs,   δs_{t-1} = μ δs
        after the loop: δW_hy += Σ δa_yᵀ h,  δb_hy += Σ δa_y,  δW_ih += Σ δa_hᵀ x,  δW_hh += Σ δa_hᵀ s_t,
                        δb_ih = δb_hh += Σ δa_h

    The state tuple is (y, s): the output comes first, as for every cell. Workspace: ``hidden`` (T, B, H) h_t,
    ``da_y`` (T, B, O) written by the backward, ``w_hh_t`` (`GatedCell.transpose_recurrent`) and ``w_hy_t`` (a
    contiguous transpose), ``decay`` μ, ``b_hy`` (zeros without bias), ``activation`` ψ's index in
    ``OUTPUT_ACTIVATIONS``, ``kernels``. With compiled kernels the whole time loop is one compiled call
    (`rnnkit.kernels.jordan`).
    """

    state_names = ("y", "s")
    forward_only = ("w_hh_t", "w_hh_loop", "w_hy_t")

    def __init__(self, input_size, hidden_size, bias=True, output_size=1, output_activation="sigmoid",
                 state_decay=0.0, dtype=np.float32, rng=None):
        check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        state_decay = check_float("state_decay", state_decay, 0.0, 1.0, high_open=True)
        output_size = check_positive_int("output_size", output_size)
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=bias, recurrent_size=output_size, dtype=dtype, rng=rng)
        self.output_activation, self.state_decay = output_activation, state_decay
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_hy = Parameter(rng.uniform(-bound, bound, (output_size, hidden_size)).astype(dtype))
        self.bias_hy = Parameter(rng.uniform(-bound, bound, output_size).astype(dtype)) if bias else None

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, output_size=1, **options):
        return hidden_size * (input_size + 2 * output_size) + ((2 * hidden_size + output_size) if bias else 0)

    @classmethod
    def output_width(cls, hidden_size, output_size=1, **options):
        return output_size

    @property
    def state_sizes(self):
        return (self.recurrent_size, self.recurrent_size)

    def allocate(self, steps, batch, ragged=False):
        ws = super().allocate(steps, batch, ragged)
        ws.hidden = per_step(steps, batch, self.hidden_size, self.dtype, ragged)
        ws.da_y = for_backward((steps, batch, self.recurrent_size), self.dtype, ragged)
        ws.w_hy_t = transposed(self.weight_hy.data)
        ws.decay = self.dtype.type(self.state_decay)  # μ in the arrays' precision
        ws.b_hy = self.bias_hy.data if self.bias else np.zeros(self.recurrent_size, self.dtype)
        ws.activation = OUTPUT_ACTIVATIONS.index(self.output_activation)  # 0 sigmoid, 1 tanh, 2 identity, 3 softmax
        return ws

    # -- the whole loop in one compiled call --------------------------------------------------------------------
    whole_sequence = True

    def loop_work(self, steps, batch):
        return 2 * super().loop_work(steps, batch)  # s_t W_hhᵀ and h_t W_hyᵀ, O · H each

    def compiled_loop(self, ws):
        from ..kernels import jordan as fused  # numba is loaded only with compiled kernels active
        from ..kernels.blas import loop_weight

        return fused.jordan_sequence_forward, (self.recurrent_loop_weight(ws), loop_weight(ws.w_hy_t), ws.hidden,
                                               ws.decay, ws.b_hy, self.bias, ws.activation)

    def compiled_loop_backward(self, ws):
        from ..kernels import jordan as fused
        from ..kernels.blas import loop_weight

        return fused.jordan_sequence_backward, (loop_weight(self.weight_hy.data), loop_weight(ws.w_hh), ws.hidden,
                                                ws.da_y, ws.decay, ws.activation)

    def step(self, ws, t, xp, prev, new):
        (y_prev, s_prev), (y, s) = prev, new
        h, fused = ws.hidden[t, :xp.shape[0]], ws.kernels
        if fused is not None:
            fused.jordan_state(s_prev, y_prev, ws.decay, s)
        else:  # s_t = μ s_{t-1} + y_{t-1}
            np.multiply(s_prev, ws.decay, out=s)
            s += y_prev
        np.matmul(s, ws.w_hh_t, out=h)
        if fused is not None:
            fused.jordan_hidden(h, xp)
        else:  # h_t = tanh(x_t W_ihᵀ + b_ih + s_t W_hhᵀ + b_hh)
            h += xp
            np.tanh(h, out=h)
        np.matmul(h, ws.w_hy_t, out=y)
        if fused is not None:
            fused.jordan_output(y, ws.b_hy, self.bias, ws.activation)
            return
        if self.bias:  # y_t = ψ(h_t W_hyᵀ + b_hy)
            y += self.bias_hy.data
        if self.output_activation == "sigmoid":
            sigmoid(y, out=y)
        elif self.output_activation == "tanh":
            np.tanh(y, out=y)
        elif self.output_activation == "softmax":
            y[...] = softmax(y)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dy, ds), y = dstate, new[0]
        n, fused = dxp.shape[0], ws.kernels
        h, da_y = ws.hidden[t, :n], ws.da_y[t, :n]
        if fused is not None:
            fused.jordan_output_backward(dy, y, ws.activation, da_y)
        elif self.output_activation == "sigmoid":  # δa_y = δy ⊙ ψ'(y)
            np.multiply(dy, y * (1.0 - y), out=da_y)
        elif self.output_activation == "tanh":
            np.multiply(dy, 1.0 - y * y, out=da_y)
        elif self.output_activation == "softmax":  # δa_y = y ⊙ (δy − Σ δy ⊙ y)
            np.multiply(y, dy - (dy * y).sum(axis=1, keepdims=True), out=da_y)
        else:
            da_y[...] = dy
        np.matmul(da_y, self.weight_hy.data, out=dxp)  # δa_h = (δa_y W_hy) ⊙ (1 − h²)
        if fused is not None:
            fused.jordan_hidden_backward(dxp, h)
        else:
            dxp *= 1.0 - h * h
        ds += dxp @ self.weight_hh.data  # δs = δs_t + δa_h W_hh;  δy_{t-1} = δs;  δs_{t-1} = μ δs
        dy[...] = ds
        ds *= ws.decay

    def accumulate(self, ws, x, dxp, prev, new):
        rows = dxp.shape[0]
        h, da_y = ws.hidden.reshape(rows, -1), ws.da_y.reshape(rows, -1)
        self.weight_hy.grad += da_y.T @ h
        if self.bias:
            self.bias_hy.grad += da_y.sum(axis=0)
        # the recurrent matmul's input is the new state-unit value s_t, not the previous output
        return super().accumulate(ws, x, dxp, (new[1],), new)


class Jordan(RecurrentLayer):
    r"""Jordan network: ``Jordan(input_size, hidden_size, output_size, output_activation='sigmoid',
    state_decay=0.0, bias=True, num_layers=1, bidirectional=False, stateful=False, dtype=float32)``.

    Parameters (layer k): ``weight_ih_l{k}`` (H, H_in), ``weight_hh_l{k}`` (H, O) from the state units,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H), ``weight_hy_l{k}`` (O, H), ``bias_hy_l{k}`` (O); all ~ U(−1/√H, 1/√H).

    ``forward(x, (y0, s0)=None, lengths=None)`` → (outputs y (B, T, D·O), (y_n, s_n)); ``backward(δy, δstate=None)``
    → (δx, (δy0, δs0)). Trained by BPTT through the output feedback.
    """

    cell_class = JordanStep
    catalog = CellEntry("jordan", encoder=False, defaults={"num_layers": 1}, variants={"": {"output_size": 2}})

    def __init__(self, input_size, hidden_size, output_size, output_activation="sigmoid", state_decay=0.0,
                 bias=True, num_layers=1, dropout=0.0, bidirectional=False, stateful=False, dtype=np.float32,
                 rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state,
                         output_size=output_size, output_activation=output_activation, state_decay=state_decay)
        self.output_activation, self.state_decay = output_activation, state_decay
