"""`Elman`: the simple recurrent network of the lecture material, as one module.

    h_t = tanh(h_{t-1} W_hh + x_t W_xh + b_h)          (row vectors; W_xh (I, H), W_hh (H, H))
    y_t = σ(h_t W_hy + b_y)                           (W_hy (H, O))

It is built from `RNN` (one layer, tanh) and `Linear` + `Sigmoid`, so it trains by the same BPTT; the lecture's
matrices are exposed as properties that are *views* of the PyTorch-layout parameters: W_xh = weight_ih_l0ᵀ,
W_hh = weight_hh_l0ᵀ, W_hy = out.weightᵀ. PyTorch keeps two hidden biases; b_h is their sum.
"""

from __future__ import annotations

import numpy as np

from ..activations import Sigmoid
from ..layers import Linear
from ..module import DEFAULT_DTYPE, Module, as_rng
from .rnn import RNN


class Elman(Module):
    """forward(x (B, T, I), h0 (1, B, H) = None, lengths=None) → (y (B, T, O), h_n (1, B, H));
    backward(δy, δh_n=None) → (δx, δh0)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        rng = as_rng(rng)
        self.rnn = RNN(input_size, hidden_size, dtype=dtype, rng=rng)
        self.out = Linear(hidden_size, output_size, dtype=dtype, rng=rng)
        self.act = Sigmoid()

    # The lecture's matrices, as views (writing into them changes the model).
    @property
    def W_xh(self) -> np.ndarray:
        return self.rnn.weight_ih_l0.data.T

    @property
    def W_hh(self) -> np.ndarray:
        return self.rnn.weight_hh_l0.data.T

    @property
    def W_hy(self) -> np.ndarray:
        return self.out.weight.data.T

    @property
    def b_h(self) -> np.ndarray:
        """h's bias (a copy: the sum of PyTorch's bias_ih_l0 and bias_hh_l0)."""
        return self.rnn.bias_ih_l0.data + self.rnn.bias_hh_l0.data

    @b_h.setter
    def b_h(self, value) -> None:
        self.rnn.bias_ih_l0.data[...] = value
        self.rnn.bias_hh_l0.data[...] = 0

    @property
    def b_y(self) -> np.ndarray:
        return self.out.bias.data

    def forward(self, x, h0=None, lengths=None):
        h, h_n = self.rnn.forward(x, h0, lengths=lengths)
        return self.act.forward(self.out.forward(h)), h_n

    def backward(self, dy=None, dh_n=None):
        dh = None if dy is None else self.out.backward(self.act.backward(dy))
        return self.rnn.backward(dh, dh_n)
