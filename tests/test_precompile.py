"""Compiling ahead (`rnnkit.kernels.precompile`): the types a training forward hands to another process are the
ones its backward loop is called with, for every cell of the catalogue; a child compiles an entry into numba's disk
cache, from which this process then loads it; and the policy starts no child where it should not."""

import os
import textwrap

import numpy as np
import pytest

from rnnkit import kernels, no_grad
from rnnkit.errors import ConfigError
from rnnkit.recurrent import catalog, halves

numba = pytest.importorskip("numba", reason="numba is not installed: nothing is compiled")

from rnnkit.kernels import behind, parallel, precompile  # noqa: E402 - needs numba

CONFIGS = {entry.variant_label(variant): (entry.layer, options)
           for entry in catalog.entries() for variant, options in entry.variants.items()}


@pytest.fixture
def calls(monkeypatch):
    """{"ahead": [(dispatcher, types)], "called": [(dispatcher, types)]}: the entries and types `precompile.ahead`
    was handed in the test (no child started), and the types each entry that waits for its child (`precompile.wait`:
    a backward loop, the sums behind it) was then called with."""
    seen = {"ahead": [], "called": []}

    def types(dispatcher, arguments):
        return dispatcher, tuple(dispatcher.typeof_pyval(a) for a in arguments)

    monkeypatch.setattr(precompile, "ahead", lambda key, entries: seen["ahead"].extend(
        types(*entry) for entry in entries()))
    monkeypatch.setattr(precompile, "wait", lambda dispatcher, arguments: seen["called"].append(
        types(dispatcher, arguments)))
    return seen


def train_once(layer, steps, batch, dtype, lengths=None):
    x = np.random.default_rng(0).standard_normal((batch, steps, layer.input_size)).astype(dtype)
    y, _ = layer.forward(x, lengths=lengths)
    layer.backward(np.ones_like(y))


@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_types_handed_ahead_are_the_ones_the_backward_loop_is_called_with(name, ragged, calls):
    cls, options = CONFIGS[name]
    layer = cls(3, 8, **options)
    with kernels.using("compiled"):
        train_once(layer, 5, 4, np.float32, lengths=np.array([5, 4, 2, 1]) if ragged else None)
    assert calls["ahead"] and calls["called"]
    assert set(calls["ahead"]) == set(calls["called"]), name


SUMS_BEHIND = ("lstm", "gru-reset-after", "rnn-tanh", "lnlstm", "lngru")


@pytest.mark.parametrize("name", [*SUMS_BEHIND, "gru-reset-before", "mogrifier"])
def test_with_teams_and_pipelines_on_the_types_handed_ahead_are_the_backward_loops_and_its_sums(name, calls,
                                                                                               monkeypatch):
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "always")
    monkeypatch.setattr(halves.HALVES, "choice", "never")
    if parallel.blas_threads() < 2:
        pytest.skip("one BLAS thread allowed: every loop runs alone")
    cls, options = CONFIGS[name]
    layer = cls(64, 64, **options)
    with kernels.using("compiled"):
        train_once(layer, 24, 16, np.float32)
    assert set(calls["ahead"]) == set(calls["called"]), name
    backward = [types for dispatcher, types in calls["called"] if dispatcher.py_func.__name__.endswith("backward")]
    on_both_cores = {types[-1] != numba.types.none for types in backward}
    assert on_both_cores == {name in SUMS_BEHIND}  # sums behind the loop
    sums = [dispatcher for dispatcher, _ in calls["ahead"] if dispatcher is behind.take_tasks]
    assert len(sums) == (name in SUMS_BEHIND)


def test_a_layer_hands_its_backward_ahead_at_its_first_training_call_only(calls):
    layer = CONFIGS["lstm"][0](3, 8)
    with kernels.using("compiled"):
        for _ in range(3):
            train_once(layer, 5, 4, np.float32)
    assert len(calls["ahead"]) == 1 and len(calls["called"]) == 3


def test_an_inference_call_hands_nothing_ahead(calls):
    layer = CONFIGS["lstm"][0](3, 8)
    with kernels.using("compiled"), no_grad():
        layer.forward(np.ones((2, 5, 3), np.float32))
    assert calls["ahead"] == []


@pytest.fixture
def kernel_module(tmp_path, monkeypatch):
    """A module of two cached numba functions, ``twice`` and ``thrice``, importable by the children (its directory on
    sys.path), its disk cache beside it, empty."""
    (tmp_path / "ahead_probe.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit(cache=True)
        def twice(a):
            return 2 * a

        @numba.njit(cache=True)
        def thrice(a):
            return 3 * a
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ahead_probe

    yield ahead_probe
    del ahead_probe
    import sys

    sys.modules.pop("ahead_probe", None)


@pytest.fixture
def fresh_policy(monkeypatch):
    """`precompile` with nothing asked yet in this process, the policy ``always``."""
    monkeypatch.setattr(precompile, "_asked", set())
    monkeypatch.setattr(precompile, "_children", {})
    monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "always")


def test_a_child_compiles_the_entry_into_the_disk_cache_and_the_call_loads_it(kernel_module, fresh_policy):
    twice, argument = kernel_module.twice, np.arange(3.0)
    types = (numba.typeof(argument),)
    assert not precompile.in_disk_cache(twice, types)
    precompile.ahead("probe", lambda: [(twice, (argument,))])
    assert len(precompile._children[id(twice)]) == 1
    precompile.wait(twice, (argument,))
    assert precompile._children == {}
    assert precompile.in_disk_cache(twice, types)
    assert list(twice(argument)) == [0.0, 2.0, 4.0]
    assert twice.stats.cache_hits[types] == 1 and not twice.stats.cache_misses


def test_each_entry_handed_ahead_compiles_in_a_child_of_its_own_and_each_call_loads_its_own(kernel_module,
                                                                                            fresh_policy):
    twice, thrice, argument = kernel_module.twice, kernel_module.thrice, np.arange(3.0)
    precompile.ahead("probe", lambda: [(twice, (argument,)), (thrice, (argument,))])
    [(_, child)], [(_, other)] = precompile._children[id(twice)], precompile._children[id(thrice)]
    assert child is not other and precompile.live_children() == 2
    precompile.wait(thrice, (argument,))
    precompile.wait(twice, (argument,))
    assert precompile._children == {}
    assert list(twice(argument)) == [0.0, 2.0, 4.0] and list(thrice(argument)) == [0.0, 3.0, 6.0]
    assert twice.stats.cache_hits and thrice.stats.cache_hits


class CompilingOn:
    """A child process as `precompile` sees one, still running (its interpreter exiting, say)."""

    killed = False

    def poll(self):
        return None

    def kill(self):  # pragma: no cover - only where the test fails
        self.killed = True


def test_a_call_waits_for_its_entry_in_the_cache_not_for_the_child_to_exit(kernel_module, fresh_policy,
                                                                           monkeypatch):
    twice, argument = kernel_module.twice, np.arange(3.0)
    twice(argument)  # saved in the disk cache, as a child saves it before its interpreter exits
    child = CompilingOn()
    types = (numba.typeof(argument),)
    monkeypatch.setitem(precompile._children, id(twice), [(types, child)])
    monkeypatch.setattr(precompile, "WAIT_S", 5.0)
    precompile.wait(twice, (argument,))
    assert not child.killed and precompile._children == {}


def test_a_key_is_asked_once_and_an_entry_compiled_here_starts_no_child(kernel_module, fresh_policy):
    twice, argument = kernel_module.twice, np.arange(3)
    twice(argument)  # compiled in this process
    entries = []
    precompile.ahead("probe", lambda: entries.append(1) or [(twice, (argument,))])
    precompile.ahead("probe", lambda: entries.append(2) or [(twice, (argument,))])
    assert entries == [1] and precompile._children == {}


def test_the_call_does_not_wait_for_a_child_compiling_other_types(kernel_module, fresh_policy):
    twice = kernel_module.twice
    precompile.ahead("probe", lambda: [(twice, (np.arange(3.0),))])
    [(_, child)] = precompile._children[id(twice)]
    precompile.wait(twice, (np.arange(3),))  # int64, not the child's float64
    assert child.poll() is None  # still starting (a child takes about half a second to import numba): not waited for
    precompile.wait(twice, (np.arange(3.0),))
    assert precompile.in_disk_cache(twice, (numba.typeof(np.arange(3.0)),)) and precompile._children == {}
    assert child.wait(60) == 0


@pytest.mark.parametrize("level, variable", [(2, "2"), (3, "3"), ("max", "max")])
def test_a_child_compiles_at_this_processs_optimisation_level(level, variable, monkeypatch):
    from numba.core import config

    monkeypatch.setattr(config, "OPT", config._OptLevel(level))  # as numba reads it, e.g. imported before rnnkit
    monkeypatch.delenv("NUMBA_OPT", raising=False)
    assert precompile.child_environment()["NUMBA_OPT"] == variable


def test_an_entry_whose_index_is_saved_before_its_data_is_not_in_the_cache_yet(kernel_module):
    twice, argument = kernel_module.twice, np.arange(3.0)
    types = (numba.typeof(argument),)
    twice(argument)  # compiled and saved: index and data
    assert precompile.in_disk_cache(twice, types)
    files = twice._cache._cache_file
    data = files._data_path(files._load_index()[twice._cache._index_key(types, twice.targetctx.codegen())])
    os.remove(data)  # numba's own cache writes the index first: the moment before its data file is there
    assert not precompile.in_disk_cache(twice, types)


def test_entries_that_cannot_be_made_leave_the_compile_to_the_calls(fresh_policy):
    def entries():
        raise AttributeError("'Workspace' object has no attribute 'inner'")

    precompile.ahead("unmade", entries)  # the training forward that asks goes on
    assert precompile._children == {}


def test_a_plain_python_function_as_numba_disable_jit_leaves_is_not_compiled_ahead(fresh_policy):
    def twice(a):
        return 2 * a

    precompile.ahead("plain", lambda: [(twice, (np.arange(3.0),))])
    assert precompile._children == {}


def test_a_child_that_fails_leaves_the_compile_to_the_call(tmp_path, fresh_policy, monkeypatch):
    (tmp_path / "ahead_broken.py").write_text("import numba\n\n@numba.njit(cache=True)\ndef one(a):\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import ahead_broken

    (tmp_path / "ahead_broken.py").write_text("raise ImportError('gone')\n")  # what the child finds
    precompile.ahead("broken", lambda: [(ahead_broken.one, (1.5,))])
    precompile.wait(ahead_broken.one, (1.5,))
    assert ahead_broken.one(1.5) == 1.5


@pytest.mark.parametrize("threads, others, cores, spare", [(2, 0.0, 2, True), (2, 1.0, 2, False), (1, 0.0, 2, False),
                                                          (2, 0.0, 1, False), (8, 2.0, 4, True), (2, None, 2, True)])
def test_auto_starts_a_child_only_where_it_gets_a_core_of_its_own(threads, others, cores, spare, fresh_policy,
                                                                   monkeypatch):
    monkeypatch.setattr(parallel, "blas_threads", lambda: threads)
    monkeypatch.setattr(precompile, "others_running", lambda: others)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert precompile.core_to_spare() is spare


def test_auto_looks_again_where_another_process_ran_at_that_moment_and_gives_up_after_three_looks(fresh_policy,
                                                                                                 monkeypatch):
    monkeypatch.setattr(parallel, "blas_threads", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    looks = iter([1.0, 1.0, 0.0])
    monkeypatch.setattr(precompile, "others_running", lambda: next(looks))
    assert precompile.core_to_spare()
    looks = iter([1.0, 1.0, 1.0, 0.0])
    assert not precompile.core_to_spare()


def test_its_own_children_are_not_others_work_but_get_a_core_each_at_most(fresh_policy, monkeypatch):
    monkeypatch.setattr(parallel, "blas_threads", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(precompile, "others_running", lambda: 1.0)  # the one child below, runnable
    monkeypatch.setattr(precompile, "_starting", 1)  # its process made, not yet registered
    assert precompile.core_to_spare()
    monkeypatch.setattr(precompile, "_starting", 2)
    assert not precompile.core_to_spare()


def test_inside_a_pipeline_the_threads_allowed_are_the_ones_it_took(fresh_policy, monkeypatch):
    monkeypatch.setattr(parallel, "blas_threads", lambda: 1)  # each side's share while the partner runs
    monkeypatch.setattr(precompile, "others_running", lambda: 0.0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(parallel, "cores_free", lambda: False)
    assert precompile.core_to_spare()


def test_the_cores_other_processes_keep_busy_are_the_runnable_threads_not_this_processs(tmp_path):
    (tmp_path / "loadavg").write_text("1.93 1.20 0.88 4/312 40123\n")
    for task, state in [("100", "R"), ("101", "S"), ("102", "R")]:
        (tmp_path / "task" / task).mkdir(parents=True)
        (tmp_path / "task" / task / "stat").write_text(f"{task} (python3 (a b)) {state} 1 2 3\n")
    assert precompile.others_running(tmp_path / "loadavg", tmp_path / "task") == 2.0


def test_never_starts_no_child_and_asks_for_no_entry(fresh_policy, monkeypatch):
    monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "never")
    precompile.ahead("never", lambda: pytest.fail("the entry was asked for"))
    with pytest.raises(ConfigError, match="compile ahead must be one of auto, always, never, got 'sometimes'"):
        precompile.COMPILE_AHEAD.use("sometimes")


def test_the_machine_report_says_whether_backward_loops_compile_ahead(monkeypatch):
    from rnnkit.machine import report

    monkeypatch.setattr(precompile.COMPILE_AHEAD, "choice", "never")
    line = next(line for line in report() if line.startswith("backward loops compiled ahead: "))
    assert line.endswith("never (RNNKIT_COMPILE_AHEAD=never)")
