"""Two independent recurrences at once: the two directions of a bidirectional layer, each on its own core.

Each direction's whole time loop is one compiled call that releases the GIL (``nogil``), and its skinny per-step
GEMMs gain little from a second BLAS thread, so running the two directions side by side, each with a one-thread
BLAS, beats running them one after the other with every small product split over two threads (measured in
``docs/performance.md``). `pair` runs the second job in a worker thread while the caller runs the first:

* it never oversubscribes: during the pair every BLAS NumPy and the compiled loop call (threadpoolctl's view) is
  limited to half its threads (at least 1), and with fewer than 2 BLAS threads allowed (``--threads 1``,
  ``threadpoolctl.threadpool_limits(1)``) the jobs run one after the other;
* the results are bit-identical to running the jobs one after the other with OpenBLAS (each job's arithmetic is
  the same; ``tests/test_parallel_directions.py``), and equal within rounding with MKL (``RNNKIT_BLAS=mkl``), whose
  products depend on its thread count;
* one pair at a time per process (a second caller meanwhile runs its jobs one after the other), and the worker is
  made again in a forked child.

``RNNKIT_PARALLEL_DIRECTIONS=0`` (read at import) or ``rnnkit.kernels.parallel.enable(False)`` turns it off.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

_enabled = os.environ.get("RNNKIT_PARALLEL_DIRECTIONS", "1").strip() != "0"
_busy = threading.Lock()
_worker: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, the worker)
_blas = None  # threadpoolctl's controllers of the BLAS libraries, found once


def enable(on: bool = True) -> None:
    """Run the two directions of a layer concurrently where `pair` allows it (``on``), or always in turn."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    return _enabled


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


def pair(first, second):
    """(first(), second()): concurrently, each with half the BLAS threads, where enabled, 2 or more BLAS threads
    are allowed and no other pair is running; else one after the other."""
    if not _enabled or not _busy.acquire(blocking=False):
        return first(), second()
    try:
        threads = blas_threads()
        if threads < 2:
            return first(), second()
        return _concurrently(first, second, threads // 2)
    finally:
        _busy.release()


def _concurrently(first, second, threads: int):
    libraries = _blas_libraries()
    previous = [lib.num_threads for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(threads)
    try:
        future = _executor().submit(second)
        try:
            a = first()
        finally:
            wait([future])
        return a, future.result()
    finally:
        for lib, n in zip(libraries, previous):
            lib.set_num_threads(n)
