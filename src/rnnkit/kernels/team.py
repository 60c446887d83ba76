"""One recurrence on two cores: the units of a layer split between the parts of a team, a barrier each step.

A step of the LSTM, GRU or RNN needs all of h_{t−1} for its recurrent product, but each unit's gates need only
their own columns of that product: the columns of W_hhᵀ that belong to units [lo, hi) of every gate block. So
part p of a team of ``parts`` computes those columns (its share of the product: half of W_hh each, a block that
stays in that core's cache) and the pointwise math of its own units, then waits at a barrier until every part
has written its share of h_t. The backward runs the same way the other side round: each part writes δa for its
own units, a barrier, then δh_{t−1} for its own units = δa · W_hh[:, lo:hi] (which needs all of δa). Where a
step's pointwise math needs whole rows — the layer-normalised cells' statistics span all units of a row; the
GRU's backward measured faster so — a part takes whole rows of its share of the batch for it (`own_rows`), with a
barrier between the product's columns and the rows.

Each part's whole time loop is one compiled call that releases the GIL; `rnnkit.kernels.parallel.team` runs
part 0 in the caller and part 1 in its worker thread, with one BLAS thread each. The barrier is a shared counter
updated with atomic instructions (LLVM's ``atomicrmw`` and acquire loads, emitted through numba intrinsics: no
lock, no Python). A waiting part spins, and yields its core (``sched_yield``) after `SPINS` loads, so that an
oversubscribed machine (two test processes, each with a team) still makes progress.

``team`` = (part, parts, sync): ``sync`` an int64 array of `SYNC_SIZE` (the arrival counter; an abort flag a cache line
away, set for a part that failed, `rnnkit.kernels.parallel.team`, so that the other never waits for it; and a cache line
further, the steps whose input projection is ready, which a forward loop waits for at each step, `wait_ready`: all of
them from the start in a team, one chunk at a time where a partner thread projects the input ahead of a loop of one
part, `rnnkit.kernels.ahead`; in a backward loop of one part whose weight sums a partner makes behind it, the steps the
loop has finished, `announce_step`, `rnnkit.kernels.behind`). The plain loop takes None (`no_team`): numba prunes the
branches on ``team is None`` when it compiles a loop, so the plain loop carries no barrier or share code (a shorter
first compile); a team of one part computes the same (its barrier does nothing and its units are all of them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import GLUE, njit, unliteral

SYNC_SIZE = 24
ARRIVALS, ABORT, READY = 0, 8, 16  # a cache line (64 bytes) apart
#: loads of the counter before a waiting part starts to yield its core
SPINS = 4000
#: each part's share of the units is a multiple of this many (16 float32 = one 64-byte cache line of a row)
UNIT_ALIGN = 16


@functools.cache
def c_library() -> ctypes.CDLL | None:
    """The C library (found once: finding it runs a program), or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:  # pragma: no cover - no C library to load
        return None


def _sched_yield_address() -> int:
    try:
        return ctypes.cast(c_library().sched_yield, ctypes.c_void_p).value
    except AttributeError:  # pragma: no cover - a C library without sched_yield: waiting only spins
        return ctypes.cast(_NO_YIELD, ctypes.c_void_p).value


@ctypes.CFUNCTYPE(ctypes.c_int)
def _NO_YIELD():  # pragma: no cover - see _sched_yield_address
    return 0


llvm.add_symbol("rnnkit_sched_yield", _sched_yield_address())
_sched_yield = types.ExternalFunction("rnnkit_sched_yield", types.intc())


def new_sync(projected: bool) -> np.ndarray:
    """The ``sync`` array of a team or pipeline: nothing arrived, no abort; every step's projection ready where
    ``projected`` (a team's loops start after the projection), none yet in a pipeline's."""
    sync = np.zeros(SYNC_SIZE, np.int64)
    if projected:
        sync[READY] = np.iinfo(np.int64).max
    return sync


def no_team() -> None:
    """The ``team`` argument of the plain loop, outside any team: None (the loop compiles without barriers or
    shares)."""
    return None


def _element_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def _atomic_add(typingctx, array, index, value):
    """array[index] += value atomically (sequentially consistent); the value before."""
    sig = types.int64(array, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", pointer, args[2], "seq_cst")
    return sig, codegen


@intrinsic
def _atomic_load(typingctx, array, index):
    """array[index], read with acquire ordering (what the other part wrote before its add is visible after)."""
    sig = types.int64(array, types.intp)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)
    return sig, codegen


@njit(**GLUE)
def barrier(team):
    """Wait until every part of ``team`` has arrived here as often as this one (nothing for a team of one). The
    counter only grows: arrival number a (1-based) waits for the counter to reach the end of its round."""
    if team is None:
        return
    parts, sync = team[1], team[2]
    if parts < 2:
        return
    arrived = _atomic_add(sync, ARRIVALS, 1) + 1
    wait_until(sync, ARRIVALS, ((arrived - 1) // parts + 1) * parts, sync)


@njit(**GLUE)
def wait_ready(team, s):
    """Wait until the input projection of the loop's step s (0-based, in the loop's order) is ready: until
    ``sync[READY]`` > s (nothing in the plain loop, and at once where the count holds every step from the start)."""
    if team is None:
        return
    wait_until(team[2], READY, s + 1, team[2])


@njit(**GLUE)
def announce_step(team):
    """After a step of a backward loop of one part whose weight gradients a partner sums behind it
    (`rnnkit.kernels.behind`): one more step's δa written (``sync[READY]``, what the partner waits for; everything
    the step wrote is visible to it once it reads the new count). Nothing in the plain loop or a team of two."""
    if team is None:
        return
    if team[1] == 1:
        _atomic_add(team[2], READY, 1)


@njit(**GLUE)
def wait_until(counts, index, goal, sync):
    """Spin until ``counts[index]`` (a counter that only grows, updated atomically) reaches ``goal`` or a partner
    failed (`aborted` on ``sync``); after `SPINS` loads, yield the core at each one. True where the goal was
    reached."""
    spins = 0
    while _atomic_load(counts, index) < goal:
        if _atomic_load(sync, ABORT) != 0:
            return False
        spins += 1
        if spins > SPINS:
            _sched_yield()
    return True


@njit(**GLUE)
def wait_within(counts, index, goal, sync, loads):
    """`wait_until` for at most ``loads`` loads of the counter, never yielding the core: False where the goal was not
    reached by then, or a partner failed."""
    for _ in range(loads):
        if _atomic_load(counts, index) >= goal:
            return True
        if _atomic_load(sync, ABORT) != 0:
            return False
    return False


@njit(**GLUE)
def count_up(counts, index):
    """counts[index] += 1 atomically, after the work it counts (visible to whoever reads the new count); the value
    before: a shared counter of tasks hands each caller a number of its own."""
    return _atomic_add(counts, index, 1)


@njit(**GLUE)
def add_ready(sync, steps):
    """Announce ``steps`` more steps' projections written (what `wait_ready` waits for): everything written before
    is visible to the loop once it reads the new count."""
    _atomic_add(sync, READY, steps)


@njit(**GLUE)
def aborted(sync):
    """Whether the other thread of a team or pipeline failed (``sync[ABORT]``, set by `rnnkit.kernels.parallel`)."""
    return _atomic_load(sync, ABORT) != 0


@njit(**GLUE)
def own_units(width, team):
    """(lo, hi): the units of a ``width``-wide state that part ``team[0]`` computes. Shares are multiples of
    `UNIT_ALIGN` (the last part takes the rest), so two parts never write into one cache line of a row. All of
    them in the plain loop (``team`` None), where lo is 0 typed as a variable (`rnnkit.kernels.jit.unliteral`):
    the row helpers that take (lo, hi) compile once for the plain loop and a team's."""
    if team is None:
        return unliteral(0), width
    part, parts = team[0], team[1]
    if parts < 2:
        return 0, width
    share = -(-width // parts)
    share = -(-share // UNIT_ALIGN) * UNIT_ALIGN
    lo = min(part * share, width)
    return lo, min(lo + share, width)


@njit(**GLUE)
def own_rows(rows, team):
    """(r0, r1): the rows of a batch of ``rows`` that part ``team[0]`` takes, where a kernel needs whole rows (the
    layer-normalised cells' pointwise math: a row's mean and variance span all its units). All of them in the
    plain loop (``team`` None), r0 typed as a variable as in `own_units`."""
    if team is None:
        return unliteral(0), rows
    part, parts = team[0], team[1]
    if parts < 2:
        return 0, rows
    share = -(-rows // parts)
    r0 = min(part * share, rows)
    return r0, min(r0 + share, rows)


@njit(**GLUE)
def leads(team):
    """Whether this part does a step's work that one part does for all: part 0 (a team of one: its only part)."""
    if team is None:
        return True
    return team[0] == 0
