"""Elementwise activations and softmax. Derivatives are expressed from the activation y itself, so backward
needs only the cached output (as in the lecture derivations):

* sigmoid:  y = σ(a) = 1 / (1 + e^{−a}),   dy/da = y (1 − y)
* tanh:     y = tanh(a),                   dy/da = 1 − y²
* relu:     y = max(a, 0),                 dy/da = [y > 0]
* softmax:  y_k = e^{a_k} / Σ_j e^{a_j},   δa = y ⊙ (δy − Σ_k δy_k y_k)
"""

from __future__ import annotations

import numpy as np

from .module import Module


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
    def __init__(self):
        super().__init__()
        self._y = None


class Sigmoid(_Activation):
    """y = σ(x);  δx = δy ⊙ y ⊙ (1 − y)."""

    def forward(self, x):
        self._y = sigmoid(x)
        return self._y

    def backward(self, dy):
        y = self._y
        return dy * y * (1.0 - y)


class Tanh(_Activation):
    """y = tanh(x);  δx = δy ⊙ (1 − y²)."""

    def forward(self, x):
        self._y = np.tanh(x)
        return self._y

    def backward(self, dy):
        y = self._y
        return dy * (1.0 - y * y)


class ReLU(_Activation):
    """y = max(x, 0);  δx = δy ⊙ [y > 0]."""

    def forward(self, x):
        self._y = np.maximum(x, 0)
        return self._y

    def backward(self, dy):
        return dy * (self._y > 0)


class Softmax(_Activation):
    """y = softmax(x) along ``axis``;  δx = y ⊙ (δy − Σ_k δy_k y_k)."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        self._y = softmax(x, self.axis)
        return self._y

    def backward(self, dy):
        y = self._y
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
