"""The Elman (vanilla) recurrence: `RNNStep` and the `RNN` layer, identical to ``torch.nn.RNN``."""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from ..module import check_choice
from .catalog import CellEntry
from .cell import dsigmoid, dtanh
from .gated import GatedCell
from .layer import RecurrentLayer

NONLINEARITIES = ("tanh", "relu", "sigmoid")  # sigmoid: the lectures' other hidden activation; indices: the kernels'


class RNNStep(GatedCell):
    r"""One step of the Elman recurrence (PyTorch's ``nn.RNN`` cell).

    Forward, with a_t the pre-activation (x_t W_ihᵀ + b_ih + b_hh is the runner's projection ``xp``):

        a_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
        h_t = φ(a_t),   φ = tanh, relu or sigmoid (the last has no PyTorch counterpart)

    Backward, δh_t = ∂L/∂h_t (from the output at t and from step t+1):

        δa_t     = δh_t ⊙ φ'(a_t),   φ' = 1 − h_t² (tanh), [h_t > 0] (relu) or h_t (1 − h_t) (sigmoid)
        δh_{t-1} = δa_t W_hh
        δW_ih += Σ_t δa_tᵀ x_t,   δW_hh += Σ_t δa_tᵀ h_{t-1},   δb_ih = δb_hh += Σ_t δa_t   (after the loop)

    Workspace: only ``w_hh_t`` = W_hhᵀ; φ' is computed from h_t, which the runner keeps as the state history.
    The compiled kernels fuse all three (φ by its index in ``NONLINEARITIES``).
    """

    num_gates = 1
    supports_recurrent_masks = True

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32, rng=None):
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    whole_sequence = True
    team_units = ("forward", "backward")  # h_t's unit j needs only column j of h_{t−1} W_hhᵀ (`rnnkit.kernels.team`)
    batch_halves = ("inference", "training")

    def compiled_loop(self, ws):
        from ..kernels import rnn as fused  # numba is loaded only with compiled kernels active

        return fused.rnn_sequence_forward, (self.recurrent_loop_weight(ws), self.activation_index,
                                            *self.loop_mask(ws))

    def compiled_loop_backward(self, ws):
        from ..kernels import rnn as fused

        return fused.rnn_sequence_backward, (self.backward_loop_weight(ws), self.activation_index,
                                             self.loop_mask(ws)[0])

    @property
    def activation_index(self) -> int:
        """φ as the compiled kernels take it: its index in ``NONLINEARITIES``."""
        return NONLINEARITIES.index(self.nonlinearity)

    def step(self, ws, t, xp, prev, new):
        (h,) = new
        np.matmul(self.recurrent_input(ws, prev[0]), ws.w_hh_t, out=h)
        if ws.kernels is not None:
            return ws.kernels.rnn_forward(h, xp, self.activation_index)
        h += xp
        if self.nonlinearity == "tanh":
            np.tanh(h, out=h)
        elif self.nonlinearity == "sigmoid":
            sigmoid(h, out=h)
        else:
            np.maximum(h, 0, out=h)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dh,) = dstate
        (h,) = new
        if ws.kernels is not None:
            ws.kernels.rnn_backward(dh, h, self.activation_index, dxp)
        elif self.nonlinearity == "tanh":  # δa = δh ⊙ (1 − h²)
            dtanh(h, out=dxp)
            dxp *= dh
        elif self.nonlinearity == "sigmoid":  # δa = δh ⊙ h (1 − h)
            dsigmoid(h, out=dxp)
            dxp *= dh
        else:
            np.multiply(dh, h > 0, out=dxp)
        self.through_recurrent_mask(ws, np.matmul(dxp, ws.w_hh, out=dh))


class RNN(RecurrentLayer):
    r"""Multi-layer Elman RNN with PyTorch's parameters and semantics.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, dropout=0.0,
    bidirectional=False, stateful=False, dtype=float32)``

    For each layer and direction:  h_t = φ(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), φ = tanh, relu or sigmoid
    (sigmoid, which two lectures name, has no ``torch.nn.RNN`` counterpart).

    Parameters (per layer k, direction suffix '' or '_reverse'): ``weight_ih_l{k}`` (H, H_in or D·H),
    ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` (H), ``bias_hh_l{k}`` (H), all ~ U(−1/√H, 1/√H).

    ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H), h_n (D·L, B, H));
    ``backward(d_output, d_h_n=None)`` → (δx, δh0). With ``stateful=True`` the final state becomes the next
    call's initial state (truncated BPTT: gradients stop at the chunk boundary); ``reset_state()`` clears it.

    Equivalent loop (one layer, one direction)::

        for t in range(T):
            h = np.tanh(x[:, t] @ weight_ih_l0.T + bias_ih_l0 + h @ weight_hh_l0.T + bias_hh_l0)
            output[:, t] = h
    """

    cell_class = RNNStep
    catalog = CellEntry("rnn", options=("nonlinearity",), torch_name="RNN",
                        variants={"tanh": {}, "relu": {"nonlinearity": "relu"}})

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, dropout=0.0,
                 bidirectional=False, stateful=False, dtype=np.float32, rng=None, return_state=True,
                 dropout_input=0.0, dropout_recurrent=0.0, zoneout=0.0, weight_drop=0.0):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state,
                         nonlinearity=nonlinearity)
        self.nonlinearity = nonlinearity
        self.regularize(dropout_input, dropout_recurrent, zoneout, weight_drop)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")
