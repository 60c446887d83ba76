"""`Highway`: a highway layer (Srivastava et al. 2015), applied to the last axis (per time step on sequences)."""

from __future__ import annotations

import math

import numpy as np

from .activations import sigmoid
from .errors import ShapeError
from .module import (
    DEFAULT_DTYPE,
    MAX_COUNT,
    Module,
    Parameter,
    as_rng,
    check_choice,
    check_dtype,
    check_float,
    check_float_array,
    check_float_grad,
    check_int,
    check_positive_int,
    in_dtype_of,
)

ACTIVATIONS = ("tanh", "relu", "identity")  # identity: the lecture's linear ŷ = xW + b


class Highway(Module):
    r"""y = H(x) ⊙ T(x) + x ⊙ (1 − T(x)),  H(x) = φ(x W_Hᵀ + b_H),  T(x) = σ(x W_Tᵀ + b_T).

    φ = ``activation``: tanh (default), relu, or identity — the lecture's linear form
    y = (x W_Hᵀ + b_H) ⊙ T(x) + x ⊙ (1 − T(x)).

    The two affine maps are fused into ``weight`` (2S, S) = [W_H; W_T] and ``bias`` (2S,) = [b_H; b_T]; b_T starts
    at ``gate_bias`` (negative: the layer starts close to the identity, which is what lets deep stacks train).
    ``num_layers`` > 1 stacks layers (``weight_l{k}``, ``bias_l{k}``). x has shape (..., S).

    Backward, with y = x + T ⊙ (H − x):

        δH = δy ⊙ T,   δT = δy ⊙ (H − x),   δa_H = δH ⊙ φ'(H),   δa_T = δT ⊙ T (1 − T)
        δx = δy ⊙ (1 − T) + [δa_H, δa_T] W,   δW += [δa_H, δa_T]ᵀ x,   δb += Σ [δa_H, δa_T]
    """

    def __init__(self, size: int, activation: str = "tanh", gate_bias: float = -2.0, num_layers: int = 1,
                 dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        size, num_layers = check_positive_int("size", size), check_int("num_layers", num_layers, 1, MAX_COUNT)
        gate_bias = check_float("gate_bias", gate_bias)
        dt, rng = check_dtype(dtype), as_rng(rng)
        self.size, self.activation, self.num_layers = size, activation, num_layers
        bound = 1.0 / math.sqrt(size)
        self.layers = []
        for k in range(num_layers):
            w = Parameter(rng.uniform(-bound, bound, (2 * size, size)).astype(dt))
            b = Parameter(np.concatenate([rng.uniform(-bound, bound, size), np.full(size, gate_bias)]).astype(dt))
            suffix = "" if num_layers == 1 else f"_l{k}"
            setattr(self, "weight" + suffix, w)
            setattr(self, "bias" + suffix, b)
            self.layers.append((w, b))

    def forward(self, x: np.ndarray) -> np.ndarray:
        given = getattr(x, "dtype", None)
        x = check_float_array(x, "Highway input", self.dtype, (1, 2, 3, 4))
        if x.shape[-1] != self.size:
            raise ShapeError(f"Highway input must have {self.size} features in its last axis, got shape {x.shape}")
        caches, s = [], self.size
        for w, b in self.layers:
            a = x @ w.data.T
            a += b.data
            h, t = a[..., :s], a[..., s:]
            if self.activation == "tanh":
                np.tanh(h, out=h)
            elif self.activation == "relu":
                np.maximum(h, 0, out=h)
            sigmoid(t, out=t)
            caches.append((x, a))
            x = x + t * (h - x)
        self.save_for_backward(caches, given)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (caches, given), s = self.saved_for_backward(), self.size
        dy = check_float_grad(dy, "Highway: gradient of the output", self.dtype, caches[-1][0].shape)
        for (w, b), (x, a) in zip(reversed(self.layers), reversed(caches)):
            h, t = a[..., :s], a[..., s:]
            da = np.empty_like(a)
            da_h, da_t = da[..., :s], da[..., s:]
            np.multiply(dy, t, out=da_h)
            if self.activation != "identity":  # φ' = 1 − H² (tanh), [H > 0] (relu), 1 (identity)
                da_h *= (1.0 - h * h) if self.activation == "tanh" else (h > 0)
            np.multiply(dy, h - x, out=da_t)
            da_t *= t * (1.0 - t)
            da2 = da.reshape(-1, 2 * s)
            w.grad += da2.T @ x.reshape(-1, s)
            b.grad += da2.sum(axis=0)
            dy = dy * (1.0 - t) + da @ w.data
        return in_dtype_of(dy, given)

    def extra_repr(self) -> str:
        return f"{self.size}, activation={self.activation!r}, num_layers={self.num_layers}"
