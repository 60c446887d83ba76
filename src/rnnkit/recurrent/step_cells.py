"""Single-step cells — `RNNCell`, `LSTMCell`, `GRUCell` — with ``torch.nn.*Cell``'s parameters and semantics.

For custom loops and sampling. Each ``forward`` is one time step run by the same runner and cell math as the
layers (a sequence of length 1), and pushes its cache on a stack; each ``backward`` pops the most recent one, so a
hand-written loop backpropagates by calling ``backward`` in reverse order::

    cell = LSTMCell(3, 8)
    state = None
    for t in range(T):
        h, c = state = cell.forward(x[:, t], state)
    for t in reversed(range(T)):
        dx[:, t], (dh, dc) = cell.backward((dh + dy[:, t], dc))
"""

from __future__ import annotations

import numpy as np

from ..module import DEFAULT_DTYPE, Module, check_dtype, check_float_array
from .cell import Cell
from .gru import GRUStep
from .lstm import LSTMStep
from .rnn import ElmanCell
from .runner import Recurrence


class StepCell(Module):
    """Base: a `Cell` as a module. ``forward(x (B, I) or (I,), state=None)`` → new state;
    ``backward(δ new state)`` → (δx, δ previous state)."""

    cell_class: type[Cell] = Cell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=DEFAULT_DTYPE, rng=None,
                 **options):
        super().__init__()
        self.cell = self.cell_class(input_size, hidden_size, bias=bias, dtype=check_dtype(dtype), rng=rng, **options)
        for name, p in self.cell.named_params():
            setattr(self, name, p)
        self.input_size, self.hidden_size = input_size, hidden_size
        self._stack: list[tuple[Recurrence, bool]] = []

    def _public(self, parts):
        return parts[0] if len(parts) == 1 else parts

    def forward(self, x, state=None):
        check_float_array(x, "input", self.dtype, (1, 2))
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input must have {self.input_size} features, got shape {x.shape}")
        unbatched = x.ndim == 1
        xb = x[None] if unbatched else x
        sizes = self.cell.state_sizes
        if state is None:
            parts = tuple(np.zeros((xb.shape[0], s), self.dtype) for s in sizes)
        else:
            parts = (state,) if len(sizes) == 1 else tuple(state)
            for name, part, size in zip(self.cell.state_names, parts, sizes):
                want = (size,) if unbatched else (xb.shape[0], size)
                check_float_array(part, f"state {name}", self.dtype, (len(want),))
                if part.shape != want:
                    raise ValueError(f"state {name} must have shape {want}, got {part.shape}")
            parts = tuple(p[None] if unbatched else p for p in parts)
        # A fresh cell copy shares the Parameters but owns this step's cache.
        runner = Recurrence(_shallow_copy(self.cell))
        _, final = runner.forward(xb[None], parts)
        self._stack.append((runner, unbatched))
        final = tuple(f.copy()[0] if unbatched else f.copy() for f in final)
        return self._public(final)

    def backward(self, *dstate):
        """δ(new state) — one array, or (δh', δc') as a tuple or two arguments — → (δx, δ previous state)."""
        if len(dstate) == 1:
            dstate = dstate[0]
        if not self._stack:
            raise RuntimeError("backward() called more times than forward()")
        runner, unbatched = self._stack.pop()
        parts = (dstate,) if len(self.cell.state_sizes) == 1 else tuple(dstate)
        parts = tuple(None if d is None else (d[None] if unbatched else d) for d in parts)
        dx, dprev = runner.backward(None, parts)
        dx = dx[0]
        if unbatched:
            dx, dprev = dx[0], tuple(d[0] for d in dprev)
        return dx, self._public(dprev)

    def reset_cache(self) -> None:
        """Drop the cached steps (for example after a forward-only sampling loop)."""
        self._stack.clear()


def _shallow_copy(cell: Cell) -> Cell:
    clone = object.__new__(type(cell))
    clone.__dict__.update(cell.__dict__)
    return clone


class RNNCell(StepCell):
    """h' = tanh or relu(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh); see `ElmanCell` for the equations."""

    cell_class = ElmanCell

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=DEFAULT_DTYPE, rng=None):
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng, nonlinearity=nonlinearity)


class LSTMCell(StepCell):
    """(h', c') from x and (h, c), gate order i, f, g, o; see `LSTMStep` for the equations."""

    cell_class = LSTMStep


class GRUCell(StepCell):
    """h' from x and h, gate order r, z, n (``reset_after=True`` as PyTorch); see `GRUStep` for the equations."""

    cell_class = GRUStep
