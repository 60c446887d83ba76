"""How far apart the two cores are now, measured: the round trip of a cache line between them.

A virtual machine's CPUs are threads of its host, which the host may move between its own cores. On the project's
2-core AMD EPYC (no steal time counted meanwhile) the round trip of one cache line between rnnkit's two threads —
the caller writes a counter, the worker thread sees it and answers, the caller sees the answer — measured 52 – 80
ns for stretches of seconds and 310 – 350 ns for others, switching every few seconds: near (our reading: two
cores that share a level-3 cache) and far (cores that do not). Compute on each core runs at the same speed in both
(a one-thread GEMM on each core at once: 102 GFLOP/s throughout), and so does the memory (a 64 MB copy), but work
that crosses the cores often does not:

* a team's loop (`rnnkit.kernels.team`: a barrier and half of h_t crossing the cores at every step);
* OpenBLAS on two threads (the input projection below: 3.5 ms near, 7 ms far);
* not a pipeline, whose two cores meet once per chunk of steps (`rnnkit.kernels.ahead`, `rnnkit.kernels.behind`).

So where the cores are far, `rnnkit.kernels.parallel.pipeline_pays` takes a pipeline for inputs narrower than 3/4 of the
state too (a state up to 256 wide: `rnnkit.kernels.parallel.FAR_STATE`; both ways give the same bits there), which a
team takes while they are near. The char-LM race's layer (input 64, H = 256, B = 32, T = 100, float32), one process
taking turns between the two, each timing binned by the round trip measured before and after it, medians, team →
pipeline, ms, inference / training: LSTM near 14.7 / 41.6 → 17.5 / 44.6, far 21.1 – 21.6 / 50.8 → 18.0 / 46.3; GRU near
11.5 / 32.0 → 13.0 / 33.8, far 17.6 – 17.8 / 40.8 → 13.5 / 36.7; RNN near 5.8 / 12.0 → 5.1 / 11.1, far 6.9 / 18.0 → 5.5
/ 12.7; LN-LSTM near 14.6 / 46.8 → 18.4 / 50.1, far 19.4 / 54.2 → 19.3 / 51.2 (few far timings). An input twice as wide
(LSTM, input 512, H = 256, B = 32): near 30.5 – 31.0 / 85.2 – 86.7 → 32.4 / 88.6, far 37.8 – 38.2 / 98.1 → 33.5 / 94.2
(not taken: the two ways differ in the last bits at that depth). A wider state keeps its team: LSTM, input 64, H = 512,
B = 32, far, 54.8 / 157.5 → 63.3 / 155.4. Since the eleventh sitting such a one-direction layer runs its batch as two
halves where it can (`rnnkit.recurrent.halves`: not a ragged batch, not a layer-normalised cell's training call),
which never meet, and the distance is not asked for it.

`cores_near` measures it (`round_trip_ns`: `BATCHES` × `ROUNDS` round trips, in compiled code, on the worker thread
the teams use: about 0.2 ms a measurement) at most once per `FRESH_SECONDS`, and only where a policy's choice
depends on it.
"""

from __future__ import annotations

import os
import time

from .jit import JIT, njit
from .team import ABORT, ARRIVALS, READY, c_library, count_up, new_sync, wait_until, wait_within

#: a measurement: `BATCHES` timings of `ROUNDS` round trips each, the fastest taken (together about 10 µs near, 42 µs
#: far): the first rounds can pay for the worker thread's start
ROUNDS, BATCHES = 32, 4
#: a round trip this long (ns) or longer: the cores are far apart
FAR_NS = 150.0
#: a round trip this long (ns) or longer measures no distance: the two threads took turns on one core (the host
#: woke the worker on the caller's core; 6 µs a round trip where measured), and the measurement is dropped
TURNS_NS = 1000.0
#: a measurement is reused for this long (s); the cores' placement changed every few seconds where measured
FRESH_SECONDS = 0.5
#: loads of a counter the caller makes waiting for the worker's start (about 5 – 10 ms) and for an answer (about
#: 20 – 40 µs, a hundred far round trips) before it gives the measurement up: where another program has the other
#: core, the worker runs only when the host gives it a turn, milliseconds later, and a measurement must not wait
START_LOADS, ANSWER_LOADS = 10_000_000, 20_000

_last: tuple[float, float | None] = (float("-inf"), None)  # (when, round trip in ns or None: not measured)


@njit(**JIT)
def _answer(sync, rounds):
    """The worker's half: say it is here (``sync[READY]``), then answer each of the caller's ``rounds`` writes."""
    count_up(sync, READY)
    for r in range(rounds):
        if not wait_until(sync, ARRIVALS, 2 * r + 1, sync):
            return
        count_up(sync, ARRIVALS)


@njit(**JIT)
def _wait_for_answerer(sync):
    """Wait until the worker's half runs (so that the timing that follows does not count its start), at most
    `START_LOADS` loads; False, and the worker told to stop (``sync``'s abort flag), where it did not start by then
    or failed."""
    if wait_within(sync, READY, 1, sync, START_LOADS):
        return True
    count_up(sync, ABORT)
    return False


@njit(**JIT)
def _ask(sync, first, rounds):
    """The caller's half: rounds ``first`` to ``first + rounds``, each a write and a wait for its answer (at most
    `ANSWER_LOADS` loads). False, and the worker told to stop, where an answer did not come by then or the worker
    failed."""
    for r in range(first, first + rounds):
        count_up(sync, ARRIVALS)
        if not wait_within(sync, ARRIVALS, 2 * r + 2, sync, ANSWER_LOADS):
            count_up(sync, ABORT)
            return False
    return True


def round_trip_ns() -> float | None:
    """The round trip (ns) of a cache line between the caller's core and the worker thread's, the worker kept off
    the caller's core meanwhile (`_Elsewhere`): the fastest mean of `BATCHES` timings of `ROUNDS` round trips. None
    where it could not be measured: both cores not free now (a pair, team or pipeline holds them, or fewer than 2
    threads are allowed: `rnnkit.kernels.parallel`), the worker late to start or to answer (`START_LOADS`,
    `ANSWER_LOADS`: the other core busy), or the two threads on one core all the same (`TURNS_NS`)."""
    from . import parallel

    _load_kernels()
    sync, means, here = new_sync(projected=False), [], _current_cpu()

    def ask():
        if _wait_for_answerer(sync):
            for batch in range(BATCHES):
                start = time.perf_counter()
                if not _ask(sync, batch * ROUNDS, ROUNDS):
                    return
                means.append((time.perf_counter() - start) / ROUNDS * 1e9)

    def answer():
        with _Elsewhere(here):
            _answer(sync, BATCHES * ROUNDS)
    parallel.on_both_cores(sync, ask, answer, lambda: None, blas=False)
    fastest = min(means, default=None)
    return fastest if fastest is not None and fastest < TURNS_NS else None


def _load_kernels() -> None:
    """Run each half once on its own, so that numba loads (or compiles) them before a measurement: the caller would
    give a measurement up long before the worker compiled its half."""
    ready = new_sync(projected=False)
    ready[READY] = 1
    _answer(new_sync(projected=False), 0)
    _wait_for_answerer(ready)
    _ask(ready, 0, 0)


def _current_cpu() -> int | None:
    """The CPU the calling thread runs on now (glibc's ``sched_getcpu``), or None where it cannot be asked."""
    getcpu = _sched_getcpu()
    cpu = getcpu() if getcpu is not None else -1
    return cpu if cpu >= 0 else None


def _sched_getcpu():
    """The C library's ``sched_getcpu`` (`rnnkit.kernels.team.c_library`), or None where it has none."""
    return getattr(c_library(), "sched_getcpu", None)


class _Elsewhere:
    """The calling thread kept off CPU ``cpu`` inside the block (its affinity narrowed, then given back): the host
    wakes a thread on its waker's core at times (in half the measurements of an idle process), where the two would
    take turns (`TURNS_NS`). Nothing where the affinity cannot be set or no other CPU is allowed."""

    def __init__(self, cpu: int | None):
        self._cpu, self._mask = cpu, None

    def __enter__(self):
        if self._cpu is None or not hasattr(os, "sched_setaffinity"):
            return self
        try:
            mask = os.sched_getaffinity(0)
            if mask - {self._cpu}:
                os.sched_setaffinity(0, mask - {self._cpu})
                self._mask = mask
        except OSError:  # not allowed here (a sandbox), or the CPUs changed meanwhile: measure where it runs
            pass
        return self

    def __exit__(self, *error):
        if self._mask is not None:
            try:
                os.sched_setaffinity(0, self._mask)
            except OSError:  # the process's CPUs changed meanwhile: the thread keeps the set it has
                pass


def cores_near() -> bool:
    """Whether the two cores are near now (`round_trip_ns` under `FAR_NS`), measured again where the last try is
    older than `FRESH_SECONDS` (a try that measured nothing keeps the answer before it, and is not made again
    sooner); True where none could be made (the policies' choice before this module)."""
    from .parallel import cores_free

    global _last
    now = time.monotonic()
    if now - _last[0] > FRESH_SECONDS and cores_free():  # not a try inside a pair, team or pipeline
        measured = round_trip_ns()
        _last = (now, _last[1] if measured is None else measured)
    return _last[1] is None or _last[1] < FAR_NS


def describe() -> str:
    """One line for `rnnkit info`: the round trip now and what it means."""
    measured = round_trip_ns()
    if measured is None:
        return ("not measured (fewer than 2 threads allowed, the cores busy, or the other core did not answer in "
                "time)")
    where = "near" if measured < FAR_NS else "far"
    return (f"a cache line's round trip {measured:.0f} ns now ({where}; {FAR_NS:.0f} ns or more counts as far, where "
            "forwards with an input narrower than 3/4 of a state up to 256 wide run as pipelines instead of teams; a "
            "virtual machine's placement can change this every few seconds)")
