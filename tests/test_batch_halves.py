"""A one-direction layer's batch as two halves at once, one on each core (`rnnkit.recurrent.halves`): the same
outputs, states and δx as the whole batch's call, the weight gradients equal within rounding, under every
regulariser; the trace reads as one call; the halves run only where they can, and ``auto`` takes them for a
narrow-input layer whose forward would run as a team, never for an input as wide as the state."""

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL, assert_close, count_calls
from rnnkit import kernels
from rnnkit.kernels import parallel
from rnnkit.recurrent import halves

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
threadpoolctl = pytest.importorskip("threadpoolctl")
from rnnkit.kernels import blas  # noqa: E402 - needs numba

CELLS = {"lstm": (rnnkit.LSTM, {}), "lstm-peephole-projection": (rnnkit.LSTM, {"peephole": True, "proj_size": 5}),
         "gru": (rnnkit.GRU, {}), "gru-reset-before": (rnnkit.GRU, {"reset_after": False}), "rnn": (rnnkit.RNN, {}),
         "lnlstm": (rnnkit.LayerNormLSTM, {}),
         "lngru": (rnnkit.LayerNormGRU, {})}
#: each cell's regularisers, all at once (the GRU's reset-before form: no recurrent dropout; the LN cells: zoneout
#: only)
MASKED = {"lstm": {"dropout_input": 0.2, "dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": (0.3, 0.2)},
          "lstm-peephole-projection": {"dropout_recurrent": 0.4, "zoneout": (0.3, 0.2)},
          "gru": {"dropout_input": 0.2, "dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3},
          "gru-reset-before": {"dropout_input": 0.2, "weight_drop": 0.5, "zoneout": 0.3},
          "rnn": {"dropout_input": 0.2, "dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3},
          "lnlstm": {"zoneout": (0.3, 0.2)}, "lngru": {"zoneout": 0.3}}
TOL = {np.float32: 1e-5, np.float64: 1e-12}
#: with MKL (``RNNKIT_BLAS=mkl``), whose products depend on their thread count and rows (each half's on one thread,
#: the whole batch's on two), each side's rounding differs in every product, not only in the weight sums' order:
#: measured up to 1.9e-5 in a float32 LN-LSTM's δ(initial state)
MKL_TOL = {np.float32: 5e-5, np.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


@pytest.fixture
def split_calls(monkeypatch):
    """Counts the calls made as two halves (each still runs)."""
    return count_calls(monkeypatch, halves, {"forward": "forward", "backward": "backward"})


def needs_two_blas_threads():
    if parallel.blas_threads() < 2:
        pytest.skip("one BLAS thread allowed: the halves run one after the other, and auto takes none")


def one_call(layer, x, state0):
    """Output, final state, δx, δ(initial state) and every parameter gradient of one training call."""
    layer.zero_grad()
    layer.train()
    y, final = layer.forward(x, state0)
    dy = np.random.default_rng(7).normal(size=y.shape).astype(y.dtype)
    dfinal = tuple(np.random.default_rng(8).normal(size=f.shape).astype(f.dtype) for f in _parts(final))
    dx, ds0 = layer.backward(dy, dfinal if isinstance(final, tuple) else dfinal[0])
    return [y, *_parts(final)], [dx, *_parts(ds0)] + [p.grad.copy() for p in layer.parameters()]


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def same_bits(arrays, expected, what="") -> None:
    """The same to the bit: each row's arithmetic is the whole batch's (on OpenBLAS and the panels; with MKL, whose
    products depend on their thread count, within rounding: `MKL_TOL`)."""
    for a, b in zip(arrays, expected, strict=True):
        if blas.SOURCE == "mkl":
            assert_close(a, b, MKL_TOL[a.dtype.type], what)
        else:
            assert np.array_equal(a, b), f"{what}: an output differs"


def assert_same_call(got, expected, dtype, what):
    """Outputs and final states the same to the bit (`same_bits`); the gradients within rounding (each half's weight
    sums are made apart, the second half's added after; with MKL within `MKL_TOL`)."""
    (outputs, grads), (outputs_expected, grads_expected) = got, expected
    same_bits(outputs, outputs_expected, what)
    tol = (MKL_TOL if blas.SOURCE == "mkl" else TOL)[dtype]
    for k, (a, b) in enumerate(zip(grads, grads_expected)):
        assert_close(a, b, tol, f"{what}: gradient {k}")


def initial_state(layer, batch, dtype):
    rng = np.random.default_rng(3)
    parts = tuple(rng.normal(size=(1, batch, size)).astype(dtype) for size in layer.state_sizes)
    return parts if len(parts) > 1 else parts[0]


@DTYPES
@pytest.mark.parametrize("batch", [4, 5], ids=["even", "odd"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_halves_give_the_whole_batch_outputs_states_and_gradients(name, batch, dtype, split_calls):
    cls, options = CELLS[name]
    x = np.random.default_rng(1).normal(size=(batch, 7, 6)).astype(dtype)
    calls = {}
    for choice in ("never", "always"):
        layer = cls(6, 8, dtype=dtype, rng=0, **options)
        with kernels.using("compiled"), halves.using_halves(choice):
            calls[choice] = one_call(layer, x, initial_state(layer, batch, dtype))
    assert_same_call(calls["always"], calls["never"], dtype, name)
    assert split_calls == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_the_halves_weight_sums_add_to_the_gradients_a_layer_held_before_its_call(name, split_calls):
    """Each half sums its weight gradients on its own core, the second into a twin's gradients that are added
    after: what the parameters held before the call is kept, and each half's sums are added once."""
    cls, options = CELLS[name]
    x = np.random.default_rng(1).normal(size=(4, 7, 6))
    grads = {}
    for choice in ("never", "always"):
        layer = cls(6, 8, dtype=np.float64, rng=0, **options)
        held = np.random.default_rng(9)
        for p in layer.parameters():
            p.grad[...] = held.normal(size=p.grad.shape)
        with kernels.using("compiled"), halves.using_halves(choice):
            layer.train()
            y, _ = layer.forward(x)
            layer.backward(np.random.default_rng(7).normal(size=y.shape))
        grads[choice] = [p.grad.copy() for p in layer.parameters()]
    for k, (got, expected) in enumerate(zip(grads["always"], grads["never"], strict=True)):
        assert_close(got, expected, TOL[np.float64], f"{name}: gradient {k}")
    assert split_calls == {"forward": 1, "backward": 1}


def test_the_second_halfs_twin_shares_the_cells_weights_and_holds_zero_gradients_of_its_own():
    cell = rnnkit.LSTM(6, 8, rng=0, peephole=True, proj_size=5).cells[0]
    for p in cell.parameters():
        p.grad += 1
    twin = halves._twin_with_own_grads(cell)
    pairs = list(zip(cell.named_parameters(), twin.named_parameters(), strict=True))
    assert pairs and all(name == twin_name for (name, _), (twin_name, _) in pairs)
    for (name, mine), (_, theirs) in pairs:
        assert theirs.data is mine.data, name
        assert theirs.grad is not mine.grad and not theirs.grad.any() and (mine.grad == 1).all(), name
        assert getattr(twin, name) is theirs and getattr(cell, name) is mine, name


@pytest.mark.parametrize("name", sorted(MASKED))
def test_halves_apply_each_rows_regulariser_masks_as_the_whole_batch_does(name, split_calls):
    cls, options = CELLS[name]
    x = np.random.default_rng(1).normal(size=(4, 7, 6))
    calls = {}
    for choice in ("never", "always"):  # the same seed: the same masks drawn in the same order
        layer = cls(6, 8, dtype=np.float64, rng=0, **options).regularize(**MASKED[name])
        with kernels.using("compiled"), halves.using_halves(choice):
            calls[choice] = one_call(layer, x, initial_state(layer, 4, np.float64))
    assert_same_call(calls["always"], calls["never"], np.float64, name)
    assert split_calls == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_trace_and_state_at_read_a_call_made_as_halves_as_one_call(name):
    cls, options = CELLS[name]
    x = np.random.default_rng(2).normal(size=(5, 6, 6))
    views = {}
    for choice in ("never", "always"):
        layer = cls(6, 8, num_layers=2, dtype=np.float64, rng=0, **options)
        with kernels.using("compiled"), halves.using_halves(choice):
            layer.train()
            layer.forward(x)
            views[choice] = (layer.trace(1), layer.state_at(3))
    (trace, state), (trace_expected, state_expected) = views["always"], views["never"]
    for part in ("states", "gates"):
        got, expected = getattr(trace, part), getattr(trace_expected, part)
        assert got.keys() == expected.keys()
        same_bits([got[k] for k in got], [expected[k] for k in got], part)
    same_bits(_parts(state), _parts(state_expected), "state_at")


def test_record_state_grads_after_a_forward_as_halves_averages_over_both_halves():
    x = np.random.default_rng(4).normal(size=(4, 6, 6))
    norms = {}
    for choice in ("never", "always"):
        layer = rnnkit.LSTM(6, 8, dtype=np.float64, rng=0)
        with kernels.using("compiled"), halves.using_halves(choice):
            layer.train()
            y, _ = layer.forward(x)
            layer.record_state_grads = True  # set after the forward: the halves' backward loops run in Python
            layer.backward(np.ones_like(y))
            norms[choice] = layer.trace().state_grad_norms
    assert_close(norms["always"], norms["never"], 1e-12, "‖∂L/∂h_t‖")


def test_gradcheck_passes_through_a_call_made_as_halves(split_calls):
    layer = rnnkit.LSTM(3, 4, dtype=np.float64, rng=0, peephole=True)
    x = np.random.default_rng(5).normal(size=(3, 4, 3))
    with kernels.using("compiled"), halves.using_halves("always"):
        assert rnnkit.gradcheck(layer, x) < GRADCHECK_TOL
    assert split_calls["forward"] > 0 and split_calls["backward"] > 0


def test_inference_as_halves_keeps_no_trace_and_gives_the_whole_batch_output(split_calls):
    layer = rnnkit.GRU(6, 8, rng=0)
    x = np.random.default_rng(6).normal(size=(4, 5, 6)).astype(np.float32)
    outputs = {}
    for choice in ("never", "always"):
        with kernels.using("compiled"), halves.using_halves(choice), rnnkit.no_grad():
            layer.eval()
            outputs[choice] = layer.forward(x)
    same_bits(_parts(outputs["always"]), _parts(outputs["never"]), "inference")
    assert split_calls["forward"] == 1


@pytest.mark.parametrize("case", ["bidirectional", "ragged", "one row", "state norms", "no team units", "numpy"])
def test_halves_run_only_where_each_half_is_a_whole_compiled_loop_of_its_own(case, split_calls):
    build = {"bidirectional": lambda: rnnkit.LSTM(6, 8, bidirectional=True, rng=0),
             "no team units": lambda: rnnkit.IndRNN(6, 8, rng=0)}.get(case, lambda: rnnkit.LSTM(6, 8, rng=0))
    layer = build()
    layer.record_state_grads = case == "state norms"
    batch = 1 if case == "one row" else 4
    x = np.random.default_rng(7).normal(size=(batch, 5, 6)).astype(np.float32)
    lengths = np.array([5, 3, 2, 4]) if case == "ragged" else None
    with kernels.using("numpy" if case == "numpy" else "compiled"), halves.using_halves("always"):
        layer.train()
        y = layer.forward(x, lengths=lengths)[0]
        layer.backward(np.ones_like(y))
    assert split_calls == {"forward": 0, "backward": 0}


def test_auto_takes_halves_for_a_narrow_input_that_a_team_would_run_and_not_for_one_as_wide_as_the_state():
    """The char-LM race's layer (input 64, H = 256, B = 32): halves; an input as wide as the state: the pipeline;
    one BLAS thread allowed: neither."""
    needs_two_blas_threads()
    with kernels.using("compiled"), parallel.using_teams("always"), halves.using_halves("auto"):
        narrow, wide = rnnkit.LSTM(64, 256, rng=0), rnnkit.LSTM(256, 256, rng=0)
        assert halves.halves_pay(narrow.runners[0][0], 32, 64, None)
        assert not halves.halves_pay(wide.runners[0][0], 32, 256, None)
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            assert not halves.halves_pay(narrow.runners[0][0], 32, 64, None)
        with halves.using_halves("never"):
            assert not halves.halves_pay(narrow.runners[0][0], 32, 64, None)


def test_auto_takes_halves_for_a_layer_normalised_cell_in_inference_only():
    """Its training calls measured no faster as halves (`rnnkit.recurrent.lngru.LayerNormGRUStep.batch_halves`)."""
    needs_two_blas_threads()
    with kernels.using("compiled"), parallel.using_teams("always"), halves.using_halves("auto"):
        runner = rnnkit.LayerNormGRU(64, 256, rng=0).runners[0][0]
        assert not halves.halves_pay(runner, 32, 64, None)
        with rnnkit.no_grad():
            assert halves.halves_pay(runner, 32, 64, None)


@pytest.mark.parametrize("choice", ["auto", "never"])
def test_the_machine_report_says_where_a_batch_runs_as_halves(choice):
    from rnnkit.machine import report

    with halves.using_halves(choice):
        line = next(line for line in report() if line.startswith("a batch in two halves at once: "))
    assert "RNNKIT_BATCH_HALVES=never" in line if choice == "auto" else "never for the layers" in line


def test_each_half_writes_its_projection_itself_before_its_loop(monkeypatch):
    """The cores are taken by the two halves, so each half's pipeline writer runs in its own thread before its loop
    (`Cell.ahead_projection`'s ``here``): one write on the caller's thread, one on the worker's."""
    import threading

    from rnnkit.kernels import ahead

    written, original = [], ahead.Ahead.write
    monkeypatch.setattr(ahead.Ahead, "write", lambda self, sync: written.append(
        (self.batch, threading.current_thread() is threading.main_thread())) or original(self, sync))
    layer = rnnkit.LSTM(6, 8, rng=0)
    x = np.random.default_rng(9).normal(size=(5, 4, 6)).astype(np.float32)
    with kernels.using("compiled"), halves.using_halves("always"):
        layer.forward(x)
    assert sorted(written) == [(2, False), (3, True)]


def test_a_stateful_layer_as_halves_carries_the_whole_batch_state_into_its_next_call(split_calls):
    x = np.random.default_rng(10).normal(size=(4, 5, 6))
    outputs = {}
    for choice in ("never", "always"):
        layer = rnnkit.LSTM(6, 8, dtype=np.float64, rng=0, stateful=True)
        with kernels.using("compiled"), halves.using_halves(choice):
            layer.train()
            first = layer.forward(x[:, :3])[0]
            second = layer.forward(x[:, 3:])[0]
        outputs[choice] = (first, second, *layer.carried_state)
    same_bits(outputs["always"], outputs["never"], "stateful")
    assert split_calls["forward"] == 2
