"""`RecurrentLayer`: stacking, bidirectionality, ragged batches and stateful carry, by composing runners.

Shapes (PyTorch's legend, batch-first): B batch, T time, D = 2 if bidirectional else 1, L = num_layers,
H_out = hidden size (or projection size).

* input ``x``: (B, T, H_in), or (T, H_in) for one unbatched sequence;
* ``state0``: per state component (D·L, B, S) — or (D·L, S) unbatched; index ``layer·D + direction``;
* output: (B, T, D·H_out): [forward | backward] features of the last layer; zero past each sequence's end;
* final state: like ``state0``; the backward direction's final state is its output at time 0.

Layer l > 0 takes the (dropout-masked, in training) output of layer l − 1. Parameters are registered under
PyTorch's names ``{name}_l{l}`` and ``{name}_l{l}_reverse``, in PyTorch's order.
"""

from __future__ import annotations

import numpy as np

from ..layers import Dropout
from ..module import DEFAULT_DTYPE, Module, as_rng, check_dtype, check_float_array
from .cell import Cell
from .runner import Recurrence


def hidden_part(state):
    """The h component of a layer's state: the state itself for RNN/GRU, ``state[0]`` for an LSTM's (h, c)."""
    return state[0] if isinstance(state, tuple) else state


def sort_by_length(lengths, batch: int, steps: int):
    """Validate ``lengths`` and return (order, counts): rows sorted by decreasing length, and for each step the
    number of rows whose sequence is still running."""
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be {batch} integers (one per sequence), got {lengths.dtype} "
                         f"array of shape {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > steps:
        raise ValueError(f"lengths must lie in [1, {steps}] (the time axis), got [{lengths.min()}, {lengths.max()}]")
    order = np.argsort(-lengths, kind="stable")
    counts = (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1)
    return order, counts


class RecurrentLayer(Module):
    """Base for RNN, LSTM, GRU...: subclasses set ``cell_class`` and may pass extra cell options."""

    cell_class: type[Cell] = Cell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, stateful: bool = False,
                 dtype=DEFAULT_DTYPE, rng=None, **cell_options):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        dt = check_dtype(dtype)
        rng = as_rng(rng)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.dropout, self.bidirectional, self.stateful = bias, dropout, bidirectional, stateful
        self.num_directions = 2 if bidirectional else 1
        self.cell_options = cell_options
        self.runners: list[list[Recurrence]] = []
        layer_input = input_size
        for layer in range(num_layers):
            row = []
            for direction in range(self.num_directions):
                cell = self.cell_class(layer_input, hidden_size, bias=bias, dtype=dt, rng=rng, **cell_options)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name, p in cell.named_params():
                    setattr(self, name + suffix, p)
                row.append(Recurrence(cell, reverse=bool(direction)))
            self.runners.append(row)
            layer_input = self.num_directions * row[0].cell.output_size
        self.inter_dropout = Dropout(dropout, rng=rng) if dropout > 0 and num_layers > 1 else None
        self._carry = None
        self._ctx = None
        self._out_shape = None

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def cells(self) -> list[Cell]:
        return [r.cell for row in self.runners for r in row]

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return self.runners[0][0].cell.state_sizes

    @property
    def output_size(self) -> int:
        return self.num_directions * self.runners[-1][0].cell.output_size

    def _to_public(self, parts: tuple[np.ndarray, ...]):
        """A tuple of state components → the user-facing form (one array for one-component states)."""
        return parts[0] if len(parts) == 1 else parts

    def _from_public(self, state) -> tuple:
        return (state,) if len(self.state_sizes) == 1 else tuple(state)

    def _check_state(self, state, batch: int, unbatched: bool) -> tuple[np.ndarray, ...]:
        parts = self._from_public(state)
        if len(parts) != len(self.state_sizes):
            raise ValueError(f"initial state must have {len(self.state_sizes)} components, got {len(parts)}")
        checked = []
        for name, part, size in zip(self.cell_class.state_names, parts, self.state_sizes):
            rows = self.num_directions * self.num_layers
            want = (rows, size) if unbatched else (rows, batch, size)
            check_float_array(part, f"initial state {name}", self.dtype, (len(want),))
            if part.shape != want:
                raise ValueError(f"initial state {name} must have shape {want}, got {part.shape}")
            checked.append(part[:, None] if unbatched else part)
        return tuple(checked)

    # -- forward --------------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, state0=None, lengths=None):
        """Run all layers and directions. Returns (output, final state); see the module docstring for shapes."""
        check_float_array(x, "input", self.dtype, (2, 3))
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input must have {self.input_size} features in its last axis, got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None]
        batch, steps, _ = x.shape
        if steps == 0:
            raise ValueError(f"input must have at least one time step, got shape {x.shape}")
        if lengths is None:
            order, counts = None, None
        else:
            if unbatched:
                lengths = np.atleast_1d(lengths)
            order, counts = sort_by_length(lengths, batch, steps)
            if counts[-1] == batch:  # every sequence is full length: nothing to mask
                order, counts = None, None
        if state0 is None and self.stateful and self._carry is not None:
            state0 = self._carry
            if state0[0].shape[1] != batch:
                raise ValueError(f"stateful layer carries a state for batch size {state0[0].shape[1]}, got an input "
                                 f"with batch size {batch}; call reset_state() first")
        elif state0 is not None:
            state0 = self._check_state(state0, batch, unbatched)
        xt = np.ascontiguousarray((x if order is None else x[order]).transpose(1, 0, 2))
        finals = []
        inp = xt
        for layer, row in enumerate(self.runners):
            outs = []
            for direction, runner in enumerate(row):
                index = layer * self.num_directions + direction
                if state0 is None:
                    s0 = tuple(np.zeros((batch, size), self.dtype) for size in self.state_sizes)
                else:
                    s0 = tuple(s[index] if order is None else s[index][order] for s in state0)
                out, final = runner.forward(inp, s0, counts)
                outs.append(out)
                finals.append(final)
            inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
            if self.inter_dropout is not None and layer < self.num_layers - 1:
                inp = self.inter_dropout.forward(inp)
        out = inp.transpose(1, 0, 2)
        final = tuple(np.stack([f[k] for f in finals]) for k in range(len(self.state_sizes)))
        if order is not None:
            inverse = np.argsort(order)
            out, final = out[inverse], tuple(f[:, inverse] for f in final)
        out = np.ascontiguousarray(out)
        if self.stateful:
            self._carry = tuple(f.copy() for f in final)  # detached: the next chunk's backward stops here
        self._ctx = (order, unbatched)
        self._out_shape = out.shape[1:] if unbatched else out.shape
        if unbatched:
            out, final = out[0], tuple(f[:, 0] for f in final)
        return out, self._to_public(final)

    def reset_state(self) -> None:
        """Forget the carried state of a stateful layer (start of a new stream)."""
        self._carry = None

    @property
    def detach_state(self) -> bool:
        """True: train as Elman (1990) did — every step reads the previous state as a constant input (the copy-back
        context units; PyTorch: ``cell(x_t, h.detach())``), so no error is propagated back through time. The
        forward pass is unchanged; the gradient is that of the one-step-truncated objective, not of the loss."""
        return self.runners[0][0].detach_state

    @detach_state.setter
    def detach_state(self, value: bool) -> None:
        for row in self.runners:
            for runner in row:
                runner.detach_state = bool(value)

    def state_at(self, k: int):
        """The full state (public form, (L, B, S) per component) after the first k steps of the last forward.
        Used by truncated BPTT with k2 > k1 to carry the state from inside a window. Unidirectional only."""
        if self.bidirectional:
            raise ValueError("state_at needs a unidirectional layer: a backward direction has no state mid-sequence")
        order, unbatched = self._ctx
        parts = tuple(np.stack([row[0].state_at(k)[c] for row in self.runners]) for c in range(len(self.state_sizes)))
        if order is not None:
            inverse = np.argsort(order)
            parts = tuple(p[:, inverse] for p in parts)
        if unbatched:
            parts = tuple(p[:, 0] for p in parts)
        return self._to_public(tuple(p.copy() for p in parts))

    # -- backward -------------------------------------------------------------------------------------
    def backward(self, dy=None, dstate=None):
        """δ(output) and δ(final state) (either may be None) → (δx, δ(initial state)), shaped like the inputs."""
        if self._ctx is None:
            raise RuntimeError("backward() called before forward()")
        order, unbatched = self._ctx
        rows = self.num_directions * self.num_layers
        dparts = None
        if dstate is not None:
            dparts = self._from_public(dstate)
            if unbatched:
                dparts = tuple(d[:, None] for d in dparts)
            if order is not None:
                dparts = tuple(d[:, order] for d in dparts)
        if dy is not None:
            if dy.shape != self._out_shape:
                raise ValueError(f"gradient of the output must have shape {self._out_shape}, got {dy.shape}")
            if unbatched:
                dy = dy[None]
            if order is not None:
                dy = dy[order]
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        dstate0: list = [None] * rows
        for layer in reversed(range(self.num_layers)):
            if layer < self.num_layers - 1 and self.inter_dropout is not None:
                dy = self.inter_dropout.backward(dy)
            row = self.runners[layer]
            width = row[0].cell.output_size
            dx = None
            for direction, runner in enumerate(row):
                index = layer * self.num_directions + direction
                part = None if dy is None else dy[:, :, direction * width:(direction + 1) * width]
                dfinal = None if dparts is None else tuple(d[index] for d in dparts)
                dxi, ds0 = runner.backward(part, dfinal)
                dstate0[index] = ds0
                dx = dxi if dx is None else dx + dxi
            dy = dx
        dx = dy.transpose(1, 0, 2)
        ds = tuple(np.stack([d[k] for d in dstate0]) for k in range(len(self.state_sizes)))
        if order is not None:
            inverse = np.argsort(order)
            dx, ds = dx[inverse], tuple(d[:, inverse] for d in ds)
        dx = np.ascontiguousarray(dx)
        if unbatched:
            dx, ds = dx[0], tuple(d[:, 0] for d in ds)
        return dx, self._to_public(ds)

    def _after_dtype_change(self) -> None:
        self._carry = None

    def extra_repr(self) -> str:
        opts = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            opts += ", bidirectional=True"
        if self.dropout:
            opts += f", dropout={self.dropout}"
        return opts
