"""The cell protocol: the math of one time step with fused gates, and the whole-sequence GEMMs around it.

A cell of ``num_gates`` gates and hidden size H owns PyTorch-layout parameters

    weight_ih (G, I),  weight_hh (G, R),  bias_ih (G,),  bias_hh (G,)      G = num_gates · H

(R is the size of the recurrent input: H, or the projection size for an LSTM with ``proj_size``).

The runner (`rnnkit.recurrent.runner.Recurrence`) calls, for one sequence batch of T steps and B rows:

1. ``project(X)``: X (T·B, I) → XP (T·B, G) = X W_ihᵀ + b_ih (+ b_hh where it can be folded) — one GEMM;
2. ``allocate(T, B, ragged)``: per-sequence caches (gate activations ...), filled by ``step`` (zeroed for
   ragged batches, whose padded rows no step writes but the weight GEMMs read);
3. ``step(t, xp, prev, new)`` for each t: reads the previous state ``prev`` (a tuple of (n, S_k) arrays),
   writes the new state into ``new`` in place; only the recurrent matmul and pointwise math happen here;
4. ``step_backward(t, dstate, prev, new, dxp)`` in reverse order: ``dstate`` holds δ(new state) on entry and
   is overwritten with δ(prev state); writes δ(pre-activation) into ``dxp`` (n, G);
5. ``accumulate(X, DXP, PREV, NEW)``: parameter gradients as whole-sequence GEMMs, returns δX (T·B, I);
   PREV / NEW are the state slabs each step read / wrote, (T·B, S_k).

Only the first n ≤ B rows are active at step t (the runner sorts a ragged batch by length), so every array a
step sees is a contiguous row prefix.
"""

from __future__ import annotations

import math

import numpy as np

from ..module import Parameter, as_rng


class Cell:
    """Base class: fused-gate parameters, input projection, and the weight-gradient GEMMs."""

    num_gates = 1
    #: names of the state components, in the order of ``prev``/``new`` tuples; the first one is the output
    state_names: tuple[str, ...] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, recurrent_size: int | None = None,
                 dtype=np.float32, rng=None):
        rng = as_rng(rng)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.recurrent_size = hidden_size if recurrent_size is None else recurrent_size
        g = self.num_gates * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)

        def uniform(*shape):
            return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))

        self.weight_ih = uniform(g, input_size)
        self.weight_hh = uniform(g, self.recurrent_size)
        self.bias_ih = uniform(g) if bias else None
        self.bias_hh = uniform(g) if bias else None
        self.cache: tuple[np.ndarray, ...] = ()

    # -- description ----------------------------------------------------------------------------------
    def named_params(self) -> list[tuple[str, Parameter]]:
        """Parameters in PyTorch's state-dict order (names without the ``_l{k}`` suffix)."""
        names = [("weight_ih", self.weight_ih), ("weight_hh", self.weight_hh)]
        if self.bias:
            names += [("bias_ih", self.bias_ih), ("bias_hh", self.bias_hh)]
        return names

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.recurrent_size,)

    @property
    def output_size(self) -> int:
        return self.state_sizes[0]

    @property
    def dtype(self) -> np.dtype:
        return self.weight_ih.data.dtype

    #: whether b_hh can be added once to the projection (false where a gate multiplies it, as in GRU's n)
    fold_hidden_bias = True

    # -- whole-sequence work (outside the time loop) --------------------------------------------------
    def project(self, x: np.ndarray) -> np.ndarray:
        """XP = X W_ihᵀ + b_ih (+ b_hh): (N, I) → (N, G), one GEMM."""
        xp = x @ np.ascontiguousarray(self.weight_ih.data.T)
        if self.bias:
            xp += self.bias_ih.data
            if self.fold_hidden_bias:
                xp += self.bias_hh.data
        return xp

    def allocate(self, steps: int, batch: int, ragged: bool = False) -> None:
        """Create the per-sequence caches ``self.cache`` (arrays with leading axes (T, B)), and ``w_hh_t``,
        W_hhᵀ as a contiguous array: BLAS multiplies by it 1.2–2× faster than by the transposed view."""
        make = np.zeros if ragged else np.empty
        self.cache = tuple(make((steps, batch, width), self.dtype) for width in self.cache_widths())
        self.w_hh_t = np.ascontiguousarray(self.weight_hh.data.T)

    def cache_widths(self) -> tuple[int, ...]:
        return ()

    def accumulate(self, x: np.ndarray, dxp: np.ndarray, prev: tuple[np.ndarray, ...],
                   new: tuple[np.ndarray, ...], input_grad: bool = True) -> np.ndarray | None:
        """Add δW_ih = δXPᵀ X, δW_hh = δXPᵀ H_prev, δb = Σ δXP; return δX = δXP W_ih (unless ``input_grad`` is
        false: a cell that computed δX inside the loop). Shapes (T·B, ·)."""
        self.weight_ih.grad += dxp.T @ x
        self.weight_hh.grad += dxp.T @ prev[0]
        if self.bias:
            db = dxp.sum(axis=0)
            self.bias_ih.grad += db
            self.bias_hh.grad += db
        return dxp @ self.weight_ih.data if input_grad else None

    # -- one step (inside the time loop) --------------------------------------------------------------
    def step(self, t: int, xp: np.ndarray, prev: tuple, new: tuple) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def step_backward(self, t: int, dstate: tuple, prev: tuple, new: tuple,
                      dxp: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
