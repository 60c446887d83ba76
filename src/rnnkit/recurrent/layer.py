"""`RecurrentLayer`: stacking, bidirectionality, ragged batches and stateful carry, by composing runners.

Shapes (PyTorch's legend, batch-first): B batch, T time, D = 2 if bidirectional else 1, L = num_layers,
H_out = hidden size (or projection size).

* input ``x``: (B, T, H_in), or (T, H_in) for one unbatched sequence;
* ``state0``: per state component (D·L, B, S) — or (D·L, S) unbatched; index ``layer·D + direction``;
* output: (B, T, D·H_out): [forward | backward] features of the last layer; zero past each sequence's end. A new
  C-contiguous array where gradients are on; without them (``rnnkit.no_grad``) and without ragged lengths, as
  torch's, a batch-first view of the time-major result, not a copy of it (0.2 ms of an LSTM's B = 16, H = 256
  inference call; a `Linear` after it copies it again to flatten its rows);
* final state: like ``state0``; the backward direction's final state is its output at time 0.

Layer l > 0 takes the (dropout-masked, in training) output of layer l − 1. Parameters are registered under
PyTorch's names ``{name}_l{l}`` and ``{name}_l{l}_reverse``, in PyTorch's order.

Regularisers of the recurrence (`RecurrentLayer.regularize`: variational dropout, zoneout, weight drop) draw their
masks here, once per call, layer and direction, from the layer's ``rng``; the runner and the cells apply them
(`rnnkit.recurrent.noise` has the equations).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from ..errors import ConfigError, ShapeError, UsageError
from ..kernels import parallel
from ..layers import Dropout
from ..module import (
    DEFAULT_DTYPE,
    MAX_COUNT,
    Module,
    as_rng,
    check_bool,
    check_dtype,
    check_float_array,
    check_float_grad,
    check_int,
    check_positive_int,
    check_probability,
    in_dtype_of,
)
from ..validate import parameters_fit
from . import halves
from .catalog import CellEntry, register
from .cell import Cell
from .noise import Noise, Regularization
from .ragged import in_caller_order, in_sorted_order, sort_by_length
from .runner import Recurrence, Trace
from .states import check_state_parts, gradient_dtype


def run_directions(jobs: list, whole: bool, work: int) -> list:
    """The results of one layer's direction jobs, in order. The two directions of a bidirectional layer run at
    once, each on its own core (`rnnkit.kernels.parallel.pair`, where their ``work`` makes it pay: `direction_work`),
    where both run their whole loop in one compiled call (``whole``: no Python per step to hold the GIL; not the
    scan runner); otherwise one after the other."""
    if len(jobs) == 2 and whole:
        return list(parallel.pair(*jobs, work))
    return [job() for job in jobs]


def direction_work(cell, steps: int, batch: int) -> int:
    """The multiply-adds of one direction's products inside its time loop over a call (`Cell.loop_work`;
    `rnnkit.kernels.parallel.PAIR_WORK`)."""
    return cell.loop_work(steps, batch)


@dataclass(frozen=True)
class TraceView:
    """One layer and direction of the last forward (with gradients enabled), read-only, batch-first, in the caller's row
    order. ``states``: {name: (B, T, S)}, the state after each step; ``gates``: {name: (B, T, H)}, the cell's
    activated gates (copies; the backward of an LSTM, a Mogrifier LSTM or a GRU on the compiled loop writes its
    gradients over them, so read them before ``backward``: `trace` refuses afterwards); ``state_grad_norms``: (T,)
    ‖∂L/∂h_t‖ if the backward recorded them (see ``RecurrentLayer.record_state_grads``), else None. Values past a
    sequence's end are not meaningful."""

    states: dict[str, np.ndarray]
    gates: dict[str, np.ndarray]
    state_grad_norms: np.ndarray | None


@dataclass
class _Call:
    """What one forward of a layer saves for its backward."""

    order: np.ndarray | None  # the sort by length, or None
    unbatched: bool
    out_shape: tuple[int, ...]
    traces: list[list[Trace | halves.HalvesTrace]]  # [layer][direction]
    grad_dtypes: tuple = (None, None)  # the caller's dtypes of x and of the initial state: the gradients' dtypes


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class RecurrentLayer(Module):
    """Base for RNN, LSTM, GRU...: subclasses set ``cell_class`` and may pass extra cell options."""

    cell_class: type[Cell] = Cell
    takes_lengths = True  # `Sequential.forward(x, lengths=...)` passes ragged lengths on to it
    #: the layer's `rnnkit.recurrent.catalog.CellEntry` (its ``--cell`` name, options, capabilities), declared in
    #: the body of each selectable layer class and registered when the class is defined
    catalog: CellEntry | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, stateful: bool = False,
                 dtype=DEFAULT_DTYPE, rng=None, return_state: bool = True, **cell_options):
        super().__init__()
        input_size, hidden_size = check_positive_int("input_size", input_size), check_positive_int("hidden_size",
                                                                                                    hidden_size)
        num_layers, dropout = check_int("num_layers", num_layers, 1, MAX_COUNT), check_probability("dropout", dropout)
        bias, bidirectional = check_bool("bias", bias), check_bool("bidirectional", bidirectional)
        stateful, return_state = check_bool("stateful", stateful), check_bool("return_state", return_state)
        dt = check_dtype(dtype)
        rng = as_rng(rng)
        parameters_fit(self._parameter_count(input_size, hidden_size, num_layers, bias, bidirectional, cell_options),
                       dt, f"{type(self).__name__}({input_size}, {hidden_size}, num_layers={num_layers})")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.dropout, self.bidirectional, self.stateful = bias, dropout, bidirectional, stateful
        self.return_state = return_state
        self.num_directions = 2 if bidirectional else 1
        self.cell_options = cell_options
        self.runners: list[list[Recurrence]] = []
        layer_input = input_size
        for layer in range(num_layers):
            row = []
            for direction in range(self.num_directions):
                cell = self.cell_class(layer_input, hidden_size, bias=bias, dtype=dt, rng=rng, **cell_options)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name, p in cell.named_parameters():  # PyTorch's names: weight_ih_l0, weight_ih_l0_reverse
                    setattr(self, name + suffix, p)
                row.append(Recurrence(cell, reverse=bool(direction)))
            self.runners.append(row)
            layer_input = self.num_directions * row[0].cell.output_size
        self.inter_dropout = Dropout(dropout, rng=rng) if dropout > 0 and num_layers > 1 else None
        self._carry = None  # stateful: the final state of the last call, the next call's initial state
        self._last: _Call | None = None  # the last forward with gradients enabled, for `trace` and `state_at`
        self.rng = rng  # draws the masks of `regularize`'s regularisers (saved with a checkpoint's generators)
        self.regularization = Regularization()

    @classmethod
    def _parameter_count(cls, input_size: int, hidden_size: int, num_layers: int, bias: bool, bidirectional: bool,
                         cell_options: dict) -> int:
        """How many numbers the layer will hold, from the cell's own count (before anything is allocated); 0 when
        the cell options are not valid (the cell's constructor then names the option)."""
        directions = 2 if bidirectional else 1
        try:
            first = cls.cell_class.parameter_count(input_size, hidden_size, bias, **cell_options)
            width = directions * cls.cell_class.output_width(hidden_size, **cell_options)
            deeper = cls.cell_class.parameter_count(width, hidden_size, bias, **cell_options)
        except (TypeError, ValueError):
            return 0
        return directions * (first + (num_layers - 1) * deeper)

    # -- regularisers of the recurrence (`rnnkit.recurrent.noise`) -----------------------------------------------
    def regularize(self, dropout_input: float = 0.0, dropout_recurrent: float = 0.0, zoneout=0.0,
                   weight_drop: float = 0.0) -> RecurrentLayer:
        """Set the layer's variational dropout (on the input features, on h_{t−1} in the recurrent matmuls), zoneout
        (one rate, or one per state component: an LSTM's (z_h, z_c)) and weight drop on W_hh; returns the layer.
        Masks are drawn once per call in training mode; `rnnkit.recurrent.noise` has the equations."""
        rates = Regularization.checked(self.cell_class.state_names, dropout_input, dropout_recurrent, weight_drop,
                                       zoneout)
        if rates.active and not all(type(r) is Recurrence for row in self.runners for r in row):
            raise ConfigError(f"{type(self).__name__}: the recurrent regularisers run in the step-by-step runner; "
                              "this layer's runs without a time loop (use mode='sequential')")
        if rates.dropout_recurrent or rates.weight_drop:
            for cell in self.cells:
                problem = cell.recurrent_mask_problem(bool(rates.dropout_recurrent), bool(rates.weight_drop))
                if problem:
                    raise ConfigError(f"{type(self).__name__}: {problem}")
        self.regularization = rates
        return self

    def sample_noise(self, layer: int, direction: int, batch: int, steps: int) -> Noise | None:
        """The regularisers' masks for one call of one layer and direction, rows in the caller's order."""
        cell = self.runners[layer][direction].cell
        weight = getattr(cell, "weight_hh", None)
        return self.regularization.sample(self.rng, self.training, steps, batch, cell.input_size, cell.state_sizes,
                                          None if weight is None else weight.data.shape, self.dtype)

    # -- shapes ---------------------------------------------------------------------------------------
    @classmethod
    def parameter_count(cls, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                        bias: bool = True, **cell_options) -> int:
        """How many numbers such a layer holds, computed without building it (see `Cell.parameter_count`)."""
        directions, cell = 2 if bidirectional else 1, cls.cell_class
        first = cell.parameter_count(input_size, hidden_size, bias=bias, **cell_options)
        deeper_input = directions * cell.output_width(hidden_size, **cell_options)
        deeper = cell.parameter_count(deeper_input, hidden_size, bias=bias, **cell_options)
        return directions * (first + (num_layers - 1) * deeper)

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

    def _check_state(self, state, batch: int, unbatched: bool, what: str = "initial state") -> tuple:
        """The components of a state (``what`` = "initial state") or of a state's gradient (``what`` names it;
        a component may then be None) as (D·L, B, S) arrays in the layer's dtype; one-line errors naming them."""
        rows = self.num_directions * self.num_layers
        lead = (rows,) if unbatched else (rows, batch)
        checked = check_state_parts(state, self.cell_class.state_names, self.state_sizes, lead, self.dtype, what,
                                    gradient=what != "initial state")
        return tuple(p[:, None] if unbatched and p is not None else p for p in checked)

    # -- forward --------------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, state0=None, lengths=None):
        """Run all layers and directions. Returns (output, final state) — the output alone when built with
        ``return_state=False`` — see the module docstring for shapes. ``x`` and ``state0`` may have any real
        floating dtype: they are computed in the layer's, and their gradients come back in their own."""
        dtypes = (getattr(x, "dtype", None), gradient_dtype(state0, x))
        x = check_float_array(x, "input", self.dtype, (2, 3))
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"input must have {self.input_size} features in its last axis, got shape {x.shape}")
        unbatched = x.ndim == 2
        x = x[None] if unbatched else x
        batch, steps, _ = x.shape
        if steps == 0:
            raise ShapeError(f"input must have at least one time step, got shape {x.shape}")
        order, counts = self._batch_order(lengths, batch, steps, unbatched)
        state0 = self._initial_state(state0, batch, unbatched)
        if batch == 0:
            return self._empty_batch(steps, dtypes)
        xt = in_sorted_order(x, order, 0).transpose(1, 0, 2)  # time-major: a view, which a lone direction's
        if len(self.runners[0]) > 1 or not isinstance(self.runners[0][0], Recurrence):  # runner lays out itself
            xt = np.ascontiguousarray(xt)  # (a pipeline's writer, chunk by chunk: `rnnkit.kernels.ahead`)
        out, finals, traces = self._run_layers(xt, state0, order, counts)
        out = in_caller_order(out.transpose(1, 0, 2), order, 0)  # batch-first: a view of the time-major output,
        if traces is not None and not out.flags.owndata:  # as torch's; copied where a backward reads what it shows
            out = out.copy()  # (a C-contiguous view, at B = 1 or T = 1, is copied too)
        final = tuple(in_caller_order(np.stack([f[k] for f in finals]), order, 1)
                      for k in range(len(self.state_sizes)))
        if self.stateful:
            self._carry = tuple(f.copy() for f in final)  # detached: the next chunk's backward stops here
        if traces is not None:
            self._last = _Call(order, unbatched, out.shape[1:] if unbatched else out.shape, traces, dtypes)
            self.save_for_backward(self._last)
        if unbatched:
            out, final = out[0], tuple(f[:, 0] for f in final)
        return (out, self._to_public(final)) if self.return_state else out

    def _empty_batch(self, steps: int, dtypes):
        """A batch of no sequences, as PyTorch: output (0, T, D·H_out), final state (D·L, 0, S); its backward gives
        empty gradients and adds nothing to the parameters' (there is no trace to read)."""
        out = np.zeros((0, steps, self.output_size), self.dtype)
        final = tuple(np.zeros((self.num_directions * self.num_layers, 0, s), self.dtype) for s in self.state_sizes)
        if self.stateful:
            self._carry = final
        self._last = None
        self.save_for_backward(_Call(None, False, out.shape, None, dtypes))
        return (out, self._to_public(final)) if self.return_state else out

    def _batch_order(self, lengths, batch: int, steps: int, unbatched: bool):
        """(order, counts) of a ragged batch, or (None, None) when every sequence runs the whole time axis."""
        if lengths is None:
            return None, None
        order, counts = sort_by_length(np.atleast_1d(lengths) if unbatched else lengths, batch, steps)
        return (None, None) if counts[-1] == batch else (order, counts)

    def _initial_state(self, state0, batch: int, unbatched: bool):
        """The given initial state (checked, as (D·L, B, S) components), the stateful carry, or None (zeros)."""
        if state0 is not None:
            return self._check_state(state0, batch, unbatched)
        if self.stateful and self._carry is not None:
            if self._carry[0].shape[1] != batch:
                raise ShapeError(f"stateful layer carries a state for batch size {self._carry[0].shape[1]}, got an "
                                 f"input with batch size {batch}; call reset_state() first")
            return self._carry
        return None

    def _run_layers(self, xt, state0, order, counts):
        """Every layer and direction over time-major ``xt``: (output (T, B, D·H), finals, traces or None)."""
        batch = xt.shape[1]
        finals, traces, inp = [], [], xt
        for layer, row in enumerate(self.runners):
            calls = []  # (runner, s0, noise) per direction; masks drawn in order from the layer's rng
            for direction, runner in enumerate(row):
                index = layer * self.num_directions + direction
                if state0 is None:
                    s0 = tuple(np.zeros((batch, size), self.dtype) for size in self.state_sizes)
                else:
                    s0 = tuple(in_sorted_order(s[index], order, 0) for s in state0)
                noise = self.sample_noise(layer, direction, batch, xt.shape[0]) \
                    if self.regularization.active else None
                calls.append((runner, s0, None if noise is None else noise.rows(order)))
            jobs = [self._forward_job(runner, inp, s0, counts, noise) for runner, s0, noise in calls]
            whole = all(isinstance(runner, Recurrence) and runner.runs_whole_sequence(batch)
                        for runner, _, _ in calls)
            work = direction_work(calls[0][0].cell, xt.shape[0], batch)
            outs, layer_finals, layer_traces = zip(*run_directions(jobs, whole, work))
            finals.extend(layer_finals)
            traces.append(list(layer_traces))
            inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
            if self.inter_dropout is not None and layer < self.num_layers - 1:
                inp = self.inter_dropout.forward(inp)
        return inp, finals, (traces if traces[0][0] is not None else None)

    def _forward_job(self, runner, inp, s0, counts, noise):
        """One direction's forward over time-major ``inp``: its runner's call, or the two halves of its batch at
        once where the layer has one direction and they pay (`rnnkit.recurrent.halves`)."""
        if self.num_directions == 1 and halves.halves_pay(runner, inp.shape[1], inp.shape[2], counts):
            return partial(halves.forward, runner, inp, s0, noise)
        return partial(runner.forward, inp, s0, counts, *([] if noise is None else [noise]))

    def reset_state(self) -> None:
        """Forget the carried state of a stateful layer (start of a new stream)."""
        self._carry = None

    @property
    def carried_state(self):
        """The state a stateful layer will start its next call from (public form), or None."""
        return None if self._carry is None else self._to_public(self._carry)

    @carried_state.setter
    def carried_state(self, state) -> None:
        """Set the state the next call of a stateful layer starts from ((D·L, B, S) per component; None: zeros)."""
        if state is None:
            self._carry = None
            return
        parts = self._from_public(state)
        batch = parts[0].shape[1] if parts and getattr(parts[0], "ndim", 0) == 3 else 0
        self._carry = tuple(p.copy() for p in self._check_state(state, batch, unbatched=False))

    # -- options for every runner ---------------------------------------------------------------------
    @property
    def detach_state(self) -> bool:
        """True: train as Elman (1990) did — every step reads the previous state as a constant input (the copy-back
        context units; PyTorch: ``cell(x_t, h.detach())``), so no error is propagated back through time. The
        forward pass is unchanged; the gradient is that of the one-step-truncated objective, not of the loss."""
        return self.runners[0][0].detach_state

    @detach_state.setter
    def detach_state(self, value: bool) -> None:
        value = check_bool("detach_state", value)
        for row in self.runners:
            for runner in row:
                runner.detach_state = value

    @property
    def record_state_grads(self) -> bool:
        """True: each backward records ‖∂L/∂h_t‖ per step (read it in ``trace(...).state_grad_norms``)."""
        return self.runners[0][0].record_state_grads

    @record_state_grads.setter
    def record_state_grads(self, value: bool) -> None:
        value = check_bool("record_state_grads", value)
        for row in self.runners:
            for runner in row:
                runner.record_state_grads = value

    # -- the last call, read-only ----------------------------------------------------------------------
    def _last_call(self) -> _Call:
        if self._last is None:
            raise UsageError(f"{type(self).__name__} has no recorded forward (forwards inside rnnkit.no_grad() "
                             "record nothing)")
        return self._last

    def trace(self, layer: int = 0, direction: int = 0) -> TraceView:
        """States and gate activations of one layer and direction of the last forward; see `TraceView`."""
        call = self._last_call()
        layer = check_int("layer", layer, -self.num_layers, self.num_layers - 1)  # negative: from the last
        direction = check_int("direction", direction, -self.num_directions, self.num_directions - 1)
        trace, cell = call.traces[layer][direction], self.runners[layer][direction].cell

        def public(a):  # (T, B, ·) sorted → (B, T, ·) in the caller's order, read-only
            a = in_caller_order(a.transpose(1, 0, 2), call.order, 0)
            return _read_only(a[0] if call.unbatched else a)

        states = dict(zip(cell.state_names, (public(s) for s in trace.states_after_each_step())))
        # copies: a backward on the compiled loop writes δa over the gate history (`Cell.sequence_gate_grads`)
        gates = {name: public(g.copy()) for name, g in trace.gate_activations(cell).items()}
        norms = None if trace.state_grad_norms is None else _read_only(trace.state_grad_norms)
        return TraceView(states, gates, norms)

    def state_at(self, k: int):
        """The full state (public form, (L, B, S) per component) after the first k steps of the last forward.
        Used by truncated BPTT with k2 > k1 to carry the state from inside a window. Unidirectional only."""
        if self.bidirectional:
            raise ConfigError("state_at needs a unidirectional layer: a backward direction has no state mid-sequence")
        call = self._last_call()
        k = check_int("k (steps into the last forward)", k, 0, call.traces[0][0].steps)
        parts = tuple(in_caller_order(np.stack([row[0].slot(c, k) for row in call.traces]), call.order, 1)
                      for c in range(len(self.state_sizes)))
        if call.unbatched:
            parts = tuple(p[:, 0] for p in parts)
        return self._to_public(tuple(p.copy() for p in parts))

    # -- backward -------------------------------------------------------------------------------------
    def backward(self, dy=None, dstate=None):
        """δ(output) and δ(final state) (either may be None) → (δx, δ(initial state)), shaped like the inputs and
        in their dtypes; δx alone when built with ``return_state=False``."""
        (call,) = self.saved_for_backward()
        given = dy
        dy, dparts = self._sorted_gradients(call, dy, dstate)
        own = dy is not None and not np.may_share_memory(dy, given)  # a copy: the backward may write over it
        if call.traces is None:  # an empty batch
            dx = np.zeros(call.out_shape[:2] + (self.input_size,), call.grad_dtypes[0])
            ds = tuple(np.zeros((self.num_directions * self.num_layers, 0, s), call.grad_dtypes[1])
                       for s in self.state_sizes)
            return (dx, self._to_public(ds)) if self.return_state else dx
        rows = self.num_directions * self.num_layers
        dstate0: list = [None] * rows
        for layer in reversed(range(self.num_layers)):
            if layer < self.num_layers - 1 and self.inter_dropout is not None:
                dy = self.inter_dropout.backward(dy)
            # the layer's output gradient is handed over, so that it is freed once the time loops have read it
            handed, dy = [dy], None
            dy, dstate0[layer * self.num_directions:(layer + 1) * self.num_directions] = \
                self._layer_backward(call, layer, handed, dparts, own)
            own = True  # the next layer's δ(output) is this one's δx
        dx = np.ascontiguousarray(in_caller_order(dy.transpose(1, 0, 2), call.order, 0))
        ds = tuple(in_caller_order(np.stack([d[k] for d in dstate0]), call.order, 1)
                   for k in range(len(self.state_sizes)))
        if call.unbatched:
            dx, ds = dx[0], tuple(d[:, 0] for d in ds)
        dx, ds = in_dtype_of(dx, call.grad_dtypes[0]), tuple(in_dtype_of(d, call.grad_dtypes[1]) for d in ds)
        return (dx, self._to_public(ds)) if self.return_state else dx

    def _layer_backward(self, call: _Call, layer: int, handed: list, dparts, own: bool) -> tuple[np.ndarray, tuple]:
        """(δ(input of ``layer``), δ(initial state) of each direction) from δ(output) (T, B, D·H), taken out of
        ``handed`` (its one item; ``own``: the layer's own array, not the caller's), and the final states' gradients
        ``dparts``. Only the time loops' jobs hold δ(output), so it is freed when they are done, before the weight
        sums and δx are made (its size less at the peak); where the sums go behind the loop, δx is written over it
        instead. The directions run at once where `run_directions` allows."""
        row, traces = self.runners[layer], call.traces[layer]
        if isinstance(traces[0], halves.HalvesTrace):  # one direction, its batch in two halves: δ(output) handed on
            (_, dfinal), = self._direction_grads(layer, None, dparts)
            dx, dstate = halves.backward(row[0], traces[0], handed, dfinal)
            return dx, (dstate,)
        whole = all(isinstance(runner, Recurrence) and runner.backward_runs_whole_sequence(trace)
                    for runner, trace in zip(row, traces))
        behind = row[0].sums_behind(traces[0]) if whole and len(row) == 1 else None
        if behind is not None:  # one direction: its weight sums go behind its loop, on the other core
            (part, dfinal), = self._direction_grads(layer, handed.pop(), dparts)
            dx, dstate = row[0].backward_behind(traces[0], behind, part, dfinal, dy_own=own)
            return dx, (dstate,)
        work = direction_work(row[0].cell, *traces[0].x.shape[:2])
        loops = run_directions(self._loop_jobs(layer, handed.pop(), dparts, traces), whole, work)
        dxps, dstates = zip(*loops)
        del loops
        dxs = run_directions([partial(runner.backward_weights, trace, dxp)
                              for runner, trace, dxp in zip(row, traces, dxps)], whole, work)
        return (dxs[0] if len(dxs) == 1 else dxs[0] + dxs[1]), dstates

    def _loop_jobs(self, layer: int, dy, dparts, traces) -> list:
        """Each direction's backward time loop, reading its half of ``dy`` (or None) and of ``dparts``."""
        return [partial(runner.backward_through_time, trace, part, dfinal)
                for runner, trace, (part, dfinal) in zip(self.runners[layer], traces,
                                                        self._direction_grads(layer, dy, dparts))]

    def _direction_grads(self, layer: int, dy, dparts) -> list[tuple]:
        """(δ(output), δ(final state)) of each direction of ``layer``: its half of ``dy`` (or None) and its rows of
        ``dparts`` (or None)."""
        width, grads = self.runners[layer][0].cell.output_size, []
        for direction in range(len(self.runners[layer])):
            index = layer * self.num_directions + direction
            part = None if dy is None else dy[:, :, direction * width:(direction + 1) * width]
            dfinal = None if dparts is None else tuple(None if d is None else d[index] for d in dparts)
            grads.append((part, dfinal))
        return grads

    def _sorted_gradients(self, call: _Call, dy, dstate):
        """δ(output) as time-major (T, B, D·H) and δ(final state) components as (D·L, B, S), rows sorted."""
        dparts = None
        if dstate is not None:
            batch = call.out_shape[0] if not call.unbatched else 1
            dparts = self._check_state(dstate, batch, call.unbatched, "gradient of the final state")
            dparts = tuple(None if d is None else in_sorted_order(d, call.order, 1) for d in dparts)
        if dy is not None:
            dy = check_float_grad(dy, "gradient of the output", self.dtype, call.out_shape)
            dy = in_sorted_order(dy[None] if call.unbatched else dy, call.order, 0)
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        return dy, dparts

    def _after_dtype_change(self, dtype) -> None:
        self._carry = self._last = None

    def extra_repr(self) -> str:
        opts = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            opts += ", bidirectional=True"
        if self.dropout:
            opts += f", dropout={self.dropout}"
        return opts
