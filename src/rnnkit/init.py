"""Initializers. Each fills an array (or a `Parameter`'s data) in place and returns it.

fan_in / fan_out of a weight of shape (out, in) are ``in`` and ``out``, as in PyTorch.

* ``default_uniform``: U(-1/sqrt(H), 1/sqrt(H)) — PyTorch's init for every RNN/LSTM/GRU weight and bias.
* ``xavier_uniform``: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio 2010).
* ``xavier_normal``: N(0, s²), s = gain * sqrt(2 / (fan_in + fan_out)).
* ``he_uniform`` / ``he_normal``: bound sqrt(6 / fan_in) / std sqrt(2 / fan_in)  (He et al. 2015, for ReLU).
* ``orthogonal``: Q of the QR decomposition of a Gaussian matrix, signs fixed so Q is uniformly distributed.
* ``identity``: gain * I (Le et al. 2015, "IRNN": ReLU RNN with identity recurrent weights).
* ``constant``: every entry equals ``value``.

For fused gate matrices of shape (G·H, H) use `per_gate` to apply an initializer to each (H, H) block.
"""

from __future__ import annotations

import math

import numpy as np

from .module import Parameter, as_rng


def _array(p) -> np.ndarray:
    return p.data if isinstance(p, Parameter) else p


def _fans(a: np.ndarray) -> tuple[int, int]:
    if a.ndim < 2:
        raise ValueError(f"fan-based initializers need a 2-D weight, got shape {a.shape}")
    return a.shape[1], a.shape[0]


def default_uniform(p, hidden_size: int, rng=None):
    a = _array(p)
    bound = 1.0 / math.sqrt(hidden_size)
    a[...] = as_rng(rng).uniform(-bound, bound, size=a.shape)
    return p


def uniform(p, low: float, high: float, rng=None):
    a = _array(p)
    a[...] = as_rng(rng).uniform(low, high, size=a.shape)
    return p


def xavier_uniform(p, gain: float = 1.0, rng=None):
    a = _array(p)
    fan_in, fan_out = _fans(a)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    a[...] = as_rng(rng).uniform(-bound, bound, size=a.shape)
    return p


def xavier_normal(p, gain: float = 1.0, rng=None):
    a = _array(p)
    fan_in, fan_out = _fans(a)
    a[...] = as_rng(rng).normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), size=a.shape)
    return p


def he_uniform(p, rng=None):
    a = _array(p)
    bound = math.sqrt(6.0 / _fans(a)[0])
    a[...] = as_rng(rng).uniform(-bound, bound, size=a.shape)
    return p


def he_normal(p, rng=None):
    a = _array(p)
    a[...] = as_rng(rng).normal(0.0, math.sqrt(2.0 / _fans(a)[0]), size=a.shape)
    return p


def orthogonal(p, gain: float = 1.0, rng=None):
    a = _array(p)
    rows, cols = a.shape[0], int(np.prod(a.shape[1:]))
    g = as_rng(rng).normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))  # make the distribution uniform (Mezzadri 2007)
    if rows < cols:
        q = q.T
    a[...] = gain * q.reshape(a.shape)
    return p


def identity(p, gain: float = 1.0):
    a = _array(p)
    if a.ndim != 2:
        raise ValueError(f"identity init needs a 2-D weight, got shape {a.shape}")
    a[...] = gain * np.eye(*a.shape)
    return p


def constant(p, value: float):
    _array(p)[...] = value
    return p


def per_gate(p, num_gates: int, init, **kwargs):
    """Apply ``init`` separately to each of the ``num_gates`` row blocks of a fused gate weight."""
    a = _array(p)
    for block in np.split(a, num_gates, axis=0):
        init(block, **kwargs)
    return p

