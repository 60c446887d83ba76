"""Where independent runs execute: any `concurrent.futures.Executor` — this process, a local process pool, or a
Dask cluster — behind one small interface, so `rnnkit experiment` and `rnnkit search` do not care which.

    with open_executor(scheduler=None, jobs=4) as executor:      # or scheduler="tcp://host:8786"
        for spec, result in run_windowed(executor, run_fn, specs, window=slots(executor)):
            ...

A run is a module-level function of one plain dict (its *spec*: names and numbers, never a model), so it pickles
to a process pool or a Dask worker that has nothing but rnnkit installed, and it pins its own BLAS to one thread
(the numbers of a run then do not depend on the worker's core count). Dask is optional (``pip install
'rnnkit[dask]'``); the scheduler is one we connect to, never one we start.

Dask's own futures are not `concurrent.futures.Future`s, and `concurrent.futures.as_completed` does not accept them
(dask/distributed#3695); `as_finished` takes either kind.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from ..errors import ConfigError, DependencyError
from ..validate import scheduler_address


class InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (``--jobs 1``): the same interface, no processes."""

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(e)
        return future


def start_worker(parent: int) -> None:
    """Initializer of a pool's worker processes: die with the ``parent`` process, one BLAS thread each (runs also
    pin it themselves)."""
    from threadpoolctl import threadpool_limits

    die_with_parent(parent)
    threadpool_limits(1)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process receives when its parent dies


def die_with_parent(parent: int) -> None:
    """Make this process end when ``parent`` ends, however it ends (SIGKILL included): Linux's parent-death
    signal where available, else a daemon thread that watches ``parent``. A process whose parent has already
    gone exits at once."""
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        watched = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        watched = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not watched:
        import threading

        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, every: float = 0.5) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def stop_workers(executor: cf.Executor) -> None:
    """End a process pool's workers now (their runs are abandoned): a pool shut down without waiting would
    otherwise let them finish their runs, and the interpreter's exit waits for them."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


def dask_client(scheduler: str):
    """A `distributed.Client` connected to the running scheduler at ``scheduler`` (``tcp://HOST:PORT``)."""
    scheduler_address(scheduler, "--scheduler")
    try:
        import distributed
    except ImportError:
        raise DependencyError(f"--scheduler {scheduler} needs Dask: pip install 'rnnkit[dask]'") from None
    try:
        return distributed.Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} (expected a running "
                          f"'dask scheduler' address tcp://HOST:PORT): {e}") from None


@contextmanager
def open_executor(scheduler: str | None = None, jobs: int | None = None) -> Iterator[cf.Executor]:
    """The executor for ``--scheduler`` (a Dask cluster) or ``--jobs`` (a local process pool; 1: this process;
    None: all cores). On leaving, runs not yet started are cancelled if the block failed."""
    if scheduler:
        client = dask_client(scheduler)
        executor = client.get_executor(pure=False)
        executor.rnnkit_slots = max(1, sum(client.nthreads().values()))
    elif (jobs or os.cpu_count() or 1) == 1:
        client, executor = None, InlineExecutor()
    else:
        client = None
        executor = cf.ProcessPoolExecutor(jobs or os.cpu_count(), initializer=start_worker, initargs=(os.getpid(),))
        executor.rnnkit_slots = jobs or os.cpu_count()
    try:
        yield executor
    except BaseException:
        if client is None:
            executor.shutdown(wait=False, cancel_futures=True)
            stop_workers(executor)
        else:  # a Dask executor cancels its futures when it does not wait
            executor.shutdown(wait=False)
        raise
    else:
        executor.shutdown(wait=True)
    finally:
        if client is not None:
            client.close()


def slots(executor: cf.Executor) -> int:
    """How many runs ``executor`` runs at once: its processes, or the Dask cluster's threads when it connected."""
    return getattr(executor, "rnnkit_slots", 1)


def as_finished(futures: Iterable) -> Iterator:
    """``futures`` as they finish: `concurrent.futures` futures or Dask futures (which the former's
    ``as_completed`` refuses, dask/distributed#3695)."""
    futures = list(futures)
    if all(isinstance(f, cf.Future) for f in futures):
        yield from cf.as_completed(futures)
        return
    import distributed

    yield from distributed.as_completed(futures)


def run_windowed(executor: cf.Executor, fn: Callable[[dict], dict], specs: Iterable[dict],
                 window: int) -> Iterator[tuple[dict, dict]]:
    """(spec, ``fn(spec)``) for each spec as the runs finish, with at most ``window`` runs submitted and not yet
    finished (``specs`` may be a generator that decides the next spec from the results so far). A run's exception
    is raised here, after the results before it were yielded."""
    specs = iter(specs)
    pending: dict = {}

    def fill() -> None:
        while len(pending) < window:
            spec = next(specs, None)
            if spec is None:
                return
            pending[executor.submit(fn, spec)] = spec

    fill()
    while pending:
        done = next(as_finished(pending))
        spec = pending.pop(done)
        yield spec, done.result()
        fill()
