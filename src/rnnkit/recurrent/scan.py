"""The parallel scan of a diagonal linear recurrence, and `ScanRecurrence`, a runner that uses it.

A cell whose gates depend on the input only (minGRU, minLSTM) updates its state by

    h_t = a_t ⊙ h_{t-1} + b_t                                          (a_t > 0 and b_t from x_t alone)

so every a_t, b_t can be computed for the whole sequence first, and the recurrence solved for all t at once
(Blelloch 1990; Martin & Cundy 2018; Feng et al. 2024, "Were RNNs all we needed?"). With a*_t = Σ_{s≤t} log a_s
and h_{-1} = h_0 the initial state taken as the term s = −1 (a*_{-1} = 0):

    h_t = e^{a*_t} Σ_{s=-1..t} b_s e^{-a*_s}          (b_{-1} = h_0)

computed in log space as in the paper: log h_t = a*_t + logcumsumexp_s(log b_s − a*_s). The paper keeps the
values positive (its log-space minGRU maps h̃ through g(x) = x + ½ (x ≥ 0), σ(x) (x < 0), which changes the
model); here the model is unchanged and the values may have either sign, so the sum is split by sign:

    h_t = e^{a*_t + P_t} − e^{a*_t + N_t},   P_t = logcumsumexp_s(log b⁺_s − a*_s),  N_t the same for b⁻ = max(−b, 0)

Both parts are bounded by the recurrence run with |b|, so nothing overflows (a*_t → −∞ is harmless in log space);
the error is absolute, ~ε·(1 + |a*_t|)·max|h| (the rounding of a*_t + P_t): against the sequential loop in float64,
~1e-15 over tens of steps and ~1e-12 where a*_t reaches −2000 (1500 steps of strong decay).
``np.logaddexp.accumulate`` is the cumulative log-sum-exp: one C loop over time, vectorised over B·H, with no
Python loop over time anywhere. The backward is the same scan run backwards in time (`ScanRecurrence.backward`).
"""

from __future__ import annotations

import numpy as np

from ..module import is_grad_enabled
from .runner import Trace


def linear_scan(log_a: np.ndarray, b: np.ndarray, h0: np.ndarray, reverse: bool = False) -> np.ndarray:
    """h (T, ...) with h_t = a_t ⊙ h_{t-1} + b_t from h_{-1} = h0, or with ``reverse`` h_t = a_t ⊙ h_{t+1} + b_t
    from h_T = h0; ``log_a`` = log a (finite), ``b`` (T, ...), ``h0`` (...). See the module notes. The log-space
    sums run in float64 whatever the inputs' dtype (in float32 their rounding grows with T: ~2e-4 of max|h| at
    T = 1000); the result comes back in ``b``'s dtype."""
    if reverse:
        return linear_scan(log_a[::-1], b[::-1], h0)[::-1]
    steps = log_a.shape[0]
    a_star = np.empty((steps + 1, *h0.shape), np.float64)
    a_star[0] = 0
    np.cumsum(log_a, axis=0, out=a_star[1:], dtype=np.float64)
    values = np.concatenate([h0[None], b]).astype(np.float64, copy=False)
    parts = []
    for sign in (1.0, -1.0):  # positive and negative parts of the values
        with np.errstate(divide="ignore"):
            logs = np.log(np.maximum(sign * values, 0.0))  # log 0 = −inf: a term that adds nothing
        logs -= a_star
        np.logaddexp.accumulate(logs, axis=0, out=logs)
        logs += a_star
        parts.append(np.exp(logs[1:], out=logs[1:]))
    return (parts[0] - parts[1]).astype(b.dtype, copy=False)


class ScanRecurrence:
    """A runner with `rnnkit.recurrent.Recurrence`'s calls, layout and `Trace`, for a cell whose state update is
    h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t from x_t alone (`MinGRUStep`, `MinLSTMStep`): no Python loop over time.

    The cell provides ``coefficients(xp, gates) → (log a, a, b)`` and ``coefficients_backward(gates, a, δa, δb,
    δxp)`` for any leading axes, the same calls its sequential ``step`` uses, so both modes compute one model.

    Ragged batches: at a step past a row's end, a = 1 and b = 0, so the state is carried unchanged (the reverse
    direction carries its initial state until the row starts, as `Recurrence` does); outputs there are zero and
    their gradients exactly zero. Backward, with g_t = ∂L/∂h_t (output and later steps):

        g_t = δy_t + a_{t+1} ⊙ g_{t+1}    (reverse direction: a_{t-1} ⊙ g_{t-1}),   g at the last step += δ(final)
        δa_t = g_t ⊙ h_{t-1},   δb_t = g_t,   δh_0 = a ⊙ g at the first step

    — the same scan with coefficients a shifted by one step, run the other way in time. ``detach_state``
    (Elman's training): g_t = δy_t, plus δ(final) at the step that wrote the final state; δh_0 = 0.

    The workspace (``cell.allocate``) holds ``gates`` and ``decay`` = a_t (1 past a row's end) for all steps, and
    gets ``log_decay`` (T, B, H): log a_t (0 past a row's end). Every call computes all T steps (under
    ``no_grad`` too: a scan needs them); ``record_state_grads`` as in `Recurrence`.
    """

    def __init__(self, cell, reverse: bool = False):
        self.cell = cell
        self.reverse = reverse
        self.detach_state = False
        self.record_state_grads = False

    def forward(self, x: np.ndarray, state0: tuple[np.ndarray, ...], counts: np.ndarray | None = None):
        cell = self.cell
        steps, batch, _ = x.shape
        valid = _valid(counts, steps, batch)
        xp = cell.project(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        ws = cell.allocate(steps, batch, ragged=counts is not None)
        log_a, a, b = cell.coefficients(xp, ws.gates)
        if valid is not None:  # past a row's end: a = 1, b = 0 (the state is carried)
            log_a[~valid], a[~valid], b[~valid] = 0.0, 1.0, 0.0
        ws.decay[...], ws.log_decay = a, log_a
        h = linear_scan(log_a, b, state0[0], self.reverse)
        states = [np.empty((steps + 1, batch, cell.hidden_size), cell.dtype)]
        first, rest = (steps, slice(0, steps)) if self.reverse else (0, slice(1, steps + 1))
        states[0][first], states[0][rest] = state0[0], h
        out = h if valid is None else np.where(valid[..., None], h, 0.0)
        final = (states[0][0 if self.reverse else steps],)
        trace = Trace(x, states, counts, ws, self.reverse) if is_grad_enabled() else None
        return out, final, trace

    def backward(self, trace: Trace, dy: np.ndarray | None, dfinal: tuple[np.ndarray, ...] | None = None):
        """(δx, δ(initial state)): `backward_through_time`, then `backward_weights`."""
        dxp, dstate = self.backward_through_time(trace, dy, dfinal)
        return self.backward_weights(trace, dxp), dstate

    def backward_through_time(self, trace: Trace, dy: np.ndarray | None,
                              dfinal: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, tuple]:
        """(δ of every step's coefficients' pre-activations (T, B, G), (δh_0,)) by the reverse-time scan; ``dy``
        is not read after it."""
        cell, ws = self.cell, trace.ws
        steps, batch, _ = trace.x.shape
        valid = _valid(trace.counts, steps, batch)
        dy = np.zeros((steps, batch, cell.hidden_size), cell.dtype) if dy is None else dy
        if valid is not None:
            dy = np.where(valid[..., None], dy, 0.0)
        d_final = np.zeros((batch, cell.hidden_size), cell.dtype)
        if dfinal and dfinal[0] is not None:
            d_final += dfinal[0]
        g, dh0 = self._state_gradients(ws, dy, d_final, valid)
        if self.record_state_grads:
            norms = np.linalg.norm(g, axis=2)
            trace.state_grad_norms = (norms.mean(axis=1) if valid is None
                                      else (norms * valid).sum(axis=1) / valid.sum(axis=1))
        (h_prev,) = trace.states_before_each_step()
        da, db = g * h_prev, g
        if valid is not None:
            da[~valid], db[~valid] = 0.0, 0.0
        dxp = np.zeros((steps, batch, cell.gate_width), cell.dtype)
        cell.coefficients_backward(ws.gates, ws.decay, da, db, dxp)
        if valid is not None:
            dxp[~valid] = 0.0
        return dxp, (dh0,)

    def backward_weights(self, trace: Trace, dxp: np.ndarray) -> np.ndarray:
        """Every parameter's gradient (`Cell.accumulate`) and δx (T, B, I) from ``dxp``."""
        steps, batch, _ = trace.x.shape
        rows = steps * batch
        prev = tuple(s.reshape(rows, -1) for s in trace.states_before_each_step())
        new = tuple(s.reshape(rows, -1) for s in trace.states_after_each_step())
        dx = self.cell.accumulate(trace.ws, trace.x.reshape(rows, -1), dxp.reshape(rows, -1), prev, new)
        return dx.reshape(steps, batch, -1)

    def _state_gradients(self, ws, dy, d_final, valid):
        """(g (T, B, H) = ∂L/∂h_t for every step, δh_0) by the reverse-time scan (see the class notes)."""
        if self.detach_state:  # Elman's training: g_t = δy_t, and δ(final) reaches the step that wrote it only
            g = dy.copy()
            last = np.zeros(dy.shape[1], np.int64) if self.reverse else _lengths(valid, dy) - 1
            g[last, np.arange(dy.shape[1])] += d_final
            return g, np.zeros_like(d_final)
        log_c = np.zeros_like(ws.log_decay)
        if self.reverse:  # g_t = δy_t + a_{t-1} g_{t-1}, from g_{-1} = δ(final)
            log_c[1:] = ws.log_decay[:-1]
            g = linear_scan(log_c, dy, d_final)
            return g, ws.decay[-1] * g[-1]
        log_c[:-1] = ws.log_decay[1:]  # g_t = δy_t + a_{t+1} g_{t+1}, from g_T = δ(final)
        g = linear_scan(log_c, dy, d_final, reverse=True)
        return g, ws.decay[0] * g[0]


def _valid(counts, steps: int, batch: int) -> np.ndarray | None:
    """(T, B) booleans: row b is inside its sequence at step t (rows sorted by decreasing length); None if all."""
    if counts is None or counts[-1] == batch:
        return None
    return np.arange(batch)[None, :] < np.asarray(counts)[:, None]


def _lengths(valid, dy) -> np.ndarray:
    """Each row's length (the whole time axis when ``valid`` is None)."""
    return np.full(dy.shape[1], dy.shape[0], np.int64) if valid is None else valid.sum(axis=0)
