"""The two halves of a batch at once, one on each core: a layer's rows as two independent recurrences.

Row b's state at step t depends on row b alone, so the rows [0, h) and [h, B) of a batch are two recurrences with
nothing to say to each other. Where a one-direction layer's forward would run as a team (`rnnkit.kernels.team`:
each step's product split by units between the cores, which meet at a barrier and read each other's half of h at
every step) and its input is too narrow for a pipeline (`rnnkit.kernels.ahead`), its call runs as two halves of
the batch instead (`halves_pay`): each half a whole runner call (`Recurrence.forward`: its projection, then its
compiled loop on one core with a one-thread BLAS), the two at once (`rnnkit.kernels.parallel.at_once`, as the
two directions of a bidirectional layer), and they never meet. Its backward runs each half's loop and then its
weight sums (`Recurrence.backward_weights`) on one core, the two halves at once the same way; the second half sums
into gradients of its own, added to the parameters' when both are done (`_twin_with_own_grads`). The sums of each
half in turn on both cores once both loops were done, as the backward made them before, were two sets of GEMMs of
half the depth, each split between two threads: 59% of the machine's peak inside the layer; a core's own sums beside
the other's took 2.5 – 3.2 ms less of a training call (below).

Each row's arithmetic in the loops is the one of the whole batch's call, and each half's projection sums over the
input in one order, as the whole batch's does: OpenBLAS's GEMM for inputs up to 383 wide, and on the panels route
the panels for wider ones (`rnnkit.kernels.whole`). So the outputs and the final state are the same to the bit, at
any width on that route and up to 383 off it. δx, δ(initial state) and the weight gradients are equal within
rounding (each half's weight sums are made apart, then added, not in one GEMM or behind the loop). The choice
depends on the shapes, the policy and the threads allowed, never on how far apart the cores are at the moment
(`rnnkit.kernels.distance`), so a resumed run computes what the uninterrupted one did. Each half's projection is
written by the half's own thread before its loop (`rnnkit.recurrent.cell.Cell.ahead_projection`'s ``here``), not by
a pipeline's partner: ``RNNKIT_PIPELINES`` does not apply to it. Where `at_once` cannot take the cores (another pair
holds them, one BLAS thread), the halves run one after the other, and each half's writer may then take the other
core as a pipeline's would.

Measured on the project's 2-core AMD EPYC (float32, T = 100, one process, the layer's call with halves off and on in
turns, medians of 9 calls, ms, training / inference): LSTM input 64, H = 256: B = 32 (the char-LM race's layer) 41.7
/ 15.4 → 38.5 / 12.1, B = 16 22.0 / 8.5 → 19.1 / 6.2, B = 64 82.3 / 29.8 → 77.5 / 24.2; input 128, H = 512, B = 32
162.9 / 58.4 → 134.4 / 43.4; GRU input 64, H = 256, B = 32 37.2 / 13.6 → 34.6 / 9.7; RNN 12.4 / 5.2 → 11.6 / 3.8;
float64 LSTM B = 32 146.4 / 70.8 → 113.6 / 50.8 (medians of 5, each half's projection then on NumPy's GEMM). In
`rnnkit bench --input-size 64` inference took 8 – 37% less time, training moved within the runs' spread
(`docs/performance.md`). Slower where the input is as wide as the state: there the pipeline keeps both cores busy
already (LSTM B = 16, H = 256 inference 9.5 → 10.4; `docs/performance-history.md`). The backward with each half's
sums on its own core, against the sums in turn on both cores (backward only, medians of 45 calls in turns, one
process, ms): LSTM input 64, H = 256, B = 32 28.8 → 25.8, B = 16 18.9 → 16.4, B = 64 56.4 → 53.6; input 128, H = 512,
B = 32 92.9 → 90.2; GRU input 64, H = 256, B = 32 25.9 → 22.7; RNN 8.5 → 8.2.

``RNNKIT_BATCH_HALVES`` (read at import; `use_halves`, `using_halves`): ``auto`` (`halves_pay`), ``always`` (every
layer whose call can run as halves: the tests' setting) or ``never``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..kernels import parallel
from ..module import Parameter, ParameterOwner, is_grad_enabled
from .runner import Recurrence, Trace

#: the policy of `halves_pay`
HALVES = parallel.Policy("batch halves", "RNNKIT_BATCH_HALVES")
use_halves, using_halves = HALVES.use, HALVES.using


def _modes(cell) -> tuple[str, ...]:
    """The calls in which ``cell``'s layers take halves under ``auto`` (`Cell.batch_halves`, declared on its class)."""
    return type(cell).__dict__.get("batch_halves", ())


def can_split(runner, batch: int, counts) -> bool:
    """Whether a call of ``runner`` over ``batch`` rows can run as two halves: a `Recurrence` whose forward and
    backward run their whole loops in one compiled call each (no Python per step to hold the GIL) and whose cell
    can (`Cell.batch_halves`: its compiled backward loop adds to no parameter's gradient, its sums come after it),
    two rows or more, all of them inside their sequence to the end (a ragged batch's halves would not be even)."""
    return (isinstance(runner, Recurrence) and batch >= 2 and counts is None and not runner.record_state_grads
            and bool(_modes(runner.cell)) and runner.runs_whole_sequence(batch))


def halves_pay(runner, batch: int, inputs: int, counts) -> bool:
    """Whether a one-direction call of ``runner`` over ``batch`` rows of ``inputs`` features runs as two halves of
    its batch (`can_split`): always or never by the policy; under ``auto`` in the calls its cell names
    (`Cell.batch_halves`: inference, where no backward follows, or training), where its forward would otherwise run
    as a team (`rnnkit.recurrent.cell.Cell.team_parts`), not as a pipeline for the width of its input (narrower than
    `rnnkit.kernels.parallel.PIPELINE_INPUTS` of the state; the moment's distance of the cores is not asked), both
    cores are free and two BLAS threads allowed (measured: the module notes)."""
    if HALVES.choice == "never" or not can_split(runner, batch, counts):
        return False
    if HALVES.choice == "always":
        return True
    cell = runner.cell
    low, high = parallel.PIPELINE_INPUTS
    return (low * cell.state_sizes[0] > high * inputs and ("training" if is_grad_enabled() else "inference")
            in _modes(cell) and cell.team_parts(batch, "forward") == 2 and parallel.cores_free()
            and parallel.blas_threads() >= 2)


@dataclass
class HalvesTrace:
    """The `Trace`s of a call's two halves (rows [0, h) and [h, B)), read as one where the layer shows a call
    (`rnnkit.recurrent.layer.RecurrentLayer.trace`, ``state_at``)."""

    halves: tuple[Trace, Trace]

    @property
    def steps(self) -> int:
        """T, the time steps of the call."""
        return self.halves[0].steps

    def states_after_each_step(self) -> list[np.ndarray]:
        """`Trace.states_after_each_step` of the whole batch (copies)."""
        parts = zip(*(half.states_after_each_step() for half in self.halves))
        return [np.concatenate(both, axis=1) for both in parts]

    def gate_activations(self, cell) -> dict[str, np.ndarray]:
        """`Trace.gate_activations` of the whole batch (copies)."""
        first, second = (half.gate_activations(cell) for half in self.halves)
        return {name: np.concatenate((first[name], second[name]), axis=1) for name in first}

    def slot(self, component: int, k: int) -> np.ndarray:
        """`Trace.slot` of the whole batch."""
        return np.concatenate([half.slot(component, k) for half in self.halves])

    @property
    def state_grad_norms(self) -> np.ndarray | None:
        """‖∂L/∂h_t‖ averaged over the rows, where both halves' backwards recorded it (the halves' means weighted
        by their rows)."""
        norms = [half.state_grad_norms for half in self.halves]
        if any(n is None for n in norms):
            return None
        rows = [half.x.shape[1] for half in self.halves]
        return (rows[0] * norms[0] + rows[1] * norms[1]) / sum(rows)


def _row_halves(batch: int) -> tuple[slice, slice]:
    """The two halves' rows: [0, h) and [h, B), h = ⌈B / 2⌉."""
    h = (batch + 1) // 2
    return slice(0, h), slice(h, batch)


def forward(runner: Recurrence, x: np.ndarray, state0: tuple[np.ndarray, ...], noise=None):
    """`Recurrence.forward` of ``runner`` over time-major ``x`` (T, B, I) as two halves of the batch at once:
    (output (T, B, H_out), final state, `HalvesTrace` or None under no_grad)."""
    def half(rows: slice):
        noise_rows = None if noise is None else noise.rows(np.arange(rows.start, rows.stop))
        return runner.forward(x[:, rows], tuple(s[rows] for s in state0), None, noise_rows, project_here=True)
    first, second = parallel.at_once(*(partial(half, rows) for rows in _row_halves(x.shape[1])))
    out = np.concatenate((first[0], second[0]), axis=1)
    final = tuple(np.concatenate(both) for both in zip(first[1], second[1]))
    trace = None if first[2] is None else HalvesTrace((first[2], second[2]))
    return out, final, trace


def backward(runner: Recurrence, trace: HalvesTrace, handed: list,
             dfinal: tuple[np.ndarray | None, ...] | None) -> tuple[np.ndarray, tuple]:
    """`Recurrence.backward` of a call made by `forward`: each half's time loop and then its weight sums on one core,
    the two halves at once; (δx (T, B, I), δ(initial state)). The second half sums into a twin of the cell whose
    gradients are its own (`_twin_with_own_grads`), added to the cell's when both are done. δ(output) (T, B, H_out)
    or None is taken out of ``handed`` (its one item) and split into each half's own copy, which only that half's
    loop holds: each is freed when its loop is done, before its weight sums, as
    `rnnkit.recurrent.layer.RecurrentLayer._layer_backward` frees δ(output)."""
    halves = _row_halves(sum(half.x.shape[1] for half in trace.halves))
    dy = handed.pop()
    parts = [None if dy is None else np.ascontiguousarray(dy[:, rows]) for rows in halves]
    del dy
    cells = (runner.cell, _twin_with_own_grads(runner.cell))

    def loop(k: int):
        d, parts[k] = parts[k], None
        df = None if dfinal is None else tuple(None if f is None else f[halves[k]] for f in dfinal)
        return runner.backward_through_time(trace.halves[k], d, df)

    def half(k: int):
        dxp, dstate = loop(k)
        return runner.backward_weights(trace.halves[k], dxp, cells[k]), dstate
    done = parallel.at_once(partial(half, 0), partial(half, 1))
    for mine, twins in zip(cells[0].parameters(), cells[1].parameters()):
        mine.grad += twins.grad
    dstate = tuple(np.concatenate(both) for both in zip(done[0][1], done[1][1]))
    return np.concatenate((done[0][0], done[1][0]), axis=1), dstate


def _twin_with_own_grads(cell):
    """A shallow copy of ``cell`` whose parameters share their arrays with the cell's (``data``, read by the sums)
    but hold gradients of their own, zero: the second half's weight sums add into these while the first half's add
    into the cell's, on the other core. Every parameter of a cell that takes halves in training is one of its
    attributes (`rnnkit.module.ParameterOwner`), so the copy's ``accumulate`` reaches only the twins."""
    twin = copy.copy(cell)
    ParameterOwner.__init__(twin)  # a registry of its own, empty: the copy's attributes below fill it
    for name, parameter in cell.named_parameters():
        setattr(twin, name, Parameter(parameter.data))
    return twin
