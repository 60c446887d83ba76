"""`Recurrence`: the one time loop of rnnkit. It runs any `Cell` over a sequence batch in one direction.

It owns everything about time: the whole-sequence input projection before the loop, the state history, ragged
batches, reversal, and the weight-gradient GEMMs after the backward loop (delegated to the cell's
``accumulate``). Inside the loop there is only the cell's step: the recurrent matmul and pointwise math.

Calls. ``forward`` returns the output, the final state and a `Trace` — the input, the state history and the
cell's workspace of this call — which the caller hands back to ``backward``. The runner itself keeps nothing
between calls, so one runner (and one cell) can serve any number of interleaved calls. Under
``rnnkit.no_grad()`` the forward returns no trace, and the Python loop keeps no history it will not need (a
one-step workspace, two slots for the state components that are not the output); a whole-sequence compiled loop
writes each step's arrays into (T, …) histories, and the arrays only a backward writes are left empty
(`rnnkit.recurrent.cell.for_backward`).

Layout. Arrays are time-major and the batch is sorted by decreasing length, so at step t the rows still inside
their sequence are the prefix ``[:n_t]`` (PyTorch's packed-sequence idea). Rows past their end are not computed:
their state is carried unchanged, their output is zero, and their gradients are exactly zero.

State history. ``S_k`` of shape (T+1, B, S_k) holds every state component. Forward direction: step t reads
slot t and writes slot t+1, so ``S[0]`` is the initial state and ``S[T]`` the final one. Reverse direction: step
t runs from T−1 down to 0, reads slot t+1 and writes slot t. Because a reversed row of length L is "not started"
for t ≥ L and the carry holds its initial state there, the reverse direction consumes only the valid part of
each sequence, and padding stays at the end without any flipping of the data.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..module import is_grad_enabled
from .cell import Cell, Workspace
from .noise import Noise, loop_zoneout, mix_zoneout, split_zoneout


@dataclass
class Trace:
    """What one forward call leaves for its backward (time-major, rows sorted by decreasing length).

    ``x`` (T, B, I) as the cell read it (⊙ m_x under input dropout); ``states`` one (T+1, B, S_k) history per state
    component (slots as in the module notes); ``counts`` (T,) active rows per step or None; ``ws`` the cell's
    workspace; ``reverse`` the direction; ``noise`` the regularisers' masks (`rnnkit.recurrent.noise`).
    ``state_grad_norms`` (T,): filled by a backward with ``record_state_grads``: ‖∂L/∂h_t‖ averaged over the rows
    still inside their sequence.
    """

    x: np.ndarray
    states: list[np.ndarray]
    counts: np.ndarray | None
    ws: Workspace
    reverse: bool
    state_grad_norms: np.ndarray | None = None
    noise: Noise | None = None
    proposed: list[np.ndarray] | None = None  # zoneout: (T, B, S_k) per component, s̃_t as the cell computed it
    zoneout: tuple | None = None  # zoneout's arrays for the compiled loop (`noise.loop_zoneout`), when it ran

    @property
    def steps(self) -> int:
        """T, the time steps of the call."""
        return self.x.shape[0]

    def states_after_each_step(self) -> list[np.ndarray]:
        """Per state component, (T, B, S_k): the state each step t wrote (time order in both directions)."""
        return after_each_step(self.states, self.reverse)

    def gate_activations(self, cell: Cell) -> dict[str, np.ndarray]:
        """The activated gates of this call by name, each (T, B, H) (`Cell.gate_activations`; ``cell`` the one
        that made it)."""
        return cell.gate_activations(self.ws)

    def slot(self, component: int, k: int) -> np.ndarray:
        """State component ``component`` in slot k of its history, (B, S_k) (slots as in the module notes)."""
        return self.states[component][k]

    def states_before_each_step(self) -> list[np.ndarray]:
        """Per state component, (T, B, S_k): the state each step t read."""
        return before_each_step(self.states, self.reverse)


class Recurrence:
    """Run ``cell`` over time-major inputs; one layer, one direction.

    forward(x, state0, counts, noise, project_here): x (T, B, I) (C-contiguous, or the transposed view of a C-contiguous
        batch-first array, laid out time-major here), state0 tuple of (B, S_k), counts (T,) active rows per step or
        None, noise the call's regularisation masks or None, project_here whether this core writes the projection
        itself before its loop (a half of a batch) → y (T, B, H_out), final state tuple of (B, S_k), trace (None
        under no_grad)
    backward(trace, dy, dfinal): dy (T, B, H_out) or None, dfinal tuple of (B, S_k) or None
        → dx (T, B, I), dstate0 tuple of (B, S_k)

    Options: ``detach_state`` — Elman's (1990) training: each step reads the previous state as a constant input
    (the copy-back context units; PyTorch: ``cell(x_t, h.detach())``), so no error flows back through time; the
    forward is unchanged. ``record_state_grads`` — backward records ‖∂L/∂h_t‖ per step in the trace.
    """

    def __init__(self, cell: Cell, reverse: bool = False):
        self.cell = cell
        self.reverse = reverse
        self.detach_state = False
        self.record_state_grads = False
        #: set by the first training call: later calls ask nothing of `rnnkit.kernels.precompile` (the kind of their
        #: backward, `backward_runs_as_team`, costs 10 – 17 µs; the compile ahead is for a first use)
        self.compiled_ahead = False

    def _slots(self, t: int) -> tuple[int, int]:
        """(read slot, write slot) of step t."""
        return (t + 1, t) if self.reverse else (t, t + 1)

    def _order(self, steps: int):
        return range(steps - 1, -1, -1) if self.reverse else range(steps)

    @staticmethod
    def _slot_view(states: list[np.ndarray], i: int) -> tuple[np.ndarray, ...]:
        """Slot i's state components as (B, S_k) views. A component kept in two slots only (inference) alternates
        between them."""
        return tuple(s[i % s.shape[0]] for s in states)

    @classmethod
    def _slot_views(cls, states: list[np.ndarray], steps: int) -> list[tuple[np.ndarray, ...]]:
        """`_slot_view` of each slot 0..T (built once, not per step)."""
        return [cls._slot_view(states, i) for i in range(steps + 1)]

    def _state_history(self, state0, steps: int, batch: int, keep: bool) -> list[np.ndarray]:
        """(T+1, B, S_k) per component; without ``keep``, two slots for all but the output component."""
        dtype, start = self.cell.dtype, steps if self.reverse else 0
        states = []
        for k, (size, s0) in enumerate(zip(self.cell.state_sizes, state0)):
            s = np.empty((steps + 1 if keep or k == 0 else 2, batch, size), dtype)
            s[start % s.shape[0]] = s0
            states.append(s)
        return states

    def runs_whole_sequence(self, batch: int) -> bool:
        """True where a forward call runs the whole time loop in one compiled call: the cell can (every regulariser
        runs inside it: the masks are the cell's, zoneout the loop skeleton's)."""
        return self.cell.runs_whole_sequence(batch)

    def backward_runs_whole_sequence(self, trace: Trace) -> bool:
        """True where `backward` of ``trace`` runs the whole backward loop in one compiled call."""
        return trace.ws.kernels is not None and self.runs_whole_sequence(trace.x.shape[1]) \
            and not self.record_state_grads

    def forward(self, x: np.ndarray, state0: tuple[np.ndarray, ...], counts: np.ndarray | None = None,
                noise: Noise | None = None, project_here: bool = False):
        """See the class notes; ``project_here``: the cores are taken by this call and its twin (the halves of a
        batch, `rnnkit.recurrent.halves`), so the projection is written by this core before its loop, as a
        pipeline's writer would (`Cell.ahead_projection`'s ``here``)."""
        cell = self.cell
        steps, batch, _ = x.shape
        keep = is_grad_enabled()
        whole = self.runs_whole_sequence(batch)
        backward_team = sums_later = None  # what of the backward to compile ahead, asked before a pipeline takes
        if keep and whole and not self.compiled_ahead:  # the cores
            backward_team, sums_later = self.backward_runs_as_team(steps, batch), self.sums_would_go_behind(x)
            self.compiled_ahead = True
        if noise is not None and noise.input_mask is not None:
            x = x * noise.input_mask  # x_t ⊙ m_x: whole-sequence work
        ahead = cell.ahead_projection(x, batch, self.reverse, here=project_here) if whole else None
        x = np.ascontiguousarray(x) if ahead is None else ahead.x  # the writer lays out a transposed view itself
        rows = x.reshape(steps * batch, -1)
        with ahead or nullcontext():  # its writer projects on the other core while this one prepares the loop
            ws = cell.allocate(steps if keep or whole else 1, batch, ragged=keep and counts is not None)
            if ahead is not None:
                ahead.leave_in(ws)
            if noise is not None and (noise.state_mask is not None or noise.weight_mask is not None):
                cell.use_masks(ws, noise.state_mask, noise.weight_mask)
            xp = (cell.project(rows, ws) if ahead is None else ahead.out).reshape(steps, batch, -1)
            states = self._state_history(state0, steps, batch, keep or whole)
            sums_ahead = partial(self._sums_entry_ahead, x, states) if sums_later else None
            proposed, zoneout = self._loop(ws, xp, states, counts, keep or whole, noise, ahead, backward_team,
                                           sums_ahead)
        for name in cell.forward_only:  # nothing reads them again: dropped before the caller takes the output
            setattr(ws, name, None)
        out = states[0][:-1] if self.reverse else states[0][1:]
        if counts is not None and counts[-1] < batch:
            out = out.copy()
            for t, n in enumerate(counts):
                out[t, n:] = 0
        final = self._slot_view(states, 0 if self.reverse else steps)
        trace = Trace(x, states, counts, ws, self.reverse, noise=noise, proposed=proposed,
                      zoneout=zoneout) if keep else None
        return out, final, trace

    def _loop(self, ws: Workspace, xp: np.ndarray, states: list[np.ndarray], counts, full: bool, noise: Noise | None,
              ahead, backward_team: bool | None = None, sums_ahead=None) -> tuple[list[np.ndarray] | None,
                                                                                   tuple | None]:
        """The forward time loop, compiled (`runs_whole_sequence`, with ``ahead`` writing ``xp`` meanwhile where it
        is not None; its backward loop compiled ahead, for a team where ``backward_team``, unless it is None, and the
        sums behind it too where ``sums_ahead``: `Workspace.sums_ahead`) or in Python; (s̃_t per component under
        zoneout else None, zoneout's arrays of the compiled loop or None)."""
        cell, steps, batch = self.cell, xp.shape[0], xp.shape[1]
        rates = None if noise is None else noise.zoneout
        if self.runs_whole_sequence(batch):
            kept = is_grad_enabled()  # else no trace: nothing reads s̃_t's history, one slot serves every step
            zoneout = loop_zoneout(rates, steps if kept else 1, batch, cell.state_sizes, cell.dtype, counts is not None)
            ws.backward_team, ws.sums_ahead = backward_team, sums_ahead
            cell.sequence_forward(ws, xp, states, _active_rows(counts, steps, batch), self.reverse, zoneout, ahead)
            ws.sums_ahead = None  # it holds the call's input
            if rates is None or not kept:
                return None, zoneout
            after = after_each_step(states, self.reverse)  # s̃_t; a component without zoneout: s_t itself
            return [p if p.size else a for p, a in zip(zoneout[1], after)], zoneout
        if rates is not None:
            return self._zoneout_loop(ws, xp, states, counts, full, noise), None
        self._forward_loop(ws, xp, states, counts, full)
        return None, None

    def _forward_loop(self, ws: Workspace, xp: np.ndarray, states: list[np.ndarray], counts, full: bool) -> None:
        """The time loop in Python: the cell's step for the rows still inside their sequence."""
        cell = self.cell
        steps, batch = xp.shape[:2]
        slots = self._slot_views(states, steps)
        for t in self._order(steps):
            read, write = self._slots(t)
            n = batch if counts is None else counts[t]
            slot_t = t if full else 0
            if n == batch:
                cell.step(ws, slot_t, xp[t], slots[read], slots[write])
            else:  # rows outside their sequence carry their state unchanged
                cell.step(ws, slot_t, xp[t, :n], _rows(slots[read], n), _rows(slots[write], n))
                for r, w in zip(slots[read], slots[write]):
                    w[n:] = r[n:]

    def _zoneout_loop(self, ws: Workspace, xp: np.ndarray, states: list[np.ndarray], counts, full: bool,
                      noise: Noise) -> list[np.ndarray]:
        """The time loop with zoneout: the cell writes s̃_t into ``proposed`` (returned, (T, B, S_k) per
        component), and s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ s̃_t (d_t the rate z in evaluation) for the components
        with a rate; rows outside their sequence carry their state unchanged."""
        kernels = getattr(ws, "kernels", None)
        cell = self.cell
        steps, batch = xp.shape[:2]
        slots = self._slot_views(states, steps)
        proposed = [np.zeros((steps if full else 1, batch, size), cell.dtype) for size in cell.state_sizes]
        components = range(len(proposed))
        for t in self._order(steps):
            read, write = self._slots(t)
            n = batch if counts is None else counts[t]
            slot_t = t if full else 0
            tilde = tuple(p[slot_t, :n] for p in proposed)
            prev = slots[read] if n == batch else _rows(slots[read], n)
            cell.step(ws, slot_t, xp[t, :n], prev, tilde)
            for k, r, w, s in zip(components, slots[read], slots[write], tilde):
                keep = noise.keep(k, t, n)
                if keep is None:
                    w[:n] = s
                else:
                    mix_zoneout(kernels, r[:n], s, keep, w[:n])
                if n < batch:
                    w[n:] = r[n:]
        return proposed

    def backward(self, trace: Trace, dy: np.ndarray | None, dfinal: tuple[np.ndarray, ...] | None = None):
        """(δx, δ(initial state)) from δ(output) ``dy`` (T, B, H) and δ(final state): `backward_through_time`,
        then `backward_weights`."""
        dxp, dstate = self.backward_through_time(trace, dy, dfinal)
        return self.backward_weights(trace, dxp), dstate

    def backward_through_time(self, trace: Trace, dy: np.ndarray | None,
                              dfinal: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, tuple]:
        """The time loop backward: (δ of every step's gate pre-activations (T, B, G), δ(initial state)). ``dy``
        is not read after it, so a caller can free it before the weight sums (`backward_weights`)."""
        cell, counts = self.cell, trace.counts
        steps, batch, _ = trace.x.shape
        dstate = self._final_state_grads(batch, dfinal)
        if self.backward_runs_whole_sequence(trace):
            dxp = cell.sequence_gate_grads(trace.ws, steps, batch)  # the loop zeroes its padded rows
            self._compiled_backward_loop(trace, dy, dstate, dxp)
        else:  # padded rows, which no step writes, must hold zeros for the weight sums
            dxp = (np.zeros if counts is not None else np.empty)((steps, batch, cell.gate_width), cell.dtype)
            trace.state_grad_norms = self._backward_loop(trace, dy, dstate, dxp)
        return dxp, tuple(dstate)

    def backward_runs_as_team(self, steps: int, batch: int) -> bool:
        """Whether the compiled backward loop of a training call made now would run as a part of a team or a
        pipeline: its sums behind it (`sums_go_behind`) or its units split (`Cell.team_parts`), the cores free and
        2 BLAS threads allowed (inside a pair of directions or the halves of a batch they are held: their loops
        run alone)."""
        from ..kernels import parallel

        if not parallel.cores_free() or parallel.blas_threads() < 2:
            return False
        return self.sums_go_behind(steps, batch) or self.cell.team_parts(batch, "backward") > 1

    def sums_go_behind(self, steps: int, batch: int) -> bool:
        """Whether the weight sums of a backward over ``steps`` × ``batch`` go behind its loop where the cores are
        free: the cell makes them there (`Cell.makes_sums_behind`) and the policy takes it
        (`rnnkit.kernels.parallel.behind_pays`)."""
        from ..kernels import behind, parallel

        cell = self.cell
        return cell.makes_sums_behind() and parallel.behind_pays(cell.dtype, behind.chunk_count(steps, batch),
                                                                 cell.loop_work(1, batch))

    def sums_would_go_behind(self, x: np.ndarray) -> bool:
        """Whether a backward of a training call over ``x`` (T, B, I) made now would make its sums behind its loop
        (`sums_behind`; its loop compiled: the caller's to know)."""
        from ..kernels import parallel

        return parallel.cores_free() and self.sums_go_behind(*x.shape[:2])

    def _sums_entry_ahead(self, x: np.ndarray, states: list[np.ndarray], ws: Workspace) -> tuple:
        """The compiled entry of the sums that the backward of the forward call over ``x`` with ``states`` and
        ``ws`` will make behind its loop, and arguments of its types (`rnnkit.kernels.behind.Behind.entry_ahead`),
        from a copy of ``ws`` (`Cell.sums_behind` marks the gates as written over)."""
        rows = x.shape[0] * x.shape[1]
        previous = before_each_step(states, self.reverse)[0].reshape(rows, -1)
        return self.cell.sums_behind(copy.copy(ws), x, previous, self.reverse).entry_ahead()

    def sums_behind(self, trace: Trace):
        """The `rnnkit.kernels.behind.Behind` with which `backward_behind` makes the sums of `backward_weights`
        behind the loop of ``trace``'s backward, on the other core: where that loop is compiled, the cell makes its
        sums there (`Cell.sums_behind`) and the policy (`rnnkit.kernels.parallel.behind_pays`) and the cores allow;
        else None."""
        if not self.backward_runs_whole_sequence(trace) or not self.sums_would_go_behind(trace.x):
            return None
        return self.cell.sums_behind(trace.ws, trace.x, self._previous(trace)[0], self.reverse)

    def backward_behind(self, trace: Trace, behind, dy: np.ndarray | None, dfinal: tuple[np.ndarray, ...] | None = None,
                        dy_own: bool = False) -> tuple[np.ndarray, tuple]:
        """`backward` with the loop on this core and the sums of ``behind`` (`sums_behind`) made behind it;
        ``dy_own``: ``dy`` is the layer's own array (not its caller's) and not read after this, so δx may be written
        over it (`Behind.write_dx_over`)."""
        if dy_own and dy is not None:
            behind.write_dx_over(dy)
        dstate = self._final_state_grads(trace.x.shape[1], dfinal)
        dxp = behind.dxp
        with behind:
            behind.run_loop(partial(self._compiled_backward_loop, trace, dy, dstate, dxp))
        rows = dxp.shape[0] * dxp.shape[1]
        dx = self.cell.accumulate(trace.ws, trace.x.reshape(rows, -1), dxp.reshape(rows, -1), self._previous(trace),
                                  self._new(trace), behind=behind)
        return self._input_grads(trace, dx), tuple(dstate)

    @staticmethod
    def _previous(trace: Trace) -> tuple[np.ndarray, ...]:
        """Each state component before each step, (T·B, S_k): what the weight sums read."""
        rows = trace.x.shape[0] * trace.x.shape[1]
        return tuple(s.reshape(rows, -1) for s in trace.states_before_each_step())

    @staticmethod
    def _new(trace: Trace) -> tuple[np.ndarray, ...]:
        """Each state component each step wrote (zoneout's proposals where it ran), (T·B, S_k)."""
        rows = trace.x.shape[0] * trace.x.shape[1]
        return tuple(s.reshape(rows, -1) for s in trace.proposed or trace.states_after_each_step())

    def _final_state_grads(self, batch: int, dfinal) -> list[np.ndarray]:
        """δ(final state) per component (B, S_k), zeros where ``dfinal`` has none: what the backward loop starts
        from."""
        dstate = [np.zeros((batch, size), self.cell.dtype) for size in self.cell.state_sizes]
        for d, df in zip(dstate, dfinal or ()):
            if df is not None:
                d += df
        return dstate

    def _compiled_backward_loop(self, trace: Trace, dy, dstate: list[np.ndarray], dxp: np.ndarray,
                                team: tuple | None = None) -> None:
        """The cell's compiled backward loop over ``trace`` (`Cell.sequence_backward`), ``team`` as there."""
        steps, batch, _ = trace.x.shape
        dy = np.zeros((steps, batch, self.cell.output_size), self.cell.dtype) if dy is None else dy
        self.cell.sequence_backward(trace.ws, dy, dstate, trace.states, _active_rows(trace.counts, steps, batch),
                                    self.reverse, self.detach_state, dxp, trace.zoneout, team)

    def backward_weights(self, trace: Trace, dxp: np.ndarray, cell: Cell | None = None) -> np.ndarray:
        """Every parameter's gradient summed over the sequence (whole-sequence GEMMs, `Cell.accumulate`) and
        δx (T, B, I), from the gate gradients ``dxp`` of `backward_through_time`; the sums go to the gradients of
        ``cell``'s parameters (by default this runner's cell; a batch's second half gives a twin with gradients of
        its own, `rnnkit.recurrent.halves`)."""
        rows = trace.x.shape[0] * trace.x.shape[1]
        cell = self.cell if cell is None else cell
        dx = cell.accumulate(trace.ws, trace.x.reshape(rows, -1), dxp.reshape(rows, -1), self._previous(trace),
                             self._new(trace))
        return self._input_grads(trace, dx)

    @staticmethod
    def _input_grads(trace: Trace, dx: np.ndarray) -> np.ndarray:
        """δx (T, B, I) from δX (T·B, I) after the weight sums (through the input dropout's mask); the gate history,
        where δa went over it, is dropped from the workspace."""
        if trace.ws.gates_overwritten:  # δa over the gate history: nothing reads it again (`gate_activations`
            trace.ws.gates = None       # refuses), so it is not kept with the trace for introspection
        dx = dx.reshape(*trace.x.shape[:2], -1)
        if trace.noise is not None and trace.noise.input_mask is not None:
            dx *= trace.noise.input_mask  # δx_t ⊙ m_x
        return dx

    @staticmethod
    def _split_zoneout(trace: Trace, t: int, dstate: list[np.ndarray], n: int) -> list:
        """Zoneout's backward at step t: δs̃_t = (1 − d_t) ⊙ δs_t in place; returns d_t ⊙ δs_t per component (None
        without a rate), which reaches s_{t−1} around the cell."""
        if trace.proposed is None:
            return []
        kernels, noise = getattr(trace.ws, "kernels", None), trace.noise
        keeps = [noise.keep(k, t, n) for k in range(len(dstate))]
        return [None if keep is None else split_zoneout(kernels, d[:n], keep) for d, keep in zip(dstate, keeps)]

    def _backward_loop(self, trace: Trace, dy, dstate: list[np.ndarray], dxp: np.ndarray) -> np.ndarray | None:
        """The backward time loop in Python; returns ‖∂L/∂h_t‖ per step if ``record_state_grads``."""
        cell, counts = self.cell, trace.counts
        steps, batch = dxp.shape[:2]
        slots, whole_batch = self._slot_views(trace.states, steps), tuple(dstate)
        norms = np.zeros(steps) if self.record_state_grads else None
        for t in reversed(self._order(steps)):
            read, write = self._slots(t)
            n = batch if counts is None else counts[t]
            if dy is not None:
                dstate[0][:n] += dy[t, :n]
            if norms is not None:  # ‖∂L/∂h_t‖ averaged over the rows still inside their sequence
                norms[t] = np.linalg.norm(dstate[0][:n], axis=1).mean()
            new = slots[write] if trace.proposed is None else tuple(p[t] for p in trace.proposed)
            direct = self._split_zoneout(trace, t, dstate, n)
            if n == batch:
                cell.step_backward(trace.ws, t, whole_batch, slots[read], new, dxp[t])
            else:
                cell.step_backward(trace.ws, t, _rows(dstate, n), _rows(slots[read], n), _rows(new, n), dxp[t, :n])
            for d, dd in zip(dstate, direct):
                if dd is not None:
                    d[:n] += dd  # δs_{t−1} += d_t ⊙ δs_t, the path around the cell
            if self.detach_state:  # the gradient with respect to the previous state stops here
                for d in dstate:
                    d[:n] = 0
        return norms


def before_each_step(states: list[np.ndarray], reverse: bool) -> list[np.ndarray]:
    """Per state component, the (T, B, S_k) view of ``states`` (T+1 slots) that each step t read, in time order."""
    return [s[1:] if reverse else s[:-1] for s in states]


def after_each_step(states: list[np.ndarray], reverse: bool) -> list[np.ndarray]:
    """Per state component, the (T, B, S_k) view of ``states`` (T+1 slots) that each step t wrote, in time order."""
    return [s[:-1] if reverse else s[1:] for s in states]


def _active_rows(counts: np.ndarray | None, steps: int, batch: int) -> np.ndarray:
    """Rows still inside their sequence at each step, as an int64 array (all rows when not ragged)."""
    return np.full(steps, batch, np.int64) if counts is None else np.asarray(counts, np.int64)


def _rows(parts, n: int) -> tuple[np.ndarray, ...]:
    """The first n rows of each array (the rows still inside their sequence)."""
    return tuple(p[:n] for p in parts)
