"""Two independent recurrences at once: the two directions of a bidirectional layer, each on its own core.

Each direction's whole time loop is one compiled call that releases the GIL (``nogil``), and its skinny per-step
GEMMs gain little from a second BLAS thread, so running the two directions side by side, each with a one-thread
BLAS, beats running them one after the other with every small product split over two threads (measured in
``docs/performance-history.md``). `pair` runs the second job in a worker thread while the caller runs the first:

* it never oversubscribes: during the pair every BLAS NumPy and the compiled loop call (threadpoolctl's view) is
  limited to half its threads (at least 1), and with fewer than 2 BLAS threads allowed (``--threads 1``,
  ``threadpoolctl.threadpool_limits(1)``) the jobs run one after the other;
* the results are bit-identical to running the jobs one after the other with OpenBLAS (each job's arithmetic is
  the same; ``tests/test_parallel_directions.py``), and equal within rounding with MKL (``RNNKIT_BLAS=mkl``), whose
  products depend on its thread count;
* one pair at a time per process (a second caller meanwhile runs its jobs one after the other), and the worker is
  made again in a forked child;
* it runs only where it measured faster (`pair_pays`): a call with enough work per direction; the fixed cost of a
  pair (a thread hand-off and the BLAS limits set twice, about 0.2 ms) made small bidirectional calls up to 2 – 3×
  slower than their directions in turn.

``RNNKIT_PARALLEL_DIRECTIONS`` (read at import; `use_pairs`, `using_pairs`) chooses: ``auto`` (the default),
``always`` (every pair that can run at once: the tests' setting) or ``never`` (``1`` and ``0`` mean auto and never);
``rnnkit.kernels.parallel.enable(False)`` turns it off.

`team` runs one recurrence on both cores instead: the units of the layer split between two parts, each a compiled
loop (`rnnkit.kernels.team`), on the same worker thread, under the same rules (one BLAS thread each, never with
fewer than 2 allowed, never inside a pair). Which layers split is `team_size`'s policy.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np

_busy = threading.Lock()
_worker: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, the worker)
_blas = None  # threadpoolctl's controllers of the BLAS libraries, found once


class Policy:
    """A choice of ``auto`` (the measured rule), ``always`` or ``never``, read from the environment variable
    ``variable`` at import (``aliases`` maps other spellings), set for the calls that follow (`use`) or inside a
    block (`using`, as `rnnkit.kernels.using` does for the kernels). ``what`` names it in errors."""

    CHOICES = ("auto", "always", "never")

    def __init__(self, what: str, variable: str, aliases: dict[str, str] | None = None):
        value = os.environ.get(variable, "auto").strip().lower() or "auto"
        self.what, self.choice = what, (aliases or {}).get(value, value)

    def use(self, choice: str) -> None:
        if choice not in self.CHOICES:
            from ..errors import ConfigError

            raise ConfigError(f"{self.what} must be one of {', '.join(self.CHOICES)}, got {choice!r}")
        self.choice = choice

    @contextmanager
    def using(self, choice: str):
        previous = self.choice
        self.use(choice)
        try:
            yield
        finally:
            self.use(previous)


#: ``RNNKIT_PARALLEL_DIRECTIONS``: whether the two directions of a layer run at once (`pair_pays`)
PAIRS = Policy("parallel directions", "RNNKIT_PARALLEL_DIRECTIONS", {"1": "auto", "0": "never"})
use_pairs, using_pairs = PAIRS.use, PAIRS.using


def enable(on: bool = True) -> None:
    """Run the two directions of a layer concurrently where `pair_pays` (``on``: the ``auto`` policy), or always in
    turn."""
    PAIRS.use("auto" if on else "never")


#: the multiply-adds of one direction's recurrent products over a call (steps · batch · state width · gate width)
#: from which its two directions run at once under ``auto``. Measured on the 2-core AMD EPYC, float32, medians of
#: calls alternating the two ways in one process, training / inference, directions in turn ÷ at once (> 1: at once
#: is faster): below it, LSTM T = 100, B = 1, H = 16: 0.50 / 0.58; T = 25, B = 4, H = 64: 0.77 / 0.84; T = 10,
#: B = 16, H = 64: 0.82 / 0.81; GRU T = 300, B = 1, H = 32: 0.82 / 0.87; RNN T = 100, B = 1, H = 64: 0.56 / 0.63;
#: above it, LSTM T = 100, B = 4, H = 64: 1.54 / 2.93; GRU T = 100, B = 4, H = 64: 1.61 / 1.07; B = 16: 1.53 / 2.36;
#: RNN T = 100, B = 16, H = 256: 1.29 / 1.46; LSTM B = 16, H = 256: 1.17 / 1.15. Each way in a process of its own
#: (NumPy imported first, as most programs do), ms at once / in turn: LSTM T = 100, B = 16, H = 256 training
#: 63.9 – 64.6 / 70.9 – 83.9; B = 4, H = 64: 2.2 – 2.7 / 3.1 – 3.2; B = 1, H = 64 (below): 1.6 – 1.7 / 0.9 – 1.4;
#: T = 25, B = 4, H = 64 (below): 1.08 / 0.91. Where the line errs: LSTM T = 300, B = 1, H = 32 with rnnkit imported
#: first (1.2 M: 1.13 ms at once, 1.49 in turn) and RNN T = 100, B = 16, H = 64 (6.6 M: about even)
PAIR_WORK = 1 << 22


def pair_pays(work: int) -> bool:
    """Whether two directions with ``work`` multiply-adds each (see `PAIR_WORK`) run at once: always or never by
    the policy (`use_pairs`), else where the work reaches `PAIR_WORK` — below it a pair's fixed cost (a thread
    hand-off, the BLAS limits set twice: about 0.2 ms) is more than it saves."""
    if PAIRS.choice != "auto":
        return PAIRS.choice == "always"
    return work >= PAIR_WORK


def _blas_libraries():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas


def blas_threads() -> int:
    """The threads the BLAS libraries may use now (the fewest over them; 1 when none is seen)."""
    return min((lib.num_threads for lib in _blas_libraries()), default=1)


def _executor() -> ThreadPoolExecutor:
    global _worker
    if _worker is None or _worker[0] != os.getpid():  # a forked child has no worker thread: make its own
        _worker = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnkit-direction"))
    return _worker[1]


def pair(first, second, work: int):
    """(first(), second()): concurrently, each with half the BLAS threads, where `pair_pays` for ``work`` (the
    multiply-adds of each job's recurrence), 2 or more BLAS threads are allowed and no other pair is running; else
    one after the other."""
    return at_once(first, second) if pair_pays(work) else (first(), second())


def at_once(first, second):
    """(first(), second()): concurrently, each with half the BLAS threads, where 2 or more BLAS threads are
    allowed and no other pair, team or pipeline is running; else one after the other."""
    threads = _claim_cores()
    if not threads:
        return first(), second()
    try:
        return _concurrently(first, second, threads // 2)
    finally:
        _busy.release()


def _concurrently(first, second, threads: int | None):
    """(first(), second()): first in the caller, second in the worker thread, every BLAS library limited to
    ``threads`` meanwhile (None: not limited); first's error is raised before second's."""
    other = _OtherCore(_on_threads(second, threads), threads)
    try:
        a = _on_threads(first, threads)()
    finally:
        second_done = other.join(raise_error=False)
    return a, second_done.result()


def _on_threads(job, threads: int | None):
    """job, which with the MKL backend makes its products on ``threads`` MKL threads in whichever thread runs it
    (`rnnkit.kernels.mkl.local_threads`: MKL's global limit, which `_OtherCore` sets, did not hold for two threads'
    products at once); job itself otherwise."""
    from .backend import BACKEND

    if threads is None or BACKEND != "mkl":
        return job

    def limited():
        from .mkl import local_threads

        with local_threads(threads):
            return job()
    return limited


class _OtherCore:
    """job() on the worker thread from now on, with every BLAS library limited to ``threads`` until `join` (none
    limited where ``threads`` is None: jobs that call no BLAS)."""

    def __init__(self, job, threads: int | None):
        self._libraries = _blas_libraries() if threads is not None else []
        self._previous = [lib.num_threads for lib in self._libraries]
        for lib in self._libraries:
            lib.set_num_threads(threads)
        try:
            self._future = _executor().submit(job)
        except BaseException:
            self._restore()
            raise

    def join(self, raise_error: bool = True):
        """Wait for the job, give the BLAS libraries their thread counts back; its future (its error raised where
        ``raise_error``)."""
        try:
            wait([self._future])
        finally:
            self._restore()
        if raise_error:
            self._future.result()
        return self._future

    def _restore(self) -> None:
        for lib, n in zip(self._libraries, self._previous):
            lib.set_num_threads(n)


#: ``RNNKIT_TEAMS`` (read at import): ``auto`` (`team_size`'s measured policy), ``always`` (every layer whose cell
#: can split, whatever its shape: the tests' setting) or ``never``
TEAMS = Policy("teams", "RNNKIT_TEAMS")
use_teams, using_teams = TEAMS.use, TEAMS.using
#: a part's share of one step's recurrent product, in multiply-adds (batch · depth · columns / 2), where teams
#: measured faster than one loop with two BLAS threads (AMD EPYC, OpenBLAS SkylakeX kernels, in-process A/B of the
#: loops alone, one loop → team, ms per 100 steps, forward / backward): LSTM B = 16, H = 256: 11.6 → 8.1 / 15.3 →
#: 11.3; B = 16, H = 512: 44.7 → 22.5 / 39.8 → 34.5; B = 64, H = 256: 32.5 → 31.9 / 39.7 → 34.2; RNN B = 16, H = 256:
#: 3.8 → 2.5 / 2.9 → 2.8; RNN B = 64, H = 512: 47.4 → 37.5 / 24.1 → 25.4; slower above 2^23 (LSTM B = 64, H = 512
#: forward: 128 → 261; GRU B = 64, H = 512: 87 → 103) and below 2^19 (B = 1, H = 64: 2–3× slower). The
#: layer-normalised cells gain most (their pointwise math split by rows): LN-LSTM B = 16, H = 256: 11.5 → 6.3 /
#: 11.2 → 8.8; the GRU's backward (rows, then columns): 7.7 → 6.3 at B = 16, H = 256
#: With the products on panels (`rnnkit.kernels.panels`: one core's product runs at its peak) a team pays above
#: `TEAM_WORK` too, and in float64. Measured on the 2-core AMD EPYC, T = 100, in one process, three rounds in turns,
#: medians of 5 calls, ms, inference / training, OpenBLAS with the old policy → panels in a team: float32 B = 64,
#: H = 512: LSTM 174 – 179 / 479 – 488 → 151 – 153 / 430 – 434; GRU 124 – 127 / 356 – 367 → 113 – 114 / 328 – 330;
#: RNN 44 – 45 / 120 – 122 → 39 / 111 – 112 (panels in one loop, no team: LSTM 207 – 208 / 552 – 556); float64
#: LSTM B = 16, H = 256: 59 – 60 / 120 – 125 → 44 – 45 / 96 – 97; B = 64, H = 512: 544 – 576 / 1187 – 1221 → 413 – 423
#: / 993 – 1024. Inside `TEAM_WORK` (float32 B ∈ {16, 64}, H ∈ {256, 512}) panels in a team ran as fast as the BLAS
#: in a team or up to 12% faster (LSTM B = 16, H = 512 training 126 – 127 → 112 – 114)
TEAM_WORK = (1 << 19, 1 << 23)


def teams_choice() -> str:
    """The policy `team_size` follows: ``"auto"``, ``"always"`` or ``"never"``."""
    return TEAMS.choice


def team_size(dtype, batch: int, depth: int, columns: int, units: int) -> int:
    """How many parts run a loop whose step multiplies (batch, depth) by (depth, columns) over ``units`` units: 2
    where the policy allows it, else 1. ``auto``: on OpenBLAS whose idle threads do not spin long
    (`rnnkit.machine.blas_spin_bounded`), units in 32s, a share of the product of at least `TEAM_WORK`'s lower end,
    and either the products on panels (`rnnkit.kernels.blas.panels_apply`), each part's share whole panels (units
    in 64s float32, 32s float64), or on MKL (`rnnkit.kernels.blas.packs_shares`: each part's columns packed on
    their own), or float32 on OpenBLAS's small-matrix kernels with a share in `TEAM_WORK` (the measurements are
    there; MKL's: docs/performance-history.md, twenty-sixth part).
    Whether the cores are free is `team`'s to check."""
    from .team import UNIT_ALIGN

    if TEAMS.choice == "never" or units < 2 * UNIT_ALIGN:
        return 1
    if TEAMS.choice == "always":
        return 2
    work = batch * depth * columns // 2
    if units % (2 * UNIT_ALIGN) or work < TEAM_WORK[0]:
        return 1  # decided before the other imports: this runs a few times a call, and small calls are short
    from ..machine import blas_spin_bounded
    from .blas import packs_shares, panels_apply, small_kernels
    from .panels import width

    if not blas_spin_bounded():
        return 1
    if panels_apply(dtype) and units % (2 * width(dtype)) == 0:  # each part's share whole panels
        return 2
    if packs_shares(dtype):  # MKL: each part's columns of a weight packed on their own, one MKL thread each
        return 2
    return 2 if work <= TEAM_WORK[1] and small_kernels(dtype) else 1


#: the multiply-adds of a step's recurrent product below which a loop on one core makes its products on one MKL
#: thread: each product on two wakes MKL's second thread (rnnkit sets ``KMP_BLOCKTIME=0``, so that MKL's threads
#: never spin on the cores OpenBLAS and the teams use), about 50 µs, measured on the Intel Xeon of
#: docs/performance-history.md's twenty-sixth part (µs, one thread / two): 16 × 256 · 256 × 1,024 55 / 103, 64 ×
#: 256 · 256 × 1,024 208 / 178, 16 × 512 · 512 × 2,048 256 / 222, 64 × 512 · 512 × 2,048 878 / 569; an LSTM at B = 1,
#: H = 64 took 9.5 ms an inference call on two threads
ONE_MKL_THREAD_BELOW = 1 << 23


def team(parts: int, job, step_work: int) -> None:
    """job(team) once per part of a team of ``parts`` (`rnnkit.kernels.team`): part 0 in the caller, part 1 in the
    worker thread, one BLAS thread each, where ``parts`` is 2 (`team_size`: its policy is the switch) and
    `on_both_cores` can; else job(`no_team`: the plain loop), its products on one MKL thread where a step's
    product, ``step_work`` multiply-adds, is below `ONE_MKL_THREAD_BELOW`. A part that fails releases the other
    from its barriers, and the error is raised."""
    from .team import new_sync, no_team

    if parts < 2:
        _on_threads(lambda: job(no_team()), 1 if step_work < ONE_MKL_THREAD_BELOW else None)()
        return
    sync = new_sync(projected=True)
    on_both_cores(sync, lambda: job((0, 2, sync)), lambda: job((1, 2, sync)), lambda: job(no_team()))


#: ``RNNKIT_PIPELINES`` (read at import): ``auto`` (`pipeline_pays`' and `behind_pays`' measured rules), ``always``
#: (every forward loop that would run as a team and whose projection is one GEMM, and every one-direction backward
#: whose cell makes its sums behind the loop: the tests' setting) or ``never``
PIPELINES = Policy("pipelines", "RNNKIT_PIPELINES")
use_pipelines, using_pipelines = PIPELINES.use, PIPELINES.using


def pipeline_pays(dtype, team_parts: int, inputs: int, depth: int) -> bool:
    """Whether a forward loop whose projection the cell names runs as a pipeline (`pipeline`) rather than after that
    projection's GEMM: where it would run as a team (``team_parts`` 2, `team_size`); under ``always`` on any route,
    dtype and width; under ``auto`` in float32 with the products on packed weights (`rnnkit.kernels.blas.packs_weights`:
    panels, or MKL's, measured in `PIPELINE_INPUTS`' notes) and
    ``inputs`` (the projection's depth) `PIPELINE_INPUTS` to 1 times ``depth`` (the recurrent product's); narrower
    while the two cores are far apart, for a state up to `FAR_STATE` wide (`rnnkit.kernels.distance.cores_near`,
    asked only then): where it measured faster (`rnnkit.kernels.ahead`, `rnnkit.kernels.distance`). Measured slower:
    float64 (LSTM B = 16, H = 256 inference 44 → 50 ms, B = 64 170 → 190: a loop alone on one core, whose weight (2
    MiB) leaves that core's cache at every step, is slower than half of it on each core); inputs wider than the
    state (LSTM H = 256, inference, input 512: B = 64 63.7 → 67.5 ms; input 1024, B = 16: 25.8 → 35.7), whose
    projection on one core takes longer than the loop, though with the cores far apart an input twice as wide
    measured faster as a pipeline (`rnnkit.kernels.distance`; not taken: see `FAR_STATE`); and inputs much narrower
    than the state (`PIPELINE_INPUTS`) with the cores near, or with a state wider than `FAR_STATE`."""
    from .blas import packs_weights

    if PIPELINES.choice == "never" or team_parts < 2:
        return False
    if PIPELINES.choice == "always":
        return True
    if np.dtype(dtype) != np.float32 or not packs_weights(dtype) or inputs > depth:
        return False
    low, high = PIPELINE_INPUTS
    if low * depth <= high * inputs:
        return True
    if depth > FAR_STATE:
        return False
    from .distance import cores_near

    return not cores_near()


#: (3, 4): the pipeline pays under ``auto`` for an input at least 3/4 as wide as the state. A narrower input's
#: projection leaves the writer's core idle for most of the loop, which a team shares instead. Measured on the
#: 2-core AMD EPYC, LSTM, T = 100, in one process, team → pipeline, inference / training, ms: input 64, H = 256:
#: B = 16 8.9 – 9.0 / 22.7 – 22.9 → 9.8 – 10.3 / 24.2 – 28.7, B = 32 15.5 – 16.3 / 43.0 – 44.3 → 18.7 – 19.6 /
#: 46.4 – 48.8 (the char-LM race's layer), B = 64 29.9 – 30.3 / 85.6 – 87.2 → 36.3 – 37.3 / 92.3 – 92.8; input
#: 128, H = 256, B = 64: 34.5 – 34.6 / 96.9 – 97.8 → 36.9 – 37.3 / 99.7 – 100.4; input 256, H = 512: B = 16 30.2
#: – 30.6 / 84.7 – 85.0 → 35.9 – 36.2 / 90.8 – 91.1, B = 64 110.6 – 111.0 / 323.7 – 326.3 → 130.9 – 131.3 / 345.1 –
#: 347.3; faster from 3/4 on: input 192, H = 256, B = 16 10.9 – 11.1 / 28.3 – 28.7 → 9.8 – 9.9 / 27.6 – 28.2.
#: Where it errs: input 384, H = 512, B = 16 (a team's 34.5 ms against 37.6 in its better runs). `rnnkit train
#: text` on the char-LM race's model for 25 s, three processes each in turns: 495 – 498 updates with this policy
#: against 465 – 473 without it (and 481 – 500 against 456 – 465 with pipelines off and on). A team's times vary
#: more from run to run than a pipeline's on this machine: some processes ran its loops up to 1.5× slower for
#: stretches of calls (docs/performance.md), where the pipeline was faster. On MKL (the Intel Xeon of
#: docs/performance-history.md's twenty-seventh part; float32, T = 100, input as wide as the state, the bench's call in
#: fresh processes in turns, medians of 20 calls, ms, team → pipeline): LSTM inference B = 16, H = 256 16.5 – 19.0 →
#: 12.4 – 16.2, B = 64, H = 256 63.7 – 69.2 → 47.0 – 52.8, B = 16, H = 512 45.6 – 53.1 → 44.8 – 56.0, B = 64, H = 512
#: 136.9 → 137.2 – 146.3; LSTM training B = 16, H = 256 33.0 – 43.7 → 30.1 – 32.1, B = 64, H = 256 112.4 – 143.4 → 99.7
#: – 109.2, B = 64, H = 512 375 – 399 → 366 – 372; GRU B = 16, H = 256 inference 11.1 – 13.3 → 8.7 – 13.3, training 25.7
#: – 27.6 → 22.9 – 23.5, B = 64, H = 512 97.8 – 120.7 → 90.2 – 112.1 / 270 – 284 → 261 – 287; RNN B = 16, H = 256 6.0 –
#: 7.3 → 3.7 – 4.9 / 13.3 – 14.3 → 11.3 – 15.8, B = 64, H = 512 40.3 – 40.9 → 33.8 – 48.5 / 103.3 – 107.1 → 96.6 –
#: 105.0. Narrower inputs measured alike both ways (LSTM, H = 256: input 64, B = 32, training 47.2 – 49.1 → 46.5 – 53.5;
#: input 128, B = 64, inference 28.9 – 29.4 → 29.1 – 30.8), so the rule is the panels' own.
PIPELINE_INPUTS = (3, 4)
#: 256: the widest state whose narrow-input forward runs as a pipeline because the cores are far apart. Measured
#: (`rnnkit.kernels.distance`, far apart, team → pipeline, inference / training ms): H = 256, input 64, B = 32: LSTM
#: 21.1 – 23.0 / 50.8 – 53.4 → 17.8 – 18.0 / 46.2 – 46.3, GRU 17.6 – 17.8 / 40.8 → 13.5 / 36.7, RNN 6.9 / 18.0 → 5.5 /
#: 12.7 (B = 16: 4.0 / 10.3 → 2.9 / 8.2), LN-LSTM 19.4 / 54.2 → 19.3 / 51.2; H = 512, where a step's product is large
#: enough to carry a team's meetings even far apart: LSTM input 64, B = 32 54.8 / 157.5 → 63.3 / 155.4, B = 16 29.4 /
#: 79.8 → 32.0 / 80.6; RNN input 128, B = 64 29.8 / 90.5 → 32.2 / 85.3. The two ways of a forward give the same bits
#: — the team's projection and the pipeline's sum each product over its whole depth in one order: the team's on
#: OpenBLAS's GEMM, which sums so for inputs up to 383 wide (tested: every cell that names its projection, inputs 8 –
#: 383), and on the panels from 384 on (`rnnkit.kernels.whole`, on their route) — so a choice made from the moment's
#: distance never changes a result, and a resumed run computes what the uninterrupted one did. Deeper inputs on
#: OpenBLAS's GEMM would not: it sums in blocks of 384 of the depth (an input 512 wide gave the LSTM's outputs up to
#: 1.5e-5 apart), which is why the rule stops at inputs narrower than 3/4 of the state (with the cores far apart, a
#: pipeline measured faster for an input twice as wide, H = 256)
FAR_STATE = 256


def behind_pays(dtype, chunks: int, step_work: int) -> bool:
    """Whether a one-direction backward loop whose cell sums its weight gradients behind it
    (`rnnkit.recurrent.cell.Cell.sums_behind`) runs on one core with those sums on the other, ``chunks`` chunks of
    steps (`rnnkit.kernels.behind.chunk_steps`), rather than as its team or alone and then the GEMMs on both cores:
    under the pipelines' policy (``never`` turns it off, ``always`` on everywhere); under ``auto`` in float32, from
    `BEHIND_CHUNKS` chunks and `BEHIND_WORK` multiply-adds a step (``step_work``, the loop's products), where it
    measured faster (below)."""
    if PIPELINES.choice == "never":
        return False
    if PIPELINES.choice == "always":
        return True
    return np.dtype(dtype) == np.float32 and chunks >= BEHIND_CHUNKS and step_work >= BEHIND_WORK


#: `behind_pays`' lower ends. LSTM training, T = 100 unless said, input as wide as the state, ms, fresh processes in
#: turns, the sums after the loop → behind it: with 3 chunks or more and 2^18 multiply-adds a step or more, faster
#: everywhere measured: B = 16, H = 64 (2^18) 4.1 → 3.6; B = 4, H = 128 (2^18, 4 chunks) 3.2 → 3.1; B = 8,
#: H = 128 5.8 – 6.1 → 5.1 – 5.2; B = 4, H = 256 9.4 – 9.6 → 8.2; B = 16, H = 128 10.4 – 10.5 → 8.4; B = 16, H = 256
#: T = 20 (3 chunks) 7.7 → 6.5; the grid's shapes 2 – 5% (`rnnkit.kernels.behind`). Slower with fewer chunks, where the
#: partner waits for most of the loop: B = 1, H = 512 (one chunk) 15.9 – 17.6 → 18.7 – 18.9; B = 2, H = 512 19.2 –
#: 19.6 → 20.7 – 22.1; B = 1, H = 256 4.7 → 4.8 – 5.7; B = 64, H = 256, T = 10 (2 chunks) 13.4 – 13.5 → 13.8 – 14.2;
#: and with less work a step: B = 1, H = 64 0.64 → 0.78; B = 4, H = 64 1.3 → 2.0; B = 8, H = 64 (2^17) 2.2 → 2.4.
#: Left out although faster: B = 32, H = 32 (2^17) 3.7 → 3.05, B = 16, H = 256, T = 10 (2 chunks) 3.8 – 5.2 → 3.8 –
#: 4.0. float64 was not measured
BEHIND_WORK, BEHIND_CHUNKS = 1 << 18, 3


def cores_free() -> bool:
    """Whether no pair, team or pipeline holds the cores now (one that starts later runs its jobs in turn)."""
    return not _busy.locked()


class Pipeline:
    """A loop, run as a team of one part (`rnnkit.kernels.team`), and its partner's work, one on each core with one
    BLAS thread each where `on_both_cores` would run two jobs; else one after the other in the caller. The partner
    either writes what the loop reads, announcing it step by step (the input projection ahead of a forward loop,
    `rnnkit.kernels.ahead`), or reads what the loop writes, as the loop announces it (``follows``: the weight
    gradients behind a backward loop, `rnnkit.kernels.behind`). In two halves, so that what the caller does before
    its loop runs while the partner starts: entering starts work(sync) in the worker thread (or nothing yet); `run`
    runs loop(team) in the caller — after work(sync) there where the partner writes and did not start; where it
    follows, the caller runs work(sync) after its loop in any case, sharing what is left of it (or doing all of it
    where the partner did not start). Leaving waits for the worker and frees the cores; where the caller's work
    before the loop, or the loop, failed, it first stops the worker (the abort flag) and raises that error, else the
    worker's. A loop that fails sets the abort flag too, so the partner never waits for ever, nor the loop for it."""

    def __init__(self, work, follows: bool = False):
        from .team import new_sync

        self.sync = new_sync(projected=False)
        self._work, self._follows = work, follows
        self._partner: _OtherCore | None = None
        self._threads: int | None = None  # each side's BLAS threads while the partner runs (None: no partner)

    def __enter__(self) -> Pipeline:
        threads = _claim_cores()
        if threads:
            try:
                partner = _on_threads(_guarded(lambda: self._work(self.sync), self.sync), threads // 2)
                self._partner, self._threads = _OtherCore(partner, threads // 2), threads // 2
            finally:
                if self._partner is None:
                    _busy.release()
        return self

    def run(self, loop) -> None:
        """loop(team) in the caller, with the partner's work before it or after it as the class notes say."""
        team = (0, 1, self.sync)
        if self._partner is None and not self._follows:
            self._work(self.sync)
        _on_threads(_guarded(lambda: loop(team), self.sync), self._threads)()
        if self._follows:
            _on_threads(_guarded(lambda: self._work(self.sync), self.sync), self._threads)()

    def __exit__(self, kind, error, trace) -> None:
        if self._partner is None:
            return
        if kind is not None:
            _abort(self.sync)
        try:
            self._partner.join(raise_error=kind is None)
        finally:
            self._partner, self._threads = None, None
            _busy.release()


class PipelineStage:
    """The context of one call's `Pipeline`, as `rnnkit.kernels.ahead.Ahead` and `rnnkit.kernels.behind.Behind` are:
    a subclass's ``__enter__`` starts its partner's work (`_start`), `run_loop` runs the loop in the caller inside
    the context only, and leaving waits for the partner."""

    _pipeline: Pipeline | None = None

    def _start(self, work, follows: bool = False) -> None:
        """Enter a `Pipeline` over ``work`` (and ``follows``): its partner starts on the other core now."""
        self._pipeline = Pipeline(work, follows).__enter__()

    def run_loop(self, loop) -> None:
        """loop(team), a team of one part in step with the partner (inside the context only: entering it starts the
        partner)."""
        if self._pipeline is None:
            name = type(self).__name__
            raise RuntimeError(f"{name}.run_loop outside its context: enter it (with {name.lower()}: ...) to start "
                               "its partner")
        self._pipeline.run(loop)

    def __exit__(self, kind, error, trace) -> None:
        pipeline, self._pipeline = self._pipeline, None
        pipeline.__exit__(kind, error, trace)


def _guarded(job, sync: np.ndarray):
    """job, which sets ``sync``'s abort flag where it fails (so that its partner never waits for it)."""
    def run():
        try:
            job()
        except BaseException:
            _abort(sync)
            raise
    return run


def _abort(sync: np.ndarray) -> None:
    """Set ``sync``'s abort flag: neither job of a pair on it waits for the other from now on."""
    from .team import ABORT  # numba is loaded only with compiled kernels active

    sync[ABORT] = 1


def on_both_cores(sync: np.ndarray, first, second, alone, blas: bool = True) -> None:
    """first() in the caller and second() in the worker thread at once, with half the BLAS threads each (the limits
    left as they are where not ``blas``: jobs that call no BLAS), where 2 or more BLAS threads are allowed and no
    pair, team or pipeline is running; else alone(). A job that fails sets ``sync``'s abort flag (so that the other
    never waits for it), and its error is raised."""
    threads = _claim_cores()
    if not threads:
        alone()
        return
    try:
        _concurrently(_guarded(first, sync), _guarded(second, sync), threads // 2 if blas else None)
    finally:
        _busy.release()


def _claim_cores() -> int:
    """Take both cores for a pair, a team or a pipeline: the BLAS threads allowed now, holding `_busy` (which the
    caller releases), where no other holds it and 2 or more are allowed; else 0, holding nothing."""
    if not _busy.acquire(blocking=False):
        return 0
    threads = blas_threads()
    if threads < 2:
        _busy.release()
        return 0
    return threads
