"""Attention over an encoder memory, one decoder step at a time, with hand-derived backward passes.

Memory M (B, S, D_m) with a source mask (B, S); a query q (B, D_q) per decoder step. Scores e (B, S), weights
α = softmax over valid source positions, context c = Σ_s α_s M_s (B, D_m).

* `AdditiveAttention` (Bahdanau et al. 2015):  e_s = vᵀ tanh(K_s + q W_qᵀ),  K = M W_kᵀ (computed once)
* `LuongAttention` (Luong et al. 2015):  K = M W_kᵀ (B, S, D_q);  dot: e_s = K_s · q;  general: e_s = K_s · (q W_aᵀ)

Backward of the masked softmax: δe = α ⊙ (δα − Σ_s δα_s α_s), with δα_s = δc · M_s.

Calls: ``mem = prepare(M, mask)`` once per source batch (the keys), then ``step(mem, q)`` per decoder step, which
saves what its backward needs (nothing under ``rnnkit.no_grad()``); ``step_backward(δc)`` backpropagates the most
recent step (call them in reverse order), adding into ``mem``'s δM and δK; ``finish_backward(mem)`` returns δM,
including the path through K, and adds the key-projection gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .activations import softmax
from .errors import DTypeError, ShapeError
from .module import (
    DEFAULT_DTYPE,
    Module,
    Parameter,
    as_rng,
    check_choice,
    check_dtype,
    check_float_array,
    check_float_grad,
    check_mask,
    check_positive_int,
    in_dtype_of,
)


@dataclass
class AttentionMemory:
    """One source batch prepared for attention: the memory M (B, S, D_m), its valid positions ``mask`` (B, S), the
    keys K = M W_kᵀ, and δM, δK, which the backwards of its steps add up until `finish_backward`."""

    memory: np.ndarray
    mask: np.ndarray
    keys: np.ndarray
    dmemory: np.ndarray | None = None
    dkeys: np.ndarray | None = None
    given: np.dtype | None = None  # the caller's dtype of the memory, that of δM

    def gradient_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """(δM, δK), created at the first backward step."""
        if self.dmemory is None:
            self.dmemory, self.dkeys = np.zeros_like(self.memory), np.zeros_like(self.keys)
        return self.dmemory, self.dkeys


class _Attention(Module):
    memory_size: int
    query_size: int

    def prepare(self, memory: np.ndarray, mask: np.ndarray | None = None) -> AttentionMemory:
        """The memory (B, S, D_m) and its valid positions (B, S; None: all), with keys K = M W_kᵀ: pass it to every
        ``step`` of this source batch and, after their backwards, to ``finish_backward``. Every row needs at least
        one valid position (softmax over none is undefined)."""
        given = getattr(memory, "dtype", None)
        memory = check_float_array(memory, "attention memory", self.dtype, (3,))
        if memory.shape[1] == 0 or memory.shape[2] != self.memory_size:
            raise ShapeError(f"attention memory must have shape (B, S >= 1, {self.memory_size}), got {memory.shape}")
        mask = np.ones(memory.shape[:2], bool) if mask is None else check_mask(mask, "attention mask",
                                                                                 memory.shape[:2])
        if not mask.any(axis=1).all():
            raise ShapeError("attention mask must keep at least one source position in every row")
        return AttentionMemory(memory, mask, memory @ self.key_weight.data.T, given=given)

    def _check_step(self, mem, query) -> tuple[np.ndarray, np.dtype | None]:
        """The query (B, D_q) of one step over ``mem``, in the layer's dtype, and the caller's dtype of it."""
        if not isinstance(mem, AttentionMemory):
            raise DTypeError(f"attention step needs the AttentionMemory that prepare() returns, got "
                             f"{type(mem).__name__}")
        given = getattr(query, "dtype", None)
        query = check_float_array(query, "attention query", self.dtype, (2,))
        if query.shape != (mem.memory.shape[0], self.query_size):
            raise ShapeError(f"attention query must have shape {(mem.memory.shape[0], self.query_size)}, got "
                             f"{query.shape}")
        return query, given

    def _check_dcontext(self, mem, dcontext) -> np.ndarray:
        return check_float_grad(dcontext, "attention: gradient of the context", self.dtype,
                                (mem.memory.shape[0], self.memory_size))

    @staticmethod
    def _attend(mem: AttentionMemory, scores):
        alpha = softmax(np.where(mem.mask, scores, -np.inf), axis=1)
        context = np.einsum("bs,bsd->bd", alpha, mem.memory)
        return context, alpha

    @staticmethod
    def _softmax_backward(mem: AttentionMemory, alpha, dcontext):
        """δe from δc; also adds δM = α δc."""
        dmemory, _ = mem.gradient_buffers()
        dmemory += alpha[:, :, None] * dcontext[:, None, :]
        da = np.einsum("bd,bsd->bs", dcontext, mem.memory)
        return alpha * (da - (da * alpha).sum(axis=1, keepdims=True))

    def finish_backward(self, mem: AttentionMemory) -> np.ndarray:
        """δM in total (directly and through K = M W_kᵀ); adds δW_k."""
        dmemory, dkeys = mem.gradient_buffers()
        b, s, dm = mem.memory.shape
        self.key_weight.grad += dkeys.reshape(b * s, dkeys.shape[-1]).T @ mem.memory.reshape(b * s, dm)
        return in_dtype_of(dmemory + dkeys @ self.key_weight.data, mem.given)


class AdditiveAttention(_Attention):
    """Bahdanau attention: parameters ``key_weight`` W_k (A, D_m), ``query_weight`` W_q (A, D_q), ``v`` (A,)."""

    def __init__(self, memory_size: int, query_size: int, attention_size: int, dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        memory_size, query_size = check_positive_int("memory_size", memory_size), check_positive_int("query_size",
                                                                                                      query_size)
        attention_size = check_positive_int("attention_size", attention_size)
        dt, rng = check_dtype(dtype), as_rng(rng)
        self.memory_size, self.query_size = memory_size, query_size
        b_m, b_q, b_a = (1 / math.sqrt(n) for n in (memory_size, query_size, attention_size))
        self.key_weight = Parameter(rng.uniform(-b_m, b_m, (attention_size, memory_size)).astype(dt))
        self.query_weight = Parameter(rng.uniform(-b_q, b_q, (attention_size, query_size)).astype(dt))
        self.v = Parameter(rng.uniform(-b_a, b_a, attention_size).astype(dt))

    def step(self, mem: AttentionMemory, query: np.ndarray):
        """q (B, D_q) → (context (B, D_m), weights (B, S))."""
        query, given = self._check_step(mem, query)
        hidden = np.tanh(mem.keys + (query @ self.query_weight.data.T)[:, None, :])  # (B, S, A)
        context, alpha = self._attend(mem, hidden @ self.v.data)
        self.save_for_backward(mem, query, hidden, alpha, given)
        return context, alpha

    def step_backward(self, dcontext: np.ndarray) -> np.ndarray:
        """δc (B, D_m) of the most recent step not yet backpropagated → δq; adds δv, δW_q and δK, δM."""
        mem, query, hidden, alpha, given = self.saved_for_backward()
        de = self._softmax_backward(mem, alpha, self._check_dcontext(mem, dcontext))
        self.v.grad += np.einsum("bs,bsa->a", de, hidden)
        dpre = de[:, :, None] * self.v.data * (1.0 - hidden * hidden)  # (B, S, A)
        _, dkeys = mem.gradient_buffers()
        dkeys += dpre
        dq_proj = dpre.sum(axis=1)  # (B, A)
        self.query_weight.grad += dq_proj.T @ query
        return in_dtype_of(dq_proj @ self.query_weight.data, given)


class LuongAttention(_Attention):
    """Luong attention, ``score='dot'`` or ``'general'``: ``key_weight`` W_k (D_q, D_m) maps the memory to the
    query size; ``general`` adds ``score_weight`` W_a (D_q, D_q)."""

    def __init__(self, memory_size: int, query_size: int, score: str = "dot", dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        memory_size, query_size = check_positive_int("memory_size", memory_size), check_positive_int("query_size",
                                                                                                      query_size)
        self.score = check_choice("score", score, ("dot", "general"))
        dt, rng = check_dtype(dtype), as_rng(rng)
        self.memory_size, self.query_size = memory_size, query_size
        b_m, b_q = 1 / math.sqrt(memory_size), 1 / math.sqrt(query_size)
        self.key_weight = Parameter(rng.uniform(-b_m, b_m, (query_size, memory_size)).astype(dt))
        if score == "general":
            self.score_weight = Parameter(rng.uniform(-b_q, b_q, (query_size, query_size)).astype(dt))

    def step(self, mem: AttentionMemory, query: np.ndarray):
        """q (B, D_q) → (context (B, D_m), weights (B, S))."""
        query, given = self._check_step(mem, query)
        q = query @ self.score_weight.data.T if self.score == "general" else query
        context, alpha = self._attend(mem, np.einsum("bsd,bd->bs", mem.keys, q))
        self.save_for_backward(mem, query, q, alpha, given)
        return context, alpha

    def step_backward(self, dcontext: np.ndarray) -> np.ndarray:
        """δc (B, D_m) of the most recent step not yet backpropagated → δq; adds δW_a and δK, δM."""
        mem, query, q, alpha, given = self.saved_for_backward()
        de = self._softmax_backward(mem, alpha, self._check_dcontext(mem, dcontext))
        _, dkeys = mem.gradient_buffers()
        dkeys += de[:, :, None] * q[:, None, :]
        dq = np.einsum("bs,bsd->bd", de, mem.keys)
        if self.score == "general":
            self.score_weight.grad += dq.T @ query
            dq = dq @ self.score_weight.data
        return in_dtype_of(dq, given)
