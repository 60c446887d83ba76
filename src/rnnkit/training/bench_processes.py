"""The parent side of `rnnkit bench`: one worker process per library, driven in turns over pipes.

Why processes. After a GEMM, OpenBLAS's worker threads busy-wait (2^28 cycles by default) and torch's OpenMP
threads spin after each parallel region; two libraries interleaved in one process steal each other's cores
(torch's GRU at B=1 went from 7 to 63 ms here). So each library runs in its own worker process
(`rnnkit.training.bench_worker`) with its thread pools pinned to ``--threads``, and the two take turns: rnnkit,
torch, rnnkit, torch, ... one timed call per turn. While one worker has its turn the other is stopped (SIGSTOP,
then SIGCONT for its own turn, where the system has these signals), so not even a spinning thread of the idle
library can run. ``OPENBLAS_THREAD_TIMEOUT=4`` also lets OpenBLAS's workers sleep almost at once; torch's OpenMP
threads are left as they are (``OMP_WAIT_POLICY=PASSIVE`` slowed torch's small cases by up to 25× here, which
would flatter rnnkit). Requests and replies are JSON lines over the workers' stdin and stdout (never pickle).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from ..errors import ConfigError, DependencyError
from ..machine import cores_round_trip_ns, steal_seconds

#: the environment variables that fix a thread pool's size before its library loads
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
CAN_STOP = hasattr(signal, "SIGSTOP")


def child_environment(threads: int | None = None, kernels: str | None = None) -> dict:
    """The environment of a bench child: OpenBLAS's workers sleep instead of spinning; every thread pool sized
    ``threads`` (where given); rnnkit's step kernels ``kernels`` (where given)."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    if threads:
        env |= {name: str(threads) for name in THREAD_VARIABLES}
    if kernels:
        env["RNNKIT_KERNELS"] = kernels
    return env


class WorkerProcess:
    """One library's worker: ``request(op, **fields)`` runs while every other worker is stopped."""

    def __init__(self, library: str, threads: int, kernels: str | None = None):
        self.library = library
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rnnkit.training.bench_worker", library, str(threads), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8",
            env=child_environment(threads, kernels))
        self.hello = self.request("hello")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _signal(self, sig_name: str) -> None:
        if CAN_STOP and self.process.poll() is None:
            os.kill(self.process.pid, getattr(signal, sig_name))

    def _stop(self) -> None:
        """SIGSTOP the worker and wait until it has stopped: the signal is delivered asynchronously, and a worker
        still running on the other core would take time from the next turn's library."""
        if not CAN_STOP or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGSTOP)
        _, status = os.waitpid(self.process.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):  # it ended meanwhile: keep its exit status for the error message
            self.process.returncode = os.waitstatus_to_exitcode(status)

    def request(self, op: str, **fields) -> dict:
        """Send one request with this worker running, then stop it again; a failed request raises."""
        self._signal("SIGCONT")
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        finally:
            self._stop()
        if not line:
            raise RuntimeError(f"bench: the {self.library} worker (pid {self.pid}) ended unexpectedly "
                               f"(exit status {self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            kind = {"dependency": DependencyError, "config": ConfigError}.get(reply.get("kind"), RuntimeError)
            raise kind(f"bench ({self.library} worker): {reply['error']}")
        return reply

    def close(self) -> None:
        """End the worker (let it run, ask it to exit, wait a little, else kill it)."""
        self._signal("SIGCONT")
        try:
            self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


class Workers:
    """The worker processes of one bench, one per library (a context manager that ends them all)."""

    def __init__(self, libraries: tuple[str, ...], threads: int, kernels: str | None = None):
        self.by_library: dict[str, WorkerProcess] = {}
        try:
            for library in libraries:
                self.by_library[library] = WorkerProcess(library, threads, kernels)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getitem__(self, library: str) -> WorkerProcess:
        return self.by_library[library]

    def close(self) -> None:
        for worker in self.by_library.values():
            worker.close()

    def meta(self) -> dict:
        """What a bench's JSON ``meta`` says of its workers, per library: ``workers`` (the pid), ``thread_pools`` and
        ``versions`` (`rnnkit.training.bench_worker.library_version`), as each worker reports them."""
        workers = self.by_library.items()
        return {"workers": {library: worker.pid for library, worker in workers},
                "thread_pools": {library: worker.hello["threads"] for library, worker in workers},
                "versions": {library: worker.hello["version"] for library, worker in workers}}


def alternate(turns: list[tuple[WorkerProcess, str]], repeats: int, warmup: int,
              cases: dict[str, dict]) -> Iterator[dict]:
    """Prepare each ``(worker, key)`` of ``turns`` with ``cases[key]`` (``warmup`` untimed calls), then time them in
    turns, ``repeats`` rounds of one timed call each (A B A B ...); yield one sample per call: ``key``,
    ``library``, ``pid``, ``ms``, ``start``, ``end``, ``steal_ms``, the host's steal time over the turn
    (`rnnkit.machine.steal_seconds`; None where the system does not count it), and ``round_trip_ns``, how far apart
    the two cores were just before it (measured in this process with every worker stopped,
    `rnnkit.machine.cores_round_trip_ns`; None where it could not be)."""
    for worker, key in turns:
        worker.request("prepare", key=key, case=cases[key], warmup=warmup)
    for _ in range(repeats):
        for worker, key in turns:
            distance = cores_round_trip_ns()
            before = steal_seconds()
            sample = worker.request("time", key=key)
            after = steal_seconds()
            steal = None if before is None or after is None else (after - before) * 1e3
            yield {"key": key, "library": worker.library, **sample, "steal_ms": steal, "round_trip_ns": distance}
    for worker in {id(w): w for w, _ in turns}.values():
        worker.request("clear")
