"""A recurrent state as the caller passes it: one array for a one-component state (RNN, GRU), a tuple of arrays in
the cell's ``state_names`` order for more (an LSTM's (h, c)), each (…, S) with the layer's or step cell's leading
axes. The one check of such a state (`check_state_parts`: `rnnkit.recurrent.layer.RecurrentLayer` and the step cells
of `rnnkit.recurrent.step_cells`), the dtype its gradient is returned in, and its h part for the models that read
it (`hidden_part`)."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..module import check_float_array, check_float_grad


def hidden_part(state):
    """The h component of a layer's state: the state itself for RNN/GRU, ``state[0]`` for an LSTM's (h, c)."""
    return state[0] if isinstance(state, tuple) else state


def gradient_dtype(state0, x):
    """The dtype the gradient of the initial state ``state0`` is returned in: the given state's, else the input
    ``x``'s."""
    first = state0[0] if isinstance(state0, (tuple, list)) and state0 else state0
    return first.dtype if isinstance(first, np.ndarray) else getattr(x, "dtype", None)


def check_state_parts(state, names: tuple[str, ...], sizes: tuple[int, ...], lead: tuple[int, ...], dtype,
                      what: str, gradient: bool) -> tuple:
    """The components of a state (a tuple, or one array for a one-component state) each of shape ``lead`` + (S,)
    in ``dtype``; for a ``gradient`` a component may be None. One-line `ShapeError`s naming ``what`` and the
    component (the one check of a state, for the layers and the step cells)."""
    n = len(sizes)
    if n > 1 and not isinstance(state, (tuple, list)):
        raise ShapeError(f"{what} must be a tuple of {n} arrays {names}, got {type(state).__name__}")
    parts = (state,) if n == 1 else tuple(state)
    if len(parts) != n:
        raise ShapeError(f"{what} must have {n} components {names}, got {len(parts)}")
    checked = []
    for name, part, size in zip(names, parts, sizes):
        want = lead + (size,)
        if part is None and gradient:
            checked.append(None)
            continue
        if gradient:
            part = check_float_grad(part, f"{what} {name}", dtype, want)
        else:
            part = check_float_array(part, f"{what} {name}", dtype, (len(want),))
        if part.shape != want:
            raise ShapeError(f"{what} {name} must have shape {want}, got {part.shape}")
        checked.append(part.astype(dtype, copy=False))
    return tuple(checked)
