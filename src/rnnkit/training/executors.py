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


def one_blas_thread() -> None:
    """Initializer of a pool's worker processes: one BLAS thread each (runs also pin it themselves)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def dask_client(scheduler: str):
    """A `distributed.Client` connected to the running scheduler at ``scheduler`` (``tcp://HOST:PORT``)."""
    try:
        import distributed
    except ImportError:
        raise DependencyError(f"--scheduler {scheduler} needs Dask: pip install 'rnnkit[dask]'") from None
    try:
        return distributed.Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as e:
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
        executor = cf.ProcessPoolExecutor(jobs or os.cpu_count(), initializer=one_blas_thread)
        executor.rnnkit_slots = jobs or os.cpu_count()
    try:
        yield executor
    except BaseException:
        if client is None:
            executor.shutdown(wait=False, cancel_futures=True)
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
