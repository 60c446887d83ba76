"""The whole time loop in one compiled call: the skeleton of `Recurrence.forward` / `Recurrence.backward`, written
once and parameterised by a cell family's compiled step.

``sequence_forward(step, params, xp, states, counts, reverse)`` and ``sequence_backward(step_backward, params, dy,
dstate, states, counts, reverse, detach, dxp)`` own everything about time, exactly as the Python runner
(`rnnkit.recurrent.runner`) does: the slot of each step (reverse direction without flipping the data), the ragged
batch as a sorted row prefix (rows past their end carry their state and get no gradient), the output gradient
added to δh_t, and Elman's detached state (the gradient stops at each step's previous state). The cell's step
does the rest for the ``n`` rows still inside their sequence: its recurrent GEMM(s) — BLAS called from compiled
code (`rnnkit.kernels.blas`) — and its fused pointwise kernel right after each product, while the block is in
cache. The steps live with their pointwise kernels, one module per cell family (`rnnkit.kernels.rnn`,
`rnnkit.kernels.lstm`, `rnnkit.kernels.gru`), and are passed in as arguments: numba compiles one specialisation
of the loop per step function, so the loop reads like the Python runner and costs nothing per step in Python.

Step contract (all arrays time-major, rows sorted by decreasing length):

    step(params, t, n, read, write, xp_t, states)
        xp_t (n, G) the projection of step t; states a tuple of (T+1, B, S_k) histories: read slot ``read``,
        write rows [:n] of slot ``write``; ``params`` the cell's tuple of weights and workspace arrays
    step_backward(params, t, n, read, write, dstate, states, dxp_t)
        dstate a tuple of (B, S_k): rows [:n] hold δ(state written at t) on entry, δ(state read at t) on exit;
        writes δa (n, G) into dxp_t

Each family module has one small entry per direction of time that calls the skeleton with its step, e.g.
``lstm_sequence_forward(params, xp, states, counts, reverse)``. The skeleton itself is not cached: numba's disk
cache keys a function taking another jitted function by that function's identity, which does not survive the
process. Known limit: numba also refuses to cache the entries ("uses dynamic globals": a jitted function passed as
a value whose code calls BLAS through `rnnkit.kernels.blas`), so they compile once per process (seconds) — to be
fixed (e.g. a generated entry per family that calls its step by name).

The NumPy per-step path stays the definition and the oracle (``tests/test_sequence_loop.py`` compares them).
"""

from __future__ import annotations

from numba import njit

from .jit import JIT

#: the skeleton is compiled into each family's cached entry (see the module notes), not cached on its own
SKELETON = {**JIT, "cache": False}


@njit(**JIT)
def slots(t, reverse):
    """(read slot, write slot) of step t: t → t+1 forward, t+1 → t in the reverse direction."""
    return (t + 1, t) if reverse else (t, t + 1)


@njit(**SKELETON)
def sequence_forward(step, params, xp, states, counts, reverse):
    """The forward time loop: xp (T, B, G); states a tuple of (T+1, B, S_k) histories holding the initial state in
    slot 0 (slot T when ``reverse``); counts (T,) rows still inside their sequence at each step."""
    steps = xp.shape[0]
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        read, write = slots(t, reverse)
        n = counts[t]
        step(params, t, n, read, write, xp[t, :n], states)
        for state in states:  # rows past their end carry their state unchanged
            state[write, n:] = state[read, n:]


@njit(**SKELETON)
def sequence_backward(step_backward, params, dy, dstate, states, counts, reverse, detach, dxp):
    """The backward time loop: dy (T, B, S_0) the output gradient; dstate a tuple of (B, S_k) holding δ(final
    state) on entry and δ(initial state) on exit; writes δa into dxp (T, B, G) for the active rows (padded rows
    keep the zeros the runner allocated). ``detach``: the gradient stops at each step's previous state."""
    steps = dy.shape[0]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        read, write = slots(t, reverse)
        n = counts[t]
        dstate[0][:n] += dy[t, :n]
        step_backward(params, t, n, read, write, dstate, states, dxp[t, :n])
        if detach:
            for d in dstate:
                d[:n] = 0
