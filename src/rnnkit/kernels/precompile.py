"""A layer's backward loop, and the sums behind it, compiled in other processes while this one compiles and runs its
forward: the first use of a cell family on an empty kernel cache.

numba compiles a loop entry where it is first called: a layer's forward entry at its first call, its backward entry
at its first backward, one after the other on one core (`LSTM(8, 16)` on an empty cache, this machine: 5.8 s, then
4.0). The backward entry's machine code depends on its arguments' types only, and those are known once the forward's
workspace is made, so `ahead` hands them to a child process (``python -m rnnkit.kernels.precompile``) that compiles
the entry into numba's disk cache on the other core while this process compiles and runs the forward; at the
backward's first call `wait` waits until the child has saved it, and numba loads the entry from the cache (0.03 s)
instead of compiling it. Where the backward's weight sums will go behind its loop (`rnnkit.kernels.behind`; in
float32 from 2^18 multiply-adds a step, an LSTM from B = 16, H = 64 on), their kernel is handed ahead too, to a
child of its own (2 – 3 s of compile at the backward's first call before). TorchInductor compiles its kernels in
worker processes the same way. A child only compiles: it runs no kernel and reads nothing of this process but the
entry's module, its name, the types and ``sys.path`` (its ``PYTHONPATH``). The types travel pickled between these
two processes of one interpreter, as numba's own cache index stores them.

A forward's own entry can be left to a child as well (`later`): a layer whose forward loop would run as a team
of two parts (`rnnkit.kernels.team`) compiles the team's entry, with its barriers and shares, on its first call —
the Mogrifier LSTM's 8.3 – 9.0 s of its first training call at B = 16, H = 256, whose plain loop compiles in 5.6 –
6.5 s. While that entry is compiled nowhere, the forward runs the plain loop (the same products and pointwise math
on one core: the same results, to rounding) and a child compiles the team's at the lowest priority
(`LATER_NICENESS`), so that the first call's own compiles keep the cores; the calls after it run as a team once the
entry is in the cache. That first training call, in turns on an empty cache (every child of the runs before
finished): 10.36 and 11.98 s as a team, 7.62 and 7.67 with the plain loop (7.9 – 8.5 with the child at niceness
10). The calls after it ran the plain loop for the next 10.6 s, 73 against 62 ms each as a team, 1.6 s in all.
(The same for a pipeline's writer and loop, tried: an LSTM's first call 0.4 – 0.9 s sooner, an LN-LSTM's not at all
— its backward's compiles then bound it — and the plain calls until the entries were in the cache cost the LSTM
more than that.)

Policy (``RNNKIT_COMPILE_AHEAD``, read at import; `COMPILE_AHEAD.use`, `COMPILE_AHEAD.using`): ``auto`` starts a
child only where it gets a core of its own: 2 or more BLAS threads allowed (`rnnkit.kernels.parallel.blas_threads`:
``--threads 1`` or a threadpoolctl limit of 1 keeps the work on one core) and no more than the cores less two kept
busy by other processes at one of three moments 10 ms apart (`others_running`: on Linux the threads runnable now,
not counting this process's; its own children are not others' work, and get a core each at most), so the test
suite's two workers, or Dask and Optuna workers that already fill the cores, compile in their own process as before.
The load average over the last minute was the first rule tried (GNU make's ``--load-average``); it lags by a minute:
an LSTM's first training step at B = 16, H = 256 run 15 s after another started no child and took 19.9 s (17.7
without compiling ahead, 11.4 with the child). ``always`` starts one wherever the entry is not compiled yet (the
tests); ``never`` none. A child that fails, or has not finished within `WAIT_S`, leaves the compile to this process,
as without it: nothing but the time of a first use depends on it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from multiprocessing import spawn
from pathlib import Path

from numba.core import config
from numba.core.dispatcher import Dispatcher

from .parallel import Policy

COMPILE_AHEAD = Policy("compile ahead", "RNNKIT_COMPILE_AHEAD")

#: how long a backward's first call waits for its child before compiling the entry itself (a child compiles an
#: entry in 4 – 8 s on the 2-core machines measured; one that takes this long is stuck)
WAIT_S = 120.0

#: how many times, `LOOK_INTERVAL_S` apart, ``auto`` looks for an idle core before it gives up (only where the entry
#: is compiled nowhere yet: a first use)
LOOKS, LOOK_INTERVAL_S = 3, 0.01

_asked: set = set()  # the keys `ahead` was given in this process
_ready: set = set()  # the keys `later` found compiled, or compiles where they are called
_later: dict = {}  # key → (dispatcher, types, its child or None) of the entries `later` left to a child
#: the niceness of `later`'s children (Unix): the first call's own compiles (its forward here, its backward in
#: children) keep the cores, and later calls run the compiled path until the entry is in the cache
LATER_NICENESS = 19
_children: dict[int, list[tuple[tuple, subprocess.Popen]]] = {}  # id(dispatcher) → (types, child) to wait for
_starting = 0  # children whose process is being made, not yet in `_children`
#: how often a call waiting for its entry looks at the disk cache: the entry is there before the child has exited
#: (`LSTM(8, 16)`'s first backward 0.68 – 0.83 s waiting for the exit, 0.43 – 0.53 looking at the cache)
POLL_S = 0.01
_lock = threading.RLock()  # a team's two parts, or a pair's two directions, ask and wait at once


def ahead(key: Hashable, entries: Callable[[], list[tuple]]) -> None:
    """Compile loop entries in child processes (the module notes): ``entries()`` gives [(a numba dispatcher, its
    arguments or stand-ins of their types), …] in the order the caller will need them. Asked once per ``key`` and
    process (the first call of a cell family in a dtype, say: later calls cost a set lookup), and not at all under
    ``never``; for each entry neither compiled in this process nor in the disk cache for those types, a child of its
    own starts where the policy allows. (A child each, not one for all: an LSTM's backward loop and the sums behind
    it compile beside each other and beside this process's forward, three compiles on two cores, and its first
    training step at B = 16, H = 256 took 9.2 – 9.3 s against 9.5 – 10.1 with one child compiling both in turn;
    the GRU's 9.2 – 9.5 against 9.9 – 10.0.)"""
    with _lock:
        if key in _asked or COMPILE_AHEAD.choice == "never":
            return
        _asked.add(key)
    if getattr(sys, "frozen", False):  # a frozen app: no ``-m`` to run
        return
    try:
        typed = [_typed(entry) for entry in entries()]
    except Exception:  # a guess that cannot be made (stand-ins of a workspace no test has seen): the calls compile
        return         # as without it, and only the time of a first use depends on it (the module notes)
    for dispatcher, types in typed:
        if compiled_nowhere(dispatcher, types):
            _compile_in_child(dispatcher, types)


def _compile_in_child(dispatcher, types: tuple) -> None:
    """A child compiling ``dispatcher`` for ``types``, where the policy allows one, registered for `wait`."""
    global _starting
    with _lock:  # counted from before its process exists, so that a look at the cores meanwhile knows it is ours
        if COMPILE_AHEAD.choice == "auto" and not core_to_spare():
            return
        _starting += 1
    child = None
    try:
        child = _start_child(dispatcher, types)
    finally:
        with _lock:
            _starting -= 1
            if child is not None:
                _children.setdefault(id(dispatcher), []).append((types, child))


def later(key: Hashable, dispatcher, arguments: Callable[[], tuple]) -> bool:
    """Whether a call leaves ``dispatcher``'s entry for the types of ``arguments()`` to a child and takes a path
    whose entry compiles sooner meanwhile (the module notes: a team's forward loop, run as the plain loop): the
    entry is compiled neither in this process nor in the disk cache, and a child compiles it, started at the first
    such call where the policy allows one, `LATER_NICENESS` below this process. True while that child runs; False
    once the entry is in the cache (the call loads it), where no child could take it or the child failed (the call
    compiles it, as without this), and from then on for ``key`` at the cost of a set lookup (another call of
    ``key`` whose types differ compiles its entry where it is called)."""
    with _lock:
        if key in _ready or COMPILE_AHEAD.choice == "never" or getattr(sys, "frozen", False):
            return False
        if key in _later:
            dispatcher, types, child = _later[key]
            if child is not None and child.poll() is None and not in_disk_cache(dispatcher, types):
                return True
            _ready.add(key)
            return False
        try:
            dispatcher, types = _typed((dispatcher, arguments()))
        except Exception:  # as in `ahead`: nothing but the time of a first use depends on it
            types = None
        if not compiled_nowhere(dispatcher, types):
            _ready.add(key)
            return False
        child = _start_child(dispatcher, types, LATER_NICENESS) if _spare_for_later() else None
        _later[key] = (dispatcher, types, child)
        return child is not None


def _spare_for_later() -> bool:
    """Whether `later` may start its child: under ``always``; under ``auto`` where `core_to_spare` would give a
    child a core were it not for this process's own children (they compile the call's own entries, at a higher
    priority than `later`'s)."""
    return COMPILE_AHEAD.choice == "always" or core_to_spare(children_cap=False)


def compiled_nowhere(dispatcher, types: tuple | None) -> bool:
    """Whether ``dispatcher``'s entry for ``types`` is neither compiled in this process nor in the disk cache, where
    it caches at all (types None: nothing numba compiles)."""
    return types is not None and types not in dispatcher.overloads and _cache_file(dispatcher) is not None \
        and not in_disk_cache(dispatcher, types)


def _typed(entry: tuple) -> tuple:
    """(dispatcher, the types of its arguments) of an entry; types None where the dispatcher is not numba's (under
    ``NUMBA_DISABLE_JIT`` it is the Python function itself: nothing to compile)."""
    dispatcher, arguments = entry
    if not isinstance(dispatcher, Dispatcher):
        return dispatcher, None
    return dispatcher, tuple(dispatcher.typeof_pyval(a) for a in arguments)


def wait(dispatcher, arguments: tuple) -> None:
    """Before ``dispatcher``'s call with ``arguments``: wait until the child compiling it for their types (`ahead`)
    has saved that entry in the disk cache (or has ended), so that the call loads it from there; a child not done
    within `WAIT_S` is stopped, and the call compiles as usual. A child compiling other types (a wrong guess of the
    call's kind) is not waited for. Waits without the lock: a team's two parts wait for the same child, and another
    thread may ask for another entry."""
    if not _children:  # nothing started: a dict's truth, all a call costs
        return
    types = tuple(dispatcher.typeof_pyval(a) for a in arguments)
    with _lock:
        mine = [child for wanted, child in _children.get(id(dispatcher), []) if wanted == types]
    for child in mine:
        _wait_for_entry(child, dispatcher, types)
    with _lock:
        left = [(wanted, child) for wanted, child in _children.get(id(dispatcher), [])
                if child.poll() is None and not (wanted == types and in_disk_cache(dispatcher, types))]
        if left:
            _children[id(dispatcher)] = left
        else:
            _children.pop(id(dispatcher), None)


def _wait_for_entry(child: subprocess.Popen, dispatcher, types: tuple) -> None:
    """Until ``child`` has ended or saved ``dispatcher``'s entry for ``types`` (`in_disk_cache`), looking every
    `POLL_S`; stopped after `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while child.poll() is None and not in_disk_cache(dispatcher, types):
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            return
        time.sleep(POLL_S)


def core_to_spare(children_cap: bool = True) -> bool:
    """Whether a child compiling beside this process gets a core of its own (the module notes' ``auto`` rule; without
    ``children_cap``, however many this process has started)."""
    from .parallel import blas_threads, cores_free

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2 or (cores_free() and blas_threads() < 2):  # a pair, team or pipeline (its own limits set) took 2
        return False
    with _lock:  # ours do not count as others' work; more than a core each they do not get
        children = live_children()
        if children >= cores and children_cap:
            return False
        ours = children + later_children()
        for _ in range(LOOKS):  # a moment's runnable thread (a shell, a daemon waking) does not hold a core
            others = others_running()
            if others is None or others - ours <= cores - 2:
                return True
            time.sleep(LOOK_INTERVAL_S)
    return False


def later_children() -> int:
    """This process's children compiling what `later` left to them, still running."""
    with _lock:
        return sum(child is not None and child.poll() is None for _, _, child in _later.values())


def live_children() -> int:
    """This process's children still compiling, or being started."""
    with _lock:
        return _starting + sum(child.poll() is None for pending in _children.values() for _, child in pending)


def others_running(loadavg: str = "/proc/loadavg", tasks: str = "/proc/self/task") -> float | None:
    """The cores other processes keep busy now: on Linux the threads runnable at this moment (``loadavg``'s fourth
    field) less this process's own (``tasks``, state R); elsewhere the load average over the last minute less this
    process's one core; None where neither is known."""
    try:
        running = int(Path(loadavg).read_text().split()[3].split("/")[0])
        own = sum(1 for task in Path(tasks).iterdir() if _state(task / "stat") == "R")
        return float(running - own)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):  # pragma: no cover - a platform without a load average (Windows)
        return None


def _state(stat: Path) -> str:
    """A task's scheduling state from its ``stat`` file (the field after the command name, which may hold spaces)."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # a thread that ended meanwhile
        return ""


def describe() -> str:
    """One line for ``rnnkit info``: whether a layer's first training call compiles its backward loop in another
    process, and whether the ``auto`` rule would start one now."""
    choice = COMPILE_AHEAD.choice
    if choice != "auto":
        return f"{choice} (RNNKIT_COMPILE_AHEAD={choice})"
    now = "yes now" if core_to_spare() else "not now: one core allowed, or the other cores busy"
    return ("where a core is free (" + now + "): a cell family's backward loop compiles in another process while "
            "its first training forward compiles in this one (RNNKIT_COMPILE_AHEAD=never turns it off)")


def _cache_file(dispatcher):
    """``dispatcher``'s disk cache file (numba's index and data files), or None where it caches nothing."""
    return getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)


def in_disk_cache(dispatcher, types: tuple) -> bool:
    """Whether numba's disk cache holds ``dispatcher``'s entry for ``types`` for this machine and source (the key its
    next compile would load): its index names it and the data file it names is there. (rnnkit's kernels save the data
    first, `rnnkit.kernels.cache.LockedIndexFile`; numba's own cache saves the index first, and a call that found the
    key before the data compiled the entry again. Each file is written whole, then renamed.)"""
    cache = dispatcher._cache
    key = cache._index_key(types, dispatcher.targetctx.codegen())
    files = cache._cache_file
    name = files._load_index().get(key)
    return name is not None and os.path.exists(files._data_path(name))


def _start_child(dispatcher, types: tuple, niceness: int = 0) -> subprocess.Popen | None:
    """The child process compiling ``dispatcher`` for ``types``, its request written to its standard input, at
    ``niceness`` above this process's where the system has priorities; None where it cannot start."""
    function = dispatcher.py_func
    module = sys.modules.get(function.__module__)
    request = pickle.dumps((function.__module__, getattr(module, "__file__", None), function.__qualname__,
                            pickle.dumps(types)))
    environment = child_environment()
    executable = spawn.get_executable()  # the interpreter multiprocessing starts (`multiprocessing.set_executable`)
    if not executable:
        return None
    try:
        child = subprocess.Popen([executable, "-m", __name__], stdin=subprocess.PIPE, env=environment,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child.stdin.write(request)
        child.stdin.close()
    except OSError:
        return None
    if niceness and hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, child.pid, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
        except OSError:  # a child that has ended already
            pass
    return child


def child_environment() -> dict[str, str]:
    """A child's environment: this process's, with its ``sys.path`` (its rnnkit, wherever it is) and numba's
    optimisation level as this process compiles at. rnnkit sets ``NUMBA_OPT`` only where it is imported before numba
    (`rnnkit._startup`); a program that imported numba first compiles at numba's own level, and a child left to set
    its own would save its entries under another level's file names (`rnnkit.kernels.cache`), never loaded here: the
    call then waited for the child's exit and compiled the entry again (an LSTM's first training step at B = 16,
    H = 256, numba imported first, on an empty cache: 18.2 s, 9.8 with the level handed to the child)."""
    level = config.OPT
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
            "NUMBA_OPT": "max" if level.is_opt_max else str(int(level))}


def _compile_request(request: bytes) -> None:
    """The child's work: import the entry's module (by name, else from its file), compile the entry for the types."""
    import importlib
    import importlib.util

    name, file, qualname, types = pickle.loads(request)
    try:
        module = importlib.import_module(name)
    except ImportError:
        if file is None:
            raise
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    dispatcher = module
    for part in qualname.split("."):
        dispatcher = getattr(dispatcher, part)
    dispatcher.compile(pickle.loads(types))


if __name__ == "__main__":
    _compile_request(sys.stdin.buffer.read())
