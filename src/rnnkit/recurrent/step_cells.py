"""Single-step cells — `RNNCell`, `LSTMCell`, `GRUCell` — with ``torch.nn.*Cell``'s parameters and semantics.

For custom loops and sampling. Each ``forward`` is one time step run by the same runner and cell math as the
layers (a sequence of length 1) and saves its trace; each ``backward`` takes the most recent one, so a
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

from ..errors import ShapeError
from ..module import (
    DEFAULT_DTYPE,
    Module,
    check_bool,
    check_dtype,
    check_float_array,
    check_positive_int,
    in_dtype_of,
)
from .cell import Cell
from .gru import GRUStep
from .lstm import LSTMStep
from .rnn import RNNStep
from .runner import Recurrence
from .states import check_state_parts


class StepCell(Module):
    """Base: a `Cell` as a module. ``forward(x (B, I) or (I,), state=None)`` → new state;
    ``backward(δ new state)`` → (δx, δ previous state). One runner serves every call; each forward saves its own
    trace (see `rnnkit.module`), so calls and backwards interleave as in any hand-written loop."""

    cell_class: type[Cell] = Cell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=DEFAULT_DTYPE, rng=None,
                 **options):
        super().__init__()
        input_size, hidden_size = check_positive_int("input_size", input_size), check_positive_int("hidden_size",
                                                                                                    hidden_size)
        bias = check_bool("bias", bias)
        self.cell = self.cell_class(input_size, hidden_size, bias=bias, dtype=check_dtype(dtype), rng=rng, **options)
        for name, p in self.cell.named_parameters():
            setattr(self, name, p)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.runner = Recurrence(self.cell)

    def _public(self, parts):
        return parts[0] if len(parts) == 1 else parts

    def _check_state(self, state, batch: int, unbatched: bool, what: str = "state") -> tuple:
        """The components of the state (or, ``what`` naming it, of its gradient, where a component may be None) as
        (B, S) arrays in the cell's dtype; one-line errors naming them."""
        sizes, gradient = self.cell.state_sizes, what != "state"
        if state is None and not gradient:
            return tuple(np.zeros((batch, s), self.dtype) for s in sizes)
        checked = check_state_parts(state, self.cell.state_names, sizes, () if unbatched else (batch,), self.dtype,
                                    what, gradient)
        return tuple(p[None] if unbatched and p is not None else p for p in checked)

    def forward(self, x, state=None):
        """x (B, I) or (I,) and the state, of any real floating dtype (computed in the cell's) → the new state."""
        first = state[0] if isinstance(state, (tuple, list)) and state else state
        given = getattr(x, "dtype", None)
        dtypes = (given, first.dtype if isinstance(first, np.ndarray) else given)
        x = check_float_array(x, "input", self.dtype, (1, 2))
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"input must have {self.input_size} features, got shape {x.shape}")
        unbatched = x.ndim == 1
        xb = x[None] if unbatched else x
        parts = self._check_state(state, xb.shape[0], unbatched)
        if xb.shape[0] == 0:  # no rows, as PyTorch: an empty new state; its backward gives empty gradients
            final, trace = tuple(np.zeros((0, s), self.dtype) for s in self.cell.state_sizes), None
            self.save_for_backward(None, False, dtypes, 0)
        else:
            _, final, trace = self.runner.forward(xb[None], parts)
        if trace is not None:
            self.save_for_backward(trace, unbatched, dtypes, xb.shape[0])
        final = tuple(f.copy()[0] if unbatched else f.copy() for f in final)
        return self._public(final)

    def backward(self, *dstate):
        """δ(new state) — one array, or (δh', δc') as a tuple or two arguments — → (δx, δ previous state)."""
        if len(dstate) == 1:
            dstate = dstate[0]
        trace, unbatched, dtypes, batch = self.saved_for_backward()
        parts = self._check_state(dstate, batch, unbatched, "gradient of the new state")
        if trace is None:  # an empty batch
            return (np.zeros((0, self.input_size), dtypes[0]),
                    self._public(tuple(np.zeros((0, s), dtypes[1]) for s in self.cell.state_sizes)))
        dx, dprev = self.runner.backward(trace, None, parts)
        dx = dx[0]
        if unbatched:
            dx, dprev = dx[0], tuple(d[0] for d in dprev)
        return in_dtype_of(dx, dtypes[0]), self._public(tuple(in_dtype_of(d, dtypes[1]) for d in dprev))


class RNNCell(StepCell):
    """h' = tanh or relu(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh); see `RNNStep` for the equations."""

    cell_class = RNNStep

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=DEFAULT_DTYPE, rng=None):
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng, nonlinearity=nonlinearity)


class LSTMCell(StepCell):
    """(h', c') from x and (h, c), gate order i, f, g, o; see `LSTMStep` for the equations."""

    cell_class = LSTMStep


class GRUCell(StepCell):
    """h' from x and h, gate order r, z, n (``reset_after=True`` as PyTorch); see `GRUStep` for the equations."""

    cell_class = GRUStep
