"""Elementwise activations and softmax. Derivatives are expressed from the activation y itself, so backward
needs only the cached output (as in the lecture derivations):

* sigmoid:  y = σ(a) = 1 / (1 + e^{−a}),   dy/da = y (1 − y)
* tanh:     y = tanh(a),                   dy/da = 1 − y²
* relu:     y = max(a, 0),                 dy/da = [y > 0]
* softmax:  y_k = e^{a_k} / Σ_j e^{a_j},   δa = y ⊙ (δy − Σ_k δy_k y_k)
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .module import Module, check_floating


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically safe logistic function, σ(a) = (1 + tanh(a/2)) / 2 (no overflow for large |a|)."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def log_softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class _Activation(Module):
    """An elementwise map whose backward needs only its output y (saved per call)."""

    def activate(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_gradient(self, dy: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        """y = f(x) in x's own dtype (any real floating array; no parameters, so nothing to convert to)."""
        y = self.activate(check_floating(x, f"{type(self).__name__} input"))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        """δx in the input's dtype. Like the forward, it passes NaN and Inf on (no parameters to protect; the
        trainer's non-finite checks see them)."""
        (y,) = self.saved_for_backward()
        name = f"{type(self).__name__}: gradient of the output"
        if check_floating(dy, name).shape != y.shape:
            raise ShapeError(f"{name} must have shape {y.shape}, got {dy.shape}")
        return self.input_gradient(dy.astype(y.dtype, copy=False), y)


class Sigmoid(_Activation):
    """y = σ(x);  δx = δy ⊙ y ⊙ (1 − y)."""

    def activate(self, x):
        return sigmoid(x)

    def input_gradient(self, dy, y):
        return dy * y * (1.0 - y)


class Tanh(_Activation):
    """y = tanh(x);  δx = δy ⊙ (1 − y²)."""

    def activate(self, x):
        return np.tanh(x)

    def input_gradient(self, dy, y):
        return dy * (1.0 - y * y)


class ReLU(_Activation):
    """y = max(x, 0);  δx = δy ⊙ [y > 0]."""

    def activate(self, x):
        return np.maximum(x, 0)

    def input_gradient(self, dy, y):
        return dy * (y > 0)


class Softmax(_Activation):
    """y = softmax(x) along ``axis``;  δx = y ⊙ (δy − Σ_k δy_k y_k)."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def activate(self, x):
        return softmax(x, self.axis)

    def input_gradient(self, dy, y):
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
