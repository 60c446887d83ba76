"""The two directions of a bidirectional layer run at once (`rnnkit.kernels.parallel`), each with half the BLAS
threads, only where both run their whole loop in one compiled call and two BLAS threads are allowed; the results
are bit-identical to running them in turn, and the BLAS limits are restored whatever happens."""

import threading

import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit.kernels import parallel

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
threadpoolctl = pytest.importorskip("threadpoolctl")
from rnnkit.kernels import blas  # noqa: E402 - needs numba

CELLS = {"lstm": (rnnkit.LSTM, {}), "gru": (rnnkit.GRU, {}), "rnn": (rnnkit.RNN, {}),
         "indrnn": (rnnkit.IndRNN, {}), "mingru": (rnnkit.MinGRU, {}), "lnlstm": (rnnkit.LayerNormLSTM, {}),
         "lngru": (rnnkit.LayerNormGRU, {}), "rhn": (rnnkit.RHN, {"depth": 2}),
         "jordan": (rnnkit.Jordan, {"output_size": 3}), "mogrifier": (rnnkit.MogrifierLSTM, {"rounds": 3})}


@pytest.fixture
def pairs(monkeypatch):
    """Counts the pairs of jobs that ran concurrently with half the BLAS threads each (each still runs): pairs,
    teams and pipelines, not the halves of a whole-sequence product on panels (`rnnkit.kernels.whole`), which call
    no BLAS and set no limits."""
    count = {"concurrent": 0}
    concurrently = parallel._concurrently

    def counted(first, second, threads):
        count["concurrent"] += threads is not None
        return concurrently(first, second, threads)

    monkeypatch.setattr(parallel, "_concurrently", counted)
    return count


def same_results(got, expected, dtype) -> bool:
    """Bit-identical with OpenBLAS; with MKL (``RNNKIT_BLAS=mkl``), whose products depend on its thread count (one
    per direction at once against two in turn), equal within rounding."""
    if blas.SOURCE != "mkl":
        return all(np.array_equal(a, b) for a, b in zip(got, expected))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    return all(np.abs(a - b).max(initial=0) <= tol * max(1.0, np.abs(b).max(initial=0)) for a, b in zip(got, expected))


def train_call(layer, x, lengths):
    """Output, final state, δx, δ(initial state) and every parameter gradient of one call."""
    layer.zero_grad()
    y, final = layer.forward(x, lengths=lengths)
    dy = np.random.default_rng(7).normal(size=y.shape).astype(y.dtype)
    dx, ds0 = layer.backward(dy)
    parts = [y, dx, *(final if isinstance(final, tuple) else (final,)), *(ds0 if isinstance(ds0, tuple) else (ds0,))]
    return parts + [p.grad.copy() for p in layer.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_directions_at_once_give_bit_identical_outputs_and_gradients_to_directions_in_turn(name, dtype, pairs):
    cls, options = CELLS[name]
    layer = cls(5, 16, num_layers=2, bidirectional=True, dtype=dtype, rng=0, **options)
    x = np.random.default_rng(1).normal(size=(6, 9, 5)).astype(dtype)
    lengths = np.array([9, 4, 9, 1, 6, 3])
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(2, user_api="blas"):
        with parallel.using_pairs("never"):
            in_turn = train_call(layer, x, lengths)
        assert pairs["concurrent"] == 0
        with parallel.using_pairs("always"):
            at_once = train_call(layer, x, lengths)
    assert pairs["concurrent"] == 6  # 2 layers × (forward, the backward's time loops, its weight sums)
    assert len(at_once) == len(in_turn)
    assert same_results(at_once, in_turn, dtype)


def test_one_allowed_blas_thread_runs_the_directions_in_turn(pairs):
    layer = rnnkit.LSTM(3, 8, bidirectional=True, rng=0)
    with kernels.using("compiled"), parallel.using_pairs("always"), threadpoolctl.threadpool_limits(1, user_api="blas"):
        y, _ = layer.forward(np.ones((2, 4, 3), np.float32))
        layer.backward(np.ones_like(y))
    assert pairs["concurrent"] == 0


def test_a_backward_that_steps_in_python_runs_the_directions_in_turn(pairs):
    """Recording ‖∂L/∂h_t‖ steps the backward in Python around fused kernels: it holds the GIL, so its directions
    take turns (the forward, compiled, still runs them at once)."""
    layer = rnnkit.MogrifierLSTM(3, 8, bidirectional=True, rng=0)
    layer.record_state_grads = True
    with kernels.using("compiled"), parallel.using_pairs("always"), threadpoolctl.threadpool_limits(2, user_api="blas"):
        y, _ = layer.forward(np.ones((2, 4, 3), np.float32))
        assert pairs["concurrent"] == 1
        layer.backward(np.ones_like(y))
    assert pairs["concurrent"] == 1


def test_a_call_with_zoneout_runs_its_directions_at_once_with_the_same_result(pairs):
    """Zoneout runs inside the compiled loop, so a regularised bidirectional call keeps both cores busy too."""
    layer = rnnkit.LSTM(3, 8, bidirectional=True, rng=0).regularize(zoneout=0.2)
    layer.eval()  # zoneout's expectation: no random masks, the same numbers both times
    x = np.ones((2, 4, 3), np.float32)
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(2, user_api="blas"):
        with parallel.using_pairs("never"):
            in_turn = layer.forward(x)[0]
        with parallel.using_pairs("always"):
            at_once = layer.forward(x)[0]
    assert pairs["concurrent"] == 1
    assert same_results([at_once], [in_turn], np.float32)


def test_the_scan_runner_runs_the_directions_in_turn(pairs):
    layer = rnnkit.MinGRU(3, 8, bidirectional=True, mode="scan", rng=0)
    with kernels.using("compiled"), parallel.using_pairs("always"), threadpoolctl.threadpool_limits(2, user_api="blas"):
        y, _ = layer.forward(np.ones((2, 4, 3), np.float32))
        dx, _ = layer.backward(np.ones_like(y))
    assert pairs["concurrent"] == 0 and dx.shape == (2, 4, 3)


def test_the_two_jobs_run_on_two_threads_with_half_the_blas_threads_each():
    def job():
        return threading.get_ident(), parallel.blas_threads()

    with threadpoolctl.threadpool_limits(2, user_api="blas"), parallel.using_pairs("always"):
        (first, first_threads), (second, second_threads) = parallel.pair(job, job, 1)
        assert parallel.blas_threads() == 2
    assert first != second and first_threads == second_threads == 1


def test_blas_limits_and_the_pair_lock_are_restored_when_a_job_fails():
    def failing():
        raise ValueError("job failed")

    with threadpoolctl.threadpool_limits(2, user_api="blas"), parallel.using_pairs("always"):
        with pytest.raises(ValueError, match="job failed"):
            parallel.pair(lambda: None, failing, 1)
        with pytest.raises(ValueError, match="job failed"):
            parallel.pair(failing, lambda: None, 1)
        assert parallel.blas_threads() == 2
        assert parallel.pair(lambda: 1, lambda: 2, 1) == (1, 2)
    assert not parallel._busy.locked()


def test_the_automatic_policy_pairs_the_directions_of_calls_with_enough_work():
    with parallel.using_pairs("auto"):
        assert parallel.pair_pays(parallel.PAIR_WORK) and not parallel.pair_pays(parallel.PAIR_WORK - 1)
    with parallel.using_pairs("always"):
        assert parallel.pair_pays(0)
    with parallel.using_pairs("never"):
        assert not parallel.pair_pays(1 << 40)


def test_a_small_bidirectional_call_runs_its_directions_in_turn_under_the_automatic_policy(pairs):
    """A pair's fixed cost (a thread hand-off, the BLAS limits set twice) is more than a small call's directions
    take: below `PAIR_WORK` they run in turn; above it, at once."""
    small, large = rnnkit.LSTM(4, 8, bidirectional=True, rng=0), rnnkit.LSTM(4, 64, bidirectional=True, rng=0)
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(2, user_api="blas"), \
            parallel.using_pairs("auto"):
        small.forward(np.ones((20, 4, 4), np.float32))  # 20 · 4 · 8 · 32 multiply-adds a direction
        assert pairs["concurrent"] == 0
        large.forward(np.ones((64, 4, 4), np.float32))  # 64 · 4 · 64 · 256 = PAIR_WORK
        assert pairs["concurrent"] == 1


def test_the_pair_policy_refuses_an_unknown_choice_naming_the_choices():
    with pytest.raises(rnnkit.errors.ConfigError, match="auto, always, never"):
        parallel.use_pairs("sometimes")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_directions_at_once_stay_bit_identical_for_deep_products(dtype, pairs):
    """Inputs and states wide enough that a BLAS sums each product in blocks of its depth (its whole-sequence GEMMs
    at depth 512 and 1024, the second layer's input being both directions' states): the directions at once, each on
    one BLAS thread, still compute what they compute in turn on two (the small shapes above do not reach the
    blocks; an input projection once run on panels with one thread differed by 1e-4 here)."""
    layer = rnnkit.LSTM(512, 512, num_layers=2, bidirectional=True, dtype=dtype, rng=0)
    x = np.random.default_rng(2).normal(size=(4, 5, 512)).astype(dtype)
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(2, user_api="blas"), parallel.using_teams("never"):
        with parallel.using_pairs("never"):
            in_turn = train_call(layer, x, None)
        with parallel.using_pairs("always"):
            at_once = train_call(layer, x, None)
    assert pairs["concurrent"] == 6  # teams off: only the pairs run jobs at once
    assert same_results(at_once, in_turn, dtype)
