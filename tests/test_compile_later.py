"""Compiling later (`rnnkit.kernels.precompile.later`): a forward whose team's loop is compiled nowhere yet runs the
plain loop, whose entry compiles sooner, while a child compiles the team's at a lower priority; once that entry is in
the disk cache the calls run as a team and load it; where no child can take it, the call compiles it as before."""

import os
import textwrap
import time

import numpy as np
import pytest

from rnnkit import LSTM, kernels

numba = pytest.importorskip("numba", reason="numba is not installed: nothing is compiled")

from rnnkit.kernels import parallel, precompile  # noqa: E402 - needs numba
from rnnkit.recurrent.lstm import LSTMStep  # noqa: E402


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module with one cached numba function, ``twice``, importable by the children, its disk cache empty."""
    (tmp_path / "later_probe.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit(cache=True)
        def twice(a):
            return 2 * a
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import later_probe

    yield later_probe
    import sys

    sys.modules.pop("later_probe", None)


@pytest.fixture
def fresh(monkeypatch):
    """`precompile` with nothing asked or left to a child yet in this process, the policy ``always``."""
    for name, empty in (("_ready", set()), ("_later", {}), ("_children", {}), ("_asked", set())):
        monkeypatch.setattr(precompile, name, empty)
    monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "always")


def test_an_entry_compiled_nowhere_goes_to_a_lower_priority_child_until_it_is_in_the_disk_cache(probe, fresh):
    twice, argument = probe.twice, np.arange(3.0)
    types = (numba.typeof(argument),)
    assert precompile.later("probe", twice, lambda: (argument,))
    _, _, child = precompile._later["probe"]
    try:  # where the system has priorities (Unix)
        lowest = 19  # Linux's lowest priority: a niceness above it is taken as it
        expected = min(lowest, os.getpriority(os.PRIO_PROCESS, 0) + precompile.LATER_NICENESS)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == expected
    except (ProcessLookupError, AttributeError):  # pragma: no cover - a child that had compiled and exited
        pass                                      # already; Windows (no os.getpriority)
    deadline = time.monotonic() + 120
    while precompile.later("probe", twice, lambda: (argument,)):
        assert time.monotonic() < deadline, "the child did not compile the entry"
        time.sleep(0.05)
    assert precompile.in_disk_cache(twice, types) and "probe" in precompile._ready
    assert list(twice(argument)) == [0.0, 2.0, 4.0] and twice.stats.cache_hits[types] == 1
    assert child.wait(60) == 0


def test_an_entry_compiled_here_is_not_left_to_a_child_and_its_key_is_not_asked_again(probe, fresh):
    twice, argument = probe.twice, np.arange(3)
    twice(argument)
    asked = []
    for _ in range(2):
        assert not precompile.later("probe", twice, lambda: asked.append(1) or (argument,))
    assert asked == [1] and precompile._later == {}


@pytest.mark.parametrize("policy", ["never", "no core to spare"])
def test_where_no_child_can_take_it_the_call_compiles_the_entry_itself(probe, fresh, monkeypatch, policy):
    if policy == "never":
        monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "never")
    else:
        monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "auto")
        monkeypatch.setattr(precompile, "core_to_spare", lambda children_cap=True: False)
    twice, argument = probe.twice, np.arange(3.0)
    assert not precompile.later("probe", twice, lambda: (argument,))
    assert not precompile.later("probe", twice, lambda: (argument,))
    assert not precompile.in_disk_cache(twice, (numba.typeof(argument),))


@pytest.fixture
def team_parts(monkeypatch):
    """The parts each forward loop ran with (`rnnkit.kernels.parallel.team`'s first argument), every LSTM forward
    asking for a team of two (run as the plain loop: the test's layer is too small to split)."""
    parts = []
    team = parallel.team
    monkeypatch.setattr(parallel, "team", lambda count, job, work: parts.append(count) or team(1, job, work))
    monkeypatch.setattr(LSTMStep, "team_parts",
                        lambda self, batch, loop: 2 if loop == "forward" else 1)
    return parts


@pytest.mark.parametrize("compiled", [False, True], ids=["compiled-nowhere", "compiled"])
def test_a_forward_runs_the_plain_loop_while_its_teams_entry_is_left_to_a_child(team_parts, monkeypatch, compiled):
    asked = []
    monkeypatch.setattr(precompile, "later", lambda key, loop, arguments: asked.append((key, arguments()))
                        or not compiled)
    layer = LSTM(8, 8, rng=0)  # an input as wide as the state: one loop, not a batch's halves
    with kernels.using("compiled"), parallel.using_teams("auto"), parallel.using_pipelines("never"):
        layer(np.zeros((3, 2, 8), np.float32))
    assert team_parts == [2 if compiled else 1]
    [(key, arguments)] = asked
    assert key == (type(layer.cells[0]), np.dtype(np.float32), "forward team")
    assert arguments[-1][:2] == (0, 2)  # the team's types: a part of two with its sync array


def test_a_team_asked_for_always_is_not_left_to_a_child(team_parts, monkeypatch):
    monkeypatch.setattr(precompile, "later", lambda *arguments: pytest.fail("later was asked"))
    with kernels.using("compiled"), parallel.using_teams("always"), parallel.using_pipelines("never"):
        LSTM(8, 8, rng=0)(np.zeros((3, 2, 8), np.float32))
    assert team_parts == [2]


class Running:
    """A child as `precompile` sees one while it compiles."""

    def poll(self):
        return None


def test_a_later_child_is_this_processs_own_work_and_does_not_count_against_the_children_cap(fresh, monkeypatch):
    monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "auto")
    monkeypatch.setattr(parallel, "blas_threads", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(precompile, "others_running", lambda: 1.0)  # the later child below, runnable
    monkeypatch.setitem(precompile._later, "probe", (None, None, Running()))
    assert precompile.core_to_spare()  # the backward's children still get their cores
    monkeypatch.setattr(precompile, "_starting", 2)
    assert not precompile.core_to_spare() and precompile.core_to_spare(children_cap=False)
