"""`Recurrence`: the one time loop of rnnkit. It runs any `Cell` over a sequence batch in one direction.

It owns everything about time: the whole-sequence input projection before the loop, the state history, ragged
batches, reversal, and the weight-gradient GEMMs after the backward loop (delegated to the cell's
``accumulate``). Inside the loop there is only the cell's step: the recurrent matmul and pointwise math.

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

import numpy as np

from .cell import Cell


class Recurrence:
    """Run ``cell`` over time-major inputs; one layer, one direction.

    forward(x, state0, counts): x (T, B, I), state0 tuple of (B, S_k), counts (T,) active rows per step or None
        → y (T, B, H_out), final state tuple of (B, S_k)
    backward(dy, dfinal): dy (T, B, H_out) or None, dfinal tuple of (B, S_k) or None
        → dx (T, B, I), dstate0 tuple of (B, S_k)
    """

    def __init__(self, cell: Cell, reverse: bool = False):
        self.cell = cell
        self.reverse = reverse
        self._x = None
        self._states: list[np.ndarray] = []
        self._counts = None
        self.track_state_grads = False  # diagnostics: record ‖∂L/∂h_t‖ per step in backward
        # Elman's (1990) training: each step reads the previous state as a constant input (the copy-back context
        # units; PyTorch: cell(x_t, h.detach())), so no error flows back through time. Forward is unchanged.
        self.detach_state = False
        self.state_grad_norms: np.ndarray | None = None

    def _slots(self, t: int) -> tuple[int, int]:
        """(read slot, write slot) of step t."""
        return (t + 1, t) if self.reverse else (t, t + 1)

    def _order(self, steps: int):
        return range(steps - 1, -1, -1) if self.reverse else range(steps)

    @staticmethod
    def _slot_views(states: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        """For each slot, the tuple of its state components as (B, S_k) views (built once, not per step)."""
        return [tuple(s[i] for s in states) for i in range(states[0].shape[0])]

    def forward(self, x: np.ndarray, state0: tuple[np.ndarray, ...], counts: np.ndarray | None = None):
        cell = self.cell
        steps, batch, _ = x.shape
        xp = cell.project(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        ragged = counts is not None
        cell.allocate(steps, batch, ragged)
        start = steps if self.reverse else 0
        states = [np.empty((steps + 1, batch, size), cell.dtype) for size in cell.state_sizes]
        for s, s0 in zip(states, state0):
            s[start] = s0
        slots = self._slot_views(states)
        for t in self._order(steps):
            read, write = self._slots(t)
            n = batch if counts is None else counts[t]
            if n == batch:
                cell.step(t, xp[t], slots[read], slots[write])
            else:  # rows outside their sequence carry their state unchanged
                cell.step(t, xp[t, :n], tuple(v[:n] for v in slots[read]), tuple(v[:n] for v in slots[write]))
                for s in states:
                    s[write, n:] = s[read, n:]
        self._x, self._states, self._counts = x, states, counts
        out = states[0][:-1] if self.reverse else states[0][1:]
        if counts is not None and counts[-1] < batch:
            out = out.copy()
            for t, n in enumerate(counts):
                out[t, n:] = 0
        end = 0 if self.reverse else steps
        return out, tuple(s[end] for s in states)

    def state_at(self, k: int) -> tuple[np.ndarray, ...]:
        """The state after the first k steps of the last forward (forward direction only)."""
        if self.reverse:
            raise ValueError("state_at is defined for the forward direction only")
        return tuple(s[k] for s in self._states)

    def backward(self, dy: np.ndarray | None, dfinal: tuple[np.ndarray, ...] | None = None):
        if self._x is None:
            raise RuntimeError("backward() called before forward()")
        cell, states, counts = self.cell, self._states, self._counts
        steps, batch, _ = self._x.shape
        dstate = [np.zeros((batch, size), cell.dtype) for size in cell.state_sizes]
        if dfinal is not None:
            for d, df in zip(dstate, dfinal):
                if df is not None:
                    d += df
        dstate_views = tuple(dstate)
        dxp = (np.zeros if counts is not None else np.empty)((steps, batch, cell.num_gates * cell.hidden_size),
                                                              cell.dtype)
        slots = self._slot_views(states)
        norms = np.zeros(steps) if self.track_state_grads else None
        for t in reversed(self._order(steps)):
            read, write = self._slots(t)
            n = batch if counts is None else counts[t]
            if dy is not None:
                dstate[0][:n] += dy[t, :n]
            if norms is not None:  # ‖∂L/∂h_t‖ averaged over the rows still inside their sequence
                norms[t] = np.linalg.norm(dstate[0][:n], axis=1).mean()
            if n == batch:
                cell.step_backward(t, dstate_views, slots[read], slots[write], dxp[t])
            else:
                cell.step_backward(t, tuple(d[:n] for d in dstate), tuple(v[:n] for v in slots[read]),
                                   tuple(v[:n] for v in slots[write]), dxp[t, :n])
            if self.detach_state:  # the gradient w.r.t. the previous state stops here
                for d in dstate:
                    d[:n] = 0
        # Slots read and written by the steps, as (T·B, S) slabs for the weight GEMMs.
        prev_all = tuple((s[1:] if self.reverse else s[:-1]).reshape(steps * batch, -1) for s in states)
        new_all = tuple((s[:-1] if self.reverse else s[1:]).reshape(steps * batch, -1) for s in states)
        self.state_grad_norms = norms
        dx = cell.accumulate(self._x.reshape(steps * batch, -1), dxp.reshape(steps * batch, -1), prev_all, new_all)
        return dx.reshape(steps, batch, -1), tuple(dstate)
