"""The CPU's clock, measured: a virtual machine's /proc/cpuinfo gives the nominal clock, which its cores exceed
when they boost (`rnnkit.machine.cpu_ghz` uses this where Linux's cpufreq does not say)."""

from __future__ import annotations

import time

from .jit import njit

#: dependent shift-and-add pairs per timing: ~20 ms at 3 GHz
STEPS = 30_000_000


@njit(cache=True, nogil=True, no_cfunc_wrapper=True)
def _shift_add_chain(steps, x):
    """``steps`` times x ← x + (x >> 1): each step's shift needs the last step's sum, so the pairs run one after
    another at one cycle each (x86-64 integer shift and add latency); LLVM cannot shorten the chain."""
    for _ in range(steps):
        x = x + (x >> 1)
    return x


def cycles_per_second(steps: int = STEPS, repeats: int = 3) -> float:
    """Cycles per second of this core: 2 cycles per step of `_shift_add_chain`, the fastest of ``repeats`` timings
    in this thread's CPU time, which stops while another process has the core (in wall-clock time, the test suite's
    other worker compiling kernels beside it once made all three timings too slow to be a clock)."""
    _shift_add_chain(10, 12345)
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        _shift_add_chain(steps, 12345)
        best = min(best, time.thread_time() - start)
    return 2 * steps / best
