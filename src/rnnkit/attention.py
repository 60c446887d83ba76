"""Attention over an encoder memory, one decoder step at a time, with hand-derived backward passes.

Memory M (B, S, D_m) with a source mask (B, S); a query q (B, D_q) per decoder step. Scores e (B, S), weights
α = softmax over valid source positions, context c = Σ_s α_s M_s (B, D_m).

* `AdditiveAttention` (Bahdanau et al. 2015):  e_s = vᵀ tanh(K_s + q W_qᵀ),  K = M W_kᵀ (computed once)
* `LuongAttention` (Luong et al. 2015):  K = M W_kᵀ (B, S, D_q);  dot: e_s = K_s · q;  general: e_s = K_s · (q W_aᵀ)

Backward of the masked softmax: δe = α ⊙ (δα − Σ_s δα_s α_s), with δα_s = δc · M_s. Each ``step`` pushes its
cache; ``step_backward`` pops the latest (call it in reverse order); ``finish_backward`` returns δM, including
the path through K, and adds the key-projection gradients.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import softmax
from .module import DEFAULT_DTYPE, Module, Parameter, as_rng, check_dtype


class _Attention(Module):
    def __init__(self):
        super().__init__()
        self._stack: list = []

    def prepare(self, memory: np.ndarray, mask: np.ndarray) -> None:
        """Set the memory (B, S, D_m) and its valid positions (B, S) for the following steps."""
        self.memory, self.mask = memory, mask.astype(bool)
        self.keys = memory @ self.key_weight.data.T
        self._dmemory = np.zeros_like(memory)
        self._dkeys = np.zeros_like(self.keys)
        self._stack = []

    def _attend(self, scores):
        alpha = softmax(np.where(self.mask, scores, -np.inf), axis=1)
        context = np.einsum("bs,bsd->bd", alpha, self.memory)
        return context, alpha

    def _softmax_backward(self, alpha, dcontext, dalpha=None):
        """δe from δc (and an optional direct δα); also adds δM = α δc."""
        self._dmemory += alpha[:, :, None] * dcontext[:, None, :]
        da = np.einsum("bd,bsd->bs", dcontext, self.memory)
        if dalpha is not None:
            da = da + dalpha
        return alpha * (da - (da * alpha).sum(axis=1, keepdims=True))

    def finish_backward(self) -> np.ndarray:
        """δM in total (directly and through K = M W_kᵀ); adds δW_k."""
        b, s, dm = self.memory.shape
        self.key_weight.grad += self._dkeys.reshape(b * s, -1).T @ self.memory.reshape(b * s, dm)
        return self._dmemory + self._dkeys @ self.key_weight.data


class AdditiveAttention(_Attention):
    """Bahdanau attention: parameters ``key_weight`` W_k (A, D_m), ``query_weight`` W_q (A, D_q), ``v`` (A,)."""

    def __init__(self, memory_size: int, query_size: int, attention_size: int, dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        dt, rng = check_dtype(dtype), as_rng(rng)
        b_m, b_q, b_a = (1 / math.sqrt(n) for n in (memory_size, query_size, attention_size))
        self.key_weight = Parameter(rng.uniform(-b_m, b_m, (attention_size, memory_size)).astype(dt))
        self.query_weight = Parameter(rng.uniform(-b_q, b_q, (attention_size, query_size)).astype(dt))
        self.v = Parameter(rng.uniform(-b_a, b_a, attention_size).astype(dt))

    def step(self, query: np.ndarray):
        """q (B, D_q) → (context (B, D_m), weights (B, S))."""
        hidden = np.tanh(self.keys + (query @ self.query_weight.data.T)[:, None, :])  # (B, S, A)
        context, alpha = self._attend(hidden @ self.v.data)
        self._stack.append((query, hidden, alpha))
        return context, alpha

    def step_backward(self, dcontext: np.ndarray) -> np.ndarray:
        query, hidden, alpha = self._stack.pop()
        de = self._softmax_backward(alpha, dcontext)
        self.v.grad += np.einsum("bs,bsa->a", de, hidden)
        dpre = de[:, :, None] * self.v.data * (1.0 - hidden * hidden)  # (B, S, A)
        self._dkeys += dpre
        dq_proj = dpre.sum(axis=1)  # (B, A)
        self.query_weight.grad += dq_proj.T @ query
        return dq_proj @ self.query_weight.data


class LuongAttention(_Attention):
    """Luong attention, ``score='dot'`` or ``'general'``: ``key_weight`` W_k (D_q, D_m) maps the memory to the
    query size; ``general`` adds ``score_weight`` W_a (D_q, D_q)."""

    def __init__(self, memory_size: int, query_size: int, score: str = "dot", dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        if score not in ("dot", "general"):
            raise ValueError(f"score must be 'dot' or 'general', got {score!r}")
        dt, rng = check_dtype(dtype), as_rng(rng)
        self.score = score
        b_m, b_q = 1 / math.sqrt(memory_size), 1 / math.sqrt(query_size)
        self.key_weight = Parameter(rng.uniform(-b_m, b_m, (query_size, memory_size)).astype(dt))
        if score == "general":
            self.score_weight = Parameter(rng.uniform(-b_q, b_q, (query_size, query_size)).astype(dt))

    def step(self, query: np.ndarray):
        q = query @ self.score_weight.data.T if self.score == "general" else query
        context, alpha = self._attend(np.einsum("bsd,bd->bs", self.keys, q))
        self._stack.append((query, q, alpha))
        return context, alpha

    def step_backward(self, dcontext: np.ndarray) -> np.ndarray:
        query, q, alpha = self._stack.pop()
        de = self._softmax_backward(alpha, dcontext)
        self._dkeys += de[:, :, None] * q[:, None, :]
        dq = np.einsum("bs,bsd->bd", de, self.keys)
        if self.score == "general":
            self.score_weight.grad += dq.T @ query
            dq = dq @ self.score_weight.data
        return dq
