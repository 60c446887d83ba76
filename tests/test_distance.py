"""How far apart the two cores are (`rnnkit.kernels.distance`): a measured round trip, or none where it cannot be
measured; reused while fresh; the worker kept off the caller's core and given its affinity back; and the pipelines'
policy taking narrow inputs only while the cores are far."""

import os
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnkit

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")
from rnnkit.kernels import ahead as ahead_kernels  # noqa: E402 - needs numba
from rnnkit.kernels import distance, parallel  # noqa: E402
from rnnkit.kernels import team as team_kernels  # noqa: E402
from rnnkit.machine import report  # noqa: E402
from rnnkit.recurrent import halves  # noqa: E402


@pytest.fixture
def fresh(monkeypatch):
    """No measurement yet, a clock that the test moves (``clock[0]``), and `round_trip_ns` answering from
    ``answers`` in turn; the list of the answers asked for."""
    clock, answers, asked = [100.0], [], []
    monkeypatch.setattr(distance, "_last", (float("-inf"), None))
    monkeypatch.setattr(distance.time, "monotonic", lambda: clock[0])

    def measured():
        asked.append(answers[len(asked)])
        return asked[-1]
    monkeypatch.setattr(distance, "round_trip_ns", measured)
    return clock, answers, asked


def both_cores_allowed() -> bool:
    return parallel.blas_threads() >= 2 and parallel.cores_free()


def test_the_round_trip_between_the_two_cores_is_measured_in_nanoseconds_or_not_at_all():
    if not both_cores_allowed():
        pytest.skip("one thread allowed: nothing to measure")
    measured = distance.round_trip_ns()
    assert measured is None or 0 < measured < distance.TURNS_NS  # None: the two threads took turns on one core
    assert parallel.cores_free()


def test_nothing_is_measured_with_one_thread_allowed_or_while_a_team_holds_the_cores():
    with threadpool_limits(1):
        assert distance.round_trip_ns() is None
    assert parallel._busy.acquire(blocking=False)
    try:
        assert distance.round_trip_ns() is None
    finally:
        parallel._busy.release()


def test_a_measurement_is_reused_while_fresh_then_made_again(fresh):
    clock, answers, asked = fresh
    answers += [60.0, 330.0]
    assert distance.cores_near() and asked == [60.0]
    clock[0] += distance.FRESH_SECONDS / 2
    assert distance.cores_near() and asked == [60.0]
    clock[0] += distance.FRESH_SECONDS
    assert not distance.cores_near() and asked == [60.0, 330.0]


def test_the_far_threshold_separates_near_from_far(fresh):
    clock, answers, _ = fresh
    answers += [distance.FAR_NS - 1, distance.FAR_NS]
    assert distance.cores_near()
    clock[0] += 2 * distance.FRESH_SECONDS
    assert not distance.cores_near()


def test_a_try_without_a_measurement_keeps_the_last_answer_and_none_at_all_counts_as_near(fresh):
    clock, answers, asked = fresh
    answers += [None, 330.0, None]
    assert distance.cores_near()
    clock[0] += 2 * distance.FRESH_SECONDS
    assert not distance.cores_near()
    clock[0] += 2 * distance.FRESH_SECONDS
    assert not distance.cores_near() and len(asked) == 3


def test_a_try_without_a_measurement_is_not_made_again_sooner_than_a_measurement(fresh):
    clock, answers, asked = fresh
    answers += [None, 60.0]
    assert distance.cores_near() and distance.cores_near() and len(asked) == 1
    clock[0] += 2 * distance.FRESH_SECONDS
    assert distance.cores_near() and len(asked) == 2


def test_no_try_is_made_while_a_pair_team_or_pipeline_holds_the_cores(fresh):
    clock, answers, asked = fresh
    assert parallel._busy.acquire(blocking=False)
    try:
        assert distance.cores_near() and asked == []
    finally:
        parallel._busy.release()
    answers.append(330.0)
    assert not distance.cores_near() and asked == [330.0]  # the try inside did not count as one


def test_the_first_measurement_of_a_process_does_not_wait_for_the_workers_compile(monkeypatch):
    """Each half is loaded in the caller first: a worker compiling its half would answer long after the caller gave
    up (tests/test_distance.py's other waits)."""
    loaded = []
    monkeypatch.setattr(distance, "_load_kernels", lambda: loaded.append(True))
    distance.round_trip_ns()
    assert loaded == [True]


def test_the_answering_thread_is_kept_off_the_callers_cpu_and_given_its_affinity_back():
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a process allowed on two CPUs or more (Linux)")
    seen = {}

    def answerer():
        before = os.sched_getaffinity(0)
        cpu = min(before)
        with distance._Elsewhere(cpu):
            seen["inside"] = os.sched_getaffinity(0)
        seen["before"], seen["after"], seen["cpu"] = before, os.sched_getaffinity(0), cpu
    worker = threading.Thread(target=answerer)
    worker.start()
    worker.join(10)
    assert seen["inside"] == seen["before"] - {seen["cpu"]} and seen["after"] == seen["before"]
    with distance._Elsewhere(None):  # nothing to keep off: nothing changes
        assert os.sched_getaffinity(0) == seen["before"]


def test_a_failed_answerer_never_leaves_the_caller_waiting_and_frees_the_cores(monkeypatch):
    if not both_cores_allowed():
        pytest.skip("one thread allowed: nothing to measure")

    def fails(sync, rounds):
        raise RuntimeError("answerer failed")
    distance._load_kernels()
    monkeypatch.setattr(distance, "_answer", fails)
    monkeypatch.setattr(distance, "_load_kernels", lambda: None)
    with pytest.raises(RuntimeError, match="answerer failed"):
        distance.round_trip_ns()
    assert parallel.cores_free()


@pytest.mark.parametrize(("dtype", "inputs", "depth", "near", "expected"), [
    (np.float32, 64, 256, True, False), (np.float32, 64, 256, False, True), (np.float32, 191, 256, False, True),
    (np.float32, 64, 512, False, False), (np.float32, 256, 512, False, False), (np.float32, 256, 256, False, True),
    (np.float32, 512, 256, False, False), (np.float64, 64, 256, False, False)])
def test_the_automatic_policy_pipelines_narrow_inputs_to_states_up_to_256_only_while_the_cores_are_far(
        dtype, inputs, depth, near, expected, monkeypatch):
    monkeypatch.setattr(parallel.PIPELINES, "choice", "auto")
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: True)
    monkeypatch.setattr(distance, "cores_near", lambda: near)
    assert parallel.pipeline_pays(dtype, 2, inputs, depth) is expected


def test_the_distance_is_asked_only_where_it_changes_the_choice(monkeypatch):
    def never():
        raise AssertionError("cores_near asked")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "auto")
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: True)
    monkeypatch.setattr(distance, "cores_near", never)
    for dtype, parts, inputs, depth in ((np.float32, 2, 192, 256), (np.float32, 2, 64, 512), (np.float64, 2, 64, 256),
                                        (np.float32, 1, 64, 256)):
        parallel.pipeline_pays(dtype, parts, inputs, depth)


@pytest.mark.parametrize("near", [True, False], ids=["near", "far"])
def test_a_narrow_input_layer_runs_a_team_while_the_cores_are_near_and_a_pipeline_while_far(near, monkeypatch):
    from rnnkit.kernels.blas import panels_apply

    if not both_cores_allowed() or not panels_apply(np.float32):
        pytest.skip("needs two threads and the products on panels (AVX-512)")
    written = []
    original = ahead_kernels.Ahead.write
    monkeypatch.setattr(ahead_kernels.Ahead, "write", lambda self, sync: written.append(1) or original(self, sync))
    monkeypatch.setattr(parallel.PIPELINES, "choice", "auto")
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")  # a team where the policy would take one
    monkeypatch.setattr(halves.HALVES, "choice", "never")  # which two halves of the batch would take instead
    monkeypatch.setattr(distance, "cores_near", lambda: near)
    layer = rnnkit.LSTM(64, 256, rng=0)
    x = np.random.default_rng(1).standard_normal((8, 12, 64)).astype(np.float32)
    with rnnkit.no_grad():
        got = layer.forward(x)[0]
    monkeypatch.setattr(parallel.PIPELINES, "choice", "never")
    with rnnkit.no_grad():
        expected = layer.forward(x)[0]
    assert bool(written) is not near
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN, rnnkit.LayerNormLSTM, rnnkit.LayerNormGRU],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize(("inputs", "hidden"), [(64, 256), (191, 256)])
def test_the_cores_distance_never_changes_a_result(cls, inputs, hidden, monkeypatch):
    """Near, a team; far, a pipeline (`parallel.FAR_STATE`): the outputs and every gradient the same to the bit, so a
    resumed run computes what the uninterrupted one did whatever the host did with the CPUs meanwhile."""
    from rnnkit.kernels.blas import panels_apply

    if not both_cores_allowed() or not panels_apply(np.float32):
        pytest.skip("needs two threads and the products on panels (AVX-512)")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "auto")
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")
    monkeypatch.setattr(halves.HALVES, "choice", "never")  # else the batch in two halves, near or far
    x = np.random.default_rng(1).standard_normal((16, 10, inputs)).astype(np.float32)
    dy = np.random.default_rng(2).standard_normal((16, 10, hidden)).astype(np.float32)
    written, original = [], ahead_kernels.Ahead.write
    monkeypatch.setattr(ahead_kernels.Ahead, "write", lambda self, sync: written.append(1) or original(self, sync))
    results = []
    for near in (True, False):
        monkeypatch.setattr(distance, "cores_near", lambda near=near: near)
        layer = cls(inputs, hidden, rng=0)
        y, _ = layer.forward(x)
        dx, _ = layer.backward(dy)
        results.append([y, dx, *(p.grad for p in layer.parameters())])
        assert bool(written) is not near  # a team near, a pipeline far
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_the_machine_report_says_how_far_apart_the_cores_are():
    line = next(line for line in report() if line.startswith("the two cores: "))
    assert "round trip" in line or "not measured" in line


def test_a_worker_late_to_start_gives_no_measurement_and_is_told_to_stop(monkeypatch):
    if not both_cores_allowed():
        pytest.skip("one thread allowed: nothing to measure")
    answer, told = distance._answer, []

    def late(sync, rounds):  # the host gives the other core to another program until the caller gave up
        while not team_kernels.aborted(sync):
            time.sleep(0.001)
        told.append(True)
        answer(sync, rounds)
    distance._load_kernels()
    monkeypatch.setattr(distance, "_answer", late)
    monkeypatch.setattr(distance, "_load_kernels", lambda: None)
    assert distance.round_trip_ns() is None
    assert told == [True] and parallel.cores_free()


def test_a_worker_that_stops_answering_gives_no_measurement_and_is_told_to_stop(monkeypatch):
    if not both_cores_allowed():
        pytest.skip("one thread allowed: nothing to measure")
    stopped = []

    def stalls(sync, rounds):
        sync[team_kernels.READY] = 1  # here, then no answer
        while not team_kernels.aborted(sync):
            time.sleep(0.001)
        stopped.append(True)
    distance._load_kernels()
    monkeypatch.setattr(distance, "_answer", stalls)
    monkeypatch.setattr(distance, "_load_kernels", lambda: None)
    assert distance.round_trip_ns() is None
    assert stopped == [True] and parallel.cores_free()
