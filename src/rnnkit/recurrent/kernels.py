"""Optional compiled kernels (numba) for the pointwise part of the LSTM and GRU steps.

The NumPy code in the cells is the reference: these kernels compute the same equations (see the cells'
docstrings) in one fused pass instead of ~15–25 NumPy calls per step, which is what bounds small problems
(B·H of a few thousand elements), where each NumPy call costs about a microsecond of overhead for very little
arithmetic. For large steps NumPy's SIMD tanh is faster than numba's scalar libm calls, so a kernel is used only
when the step has at most ``max_elements`` = B·H elements (the crossover measured by `rnnkit bench`, see
docs/performance.md). Tests check that both paths agree to 1e-6 and pass gradcheck and torch parity.

Install with ``pip install rnnkit[fast]``; set ``RNNKIT_COMPILED=0`` to disable, or call `configure`.
"""

from __future__ import annotations

import math
import os

try:  # numba is an optional extra
    from numba import njit
except ImportError:  # pragma: no cover - depends on the environment
    njit = None

AVAILABLE = njit is not None
_settings = {"enabled": AVAILABLE and os.environ.get("RNNKIT_COMPILED", "1") != "0", "max_elements": 4096}


def configure(enabled: bool | None = None, max_elements: int | None = None) -> dict:
    """Turn the compiled path on/off and set the size limit; returns the previous settings."""
    previous = dict(_settings)
    if enabled is not None:
        if enabled and not AVAILABLE:
            raise ImportError("the compiled path needs numba: pip install 'rnnkit[fast]'")
        _settings["enabled"] = enabled
    if max_elements is not None:
        _settings["max_elements"] = max_elements
    return previous


def use_compiled(elements: int) -> bool:
    """Whether a step of ``elements`` = rows × hidden units should run the compiled kernel."""
    return _settings["enabled"] and elements <= _settings["max_elements"]


def _sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


def lstm_forward(gates, xp, c_prev, c_new, tanh_c, m):
    """gates (n, 4H) holds h_{t-1} W_hhᵀ on entry and [i, f, g, o] on exit; writes c_t, tanh(c_t), m = o tanh c."""
    n, hs = c_new.shape
    for b in range(n):
        for j in range(hs):
            i = _sigmoid(gates[b, j] + xp[b, j])
            f = _sigmoid(gates[b, hs + j] + xp[b, hs + j])
            g = math.tanh(gates[b, 2 * hs + j] + xp[b, 2 * hs + j])
            o = _sigmoid(gates[b, 3 * hs + j] + xp[b, 3 * hs + j])
            c = f * c_prev[b, j] + i * g
            tc = math.tanh(c)
            gates[b, j], gates[b, hs + j], gates[b, 2 * hs + j], gates[b, 3 * hs + j] = i, f, g, o
            c_new[b, j] = c
            tanh_c[b, j] = tc
            m[b, j] = o * tc


def lstm_backward(gates, tanh_c, c_prev, dm, dc, dxp):
    """From δm and δc_t: writes δa = [δa_i, δa_f, δa_g, δa_o] into dxp and δc_{t-1} into dc."""
    n, hs = dc.shape
    for b in range(n):
        for j in range(hs):
            i, f, g, o = gates[b, j], gates[b, hs + j], gates[b, 2 * hs + j], gates[b, 3 * hs + j]
            tc = tanh_c[b, j]
            dmo = dm[b, j] * o
            dxp[b, 3 * hs + j] = dmo * tc * (1.0 - o)
            dcv = dc[b, j] + dmo * (1.0 - tc * tc)
            dxp[b, j] = dcv * g * i * (1.0 - i)
            dxp[b, hs + j] = dcv * c_prev[b, j] * f * (1.0 - f)
            dxp[b, 2 * hs + j] = dcv * i * (1.0 - g * g)
            dc[b, j] = dcv * f


def gru_forward(gates, xp, b_hn, h_prev, inner, h_new):
    """Reset-after GRU: gates (n, 3H) holds h_{t-1} W_hhᵀ on entry and [r, z, n] on exit; inner = W_hn h + b_hn."""
    n_rows, hs = h_new.shape
    for b in range(n_rows):
        for j in range(hs):
            hn = gates[b, 2 * hs + j] + b_hn[j]
            r = _sigmoid(gates[b, j] + xp[b, j])
            z = _sigmoid(gates[b, hs + j] + xp[b, hs + j])
            nv = math.tanh(xp[b, 2 * hs + j] + r * hn)
            gates[b, j], gates[b, hs + j], gates[b, 2 * hs + j] = r, z, nv
            inner[b, j] = hn
            h_new[b, j] = nv + z * (h_prev[b, j] - nv)


def gru_backward(gates, inner, h_prev, dh, dxp, dq):
    """Reset-after GRU: writes δa into dxp, the recurrent pre-activation gradient δq, and δh ⊙ z into dh."""
    n_rows, hs = dh.shape
    for b in range(n_rows):
        for j in range(hs):
            r, z, nv = gates[b, j], gates[b, hs + j], gates[b, 2 * hs + j]
            d = dh[b, j]
            dan = d * (1.0 - z) * (1.0 - nv * nv)
            daz = d * (h_prev[b, j] - nv) * z * (1.0 - z)
            dar = dan * inner[b, j] * r * (1.0 - r)
            dxp[b, j], dxp[b, hs + j], dxp[b, 2 * hs + j] = dar, daz, dan
            dq[b, j], dq[b, hs + j], dq[b, 2 * hs + j] = dar, daz, dan * r
            dh[b, j] = d * z


if AVAILABLE:
    _sigmoid = njit(cache=True, inline="always")(_sigmoid)
    lstm_forward = njit(cache=True)(lstm_forward)
    lstm_backward = njit(cache=True)(lstm_backward)
    gru_forward = njit(cache=True)(gru_forward)
    gru_backward = njit(cache=True)(gru_backward)
