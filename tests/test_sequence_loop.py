"""The compiled whole-sequence loop (`rnnkit.kernels.sequence_loop`, BLAS called from compiled code) equals the
NumPy per-step oracle for every cell on it (RNN, LSTM, GRU, IndRNN, minGRU, minLSTM, layer-normalised LSTM and GRU,
RHN, Jordan, Mogrifier LSTM; the lectures' sigmoid RNN and update gate): ragged and reversed, stacked and
bidirectional, with an initial state, a state carried across calls, a detached state, under no_grad and under
recurrent dropout, weight drop and zoneout; and passes gradcheck."""

import contextlib
import tracemalloc

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL, count_calls
from rnnkit import kernels

numba = pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
from rnnkit.kernels import blas  # noqa: E402 - needs numba
from rnnkit.kernels.blas import matmul_into  # noqa: E402 - needs numba
from rnnkit.recurrent.compiled_loop import CompiledSequenceLoop  # noqa: E402

CELLS = {
    "rnn-tanh": (rnnkit.RNN, {}),
    "rnn-relu": (rnnkit.RNN, {"nonlinearity": "relu"}),
    "rnn-sigmoid": (rnnkit.RNN, {"nonlinearity": "sigmoid"}),
    "lstm": (rnnkit.LSTM, {}),
    "lstm-peephole": (rnnkit.LSTM, {"peephole": True}),
    "lstm-projection": (rnnkit.LSTM, {"proj_size": 3}),
    "lstm-peephole-projection": (rnnkit.LSTM, {"peephole": True, "proj_size": 3}),
    "gru-reset-after": (rnnkit.GRU, {}),
    "gru-reset-before": (rnnkit.GRU, {"reset_after": False}),
    "gru-reset-after-no-bias": (rnnkit.GRU, {"bias": False}),
    "gru-lecture": (rnnkit.GRU, {"reset_after": False, "update_gate": "lecture"}),
    "gru-reset-after-lecture-update": (rnnkit.GRU, {"update_gate": "lecture"}),
    "indrnn-relu": (rnnkit.IndRNN, {}),
    "indrnn-tanh": (rnnkit.IndRNN, {"nonlinearity": "tanh"}),
    "mingru": (rnnkit.MinGRU, {}),
    "minlstm": (rnnkit.MinLSTM, {}),
    "lnlstm": (rnnkit.LayerNormLSTM, {}),
    "lnlstm-forget-bias": (rnnkit.LayerNormLSTM, {"forget_bias": 1.0}),
    "lngru": (rnnkit.LayerNormGRU, {}),
    "lngru-no-bias": (rnnkit.LayerNormGRU, {"bias": False}),
    "rhn-coupled": (rnnkit.RHN, {"depth": 2}),
    "rhn-uncoupled": (rnnkit.RHN, {"depth": 2, "coupled": False}),
    "rhn-no-bias": (rnnkit.RHN, {"depth": 3, "bias": False}),
    "jordan-sigmoid": (rnnkit.Jordan, {"output_size": 3, "state_decay": 0.3}),
    "jordan-softmax": (rnnkit.Jordan, {"output_size": 3, "output_activation": "softmax"}),
    "mogrifier": (rnnkit.MogrifierLSTM, {"rounds": 3}),
    "mogrifier-low-rank": (rnnkit.MogrifierLSTM, {"rounds": 4, "rank": 2}),
    "mogrifier-peephole-projection": (rnnkit.MogrifierLSTM, {"rounds": 3, "peephole": True, "proj_size": 3}),
}
TOL = {np.float32: 1e-6, np.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


@pytest.fixture
def loop_calls(monkeypatch):
    """Counts the calls of the compiled whole-sequence loop, forward and backward (each still runs)."""
    loops = {"forward": "sequence_forward", "backward": "sequence_backward"}
    return count_calls(monkeypatch, CompiledSequenceLoop, loops)


def relative_error(a, b) -> float:
    return float(np.abs(a - b).max(initial=0.0) / max(1.0, np.abs(b).max(initial=0.0)))


def outputs_and_grads(layer, x, lengths=None, state0=None, seed=0):
    """Output, final state, δx, δ(initial state) and every parameter gradient of one forward/backward call."""
    layer.zero_grad()
    y, final = layer.forward(x, state0, lengths=lengths)
    dy = np.random.default_rng(seed).normal(size=y.shape).astype(y.dtype)
    dfinal = tuple(np.random.default_rng(seed + 1).normal(size=f.shape).astype(f.dtype)
                   for f in (final if isinstance(final, tuple) else (final,)))
    dx, ds0 = layer.backward(dy, dfinal if isinstance(final, tuple) else dfinal[0])
    parts = [y, dx, *(final if isinstance(final, tuple) else (final,)), *(ds0 if isinstance(ds0, tuple) else (ds0,))]
    return parts + [p.grad.copy() for p in layer.parameters()]


def oracle_and_compiled(run, oracle=None):
    """``run()`` with the NumPy per-step code (or in the ``oracle`` context), then with the compiled kernels; the
    worst relative difference."""
    with oracle or kernels.using("numpy"):
        expected = run()
    with kernels.using("compiled"):
        got = run()
    assert len(got) == len(expected)
    return max(relative_error(g, e) for g, e in zip(got, expected))


@contextlib.contextmanager
def per_step_loop(cls):
    """The compiled kernels, one step at a time in the runner's Python loop (the cell's whole-sequence loop off)."""
    with kernels.using("compiled"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(cls.cell_class, "whole_sequence", False)
        yield


def oracle_of(name, dtype):
    """What the compiled loop must equal: the NumPy code; for the layer-normalised cells in float32, the same kernels
    stepped by the Python loop. Their kernels sum a row's mean and variance in another order than NumPy, and the
    normalisation's backward cancels (s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩)), so in float32 kernels and NumPy differ by up
    to 1e-5 however the loop runs (test_layernorm_cells.py bounds that); the loop itself must add nothing. That
    holds where the loop's products are NumPy's own BLAS, as the Python steps' are, or on panels
    (`rnnkit.kernels.panels`, which sums each product in order of k: within these tolerances here): with
    ``RNNKIT_BLAS=mkl`` the normalisation amplifies the two BLAS's float32 rounding to 1e-5 as well, so there only
    float64 is compared."""
    if not (name.startswith("ln") and dtype == np.float32):
        return None
    if blas.BACKEND == "mkl":
        pytest.skip("float32 layer norm amplifies MKL's against OpenBLAS's rounding; float64 checks the loop here")
    return per_step_loop(CELLS[name][0])


def initial_state(layer, batch, rng, dtype):
    sizes = layer.state_sizes
    state = tuple(rng.normal(size=(layer.num_layers * 2, batch, s)).astype(dtype) for s in sizes)
    return state if len(state) > 1 else state[0]


@DTYPES
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_the_compiled_loop_equals_the_numpy_oracle_stacked_bidirectional_with_an_initial_state(
        name, ragged, dtype, loop_calls):
    cls, options = CELLS[name]
    layer = cls(5, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 5)).astype(dtype)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    state0 = initial_state(layer, 4, rng, dtype)
    worst = oracle_and_compiled(lambda: outputs_and_grads(layer, x, lengths, state0), oracle_of(name, dtype))
    assert worst <= TOL[dtype], f"{name}: the compiled loop differs from NumPy by {worst:.2e}"
    assert loop_calls == {"forward": 4, "backward": 4}  # 2 layers × 2 directions, each one compiled call


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_state_carried_across_calls_equals_the_numpy_oracle(name, loop_calls):
    cls, options = CELLS[name]
    layer = cls(3, 6, stateful=True, dtype=np.float64, rng=0, **options)
    chunks = np.random.default_rng(2).normal(size=(2, 3, 5, 3))

    def two_chunks():
        layer.reset_state()
        return outputs_and_grads(layer, chunks[0]) + outputs_and_grads(layer, chunks[1], seed=5)

    assert oracle_and_compiled(two_chunks) <= TOL[np.float64]
    assert loop_calls["forward"] == 2 and loop_calls["backward"] == 2


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_detached_state_equals_the_numpy_oracle_ragged_and_reversed(name, loop_calls):
    cls, options = CELLS[name]
    layer = cls(3, 6, bidirectional=True, dtype=np.float64, rng=0, **options)
    layer.detach_state = True
    x, lengths = np.random.default_rng(3).normal(size=(3, 5, 3)), np.array([5, 2, 4])
    assert oracle_and_compiled(lambda: outputs_and_grads(layer, x, lengths)) <= TOL[np.float64]
    assert loop_calls["backward"] == 2


@DTYPES
@pytest.mark.parametrize("name", ["rnn-tanh", "lstm-peephole-projection", "gru-reset-before"])
def test_inference_under_no_grad_equals_the_numpy_oracle(name, dtype, loop_calls):
    cls, options = CELLS[name]
    layer = cls(4, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0, **options)
    x, lengths = np.random.default_rng(4).normal(size=(3, 6, 4)).astype(dtype), np.array([6, 1, 4])

    def infer():
        with rnnkit.no_grad():
            y, final = layer.forward(x, lengths=lengths)
        return [y, *(final if isinstance(final, tuple) else (final,))]

    assert oracle_and_compiled(infer) <= TOL[dtype]
    assert loop_calls["forward"] == 4


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradcheck_passes_through_the_compiled_loop(name, loop_calls):
    cls, options = CELLS[name]
    layer = cls(3, 4, bidirectional=True, dtype=np.float64, rng=0, **options)
    x = np.random.default_rng(5).normal(size=(2, 4, 3))
    with kernels.using("compiled"):
        assert rnnkit.gradcheck(layer, x, lengths=np.array([4, 2])) < GRADCHECK_TOL
    assert loop_calls["forward"] > 0 and loop_calls["backward"] > 0


#: every regulariser each cell takes, all at once (GRU's reset-before form: no recurrent dropout; the cells without
#: a recurrent matrix: zoneout only); zoneout gets one rate per state component where there are two
MASKED = {"rnn-tanh": {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3},
          "lstm-peephole-projection": {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": (0.3, 0.2)},
          "gru-reset-after": {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3},
          "gru-reset-before": {"weight_drop": 0.5, "zoneout": 0.3},
          "indrnn-relu": {"zoneout": 0.3}, "mingru": {"zoneout": 0.3}, "minlstm": {"zoneout": 0.3},
          "lnlstm": {"zoneout": (0.3, 0.2)}, "lngru": {"zoneout": 0.3}, "rhn-uncoupled": {"zoneout": 0.3},
          "jordan-sigmoid": {"zoneout": (0.3, 0.2)}, "mogrifier-low-rank": {"zoneout": (0.3, 0.2)}}


def same_masks_every_call(layer):
    """The layer's masks drawn once per (layer, direction) and handed out again on later calls, so the oracle and
    the compiled run (and gradcheck's many evaluations) see the same masks."""
    drawn, sample = {}, layer.sample_noise
    layer.sample_noise = lambda *key: drawn[key] if key in drawn else drawn.setdefault(key, sample(*key))
    return layer


@DTYPES
@pytest.mark.parametrize("name", sorted(MASKED))
def test_recurrent_dropout_weight_drop_and_zoneout_run_in_the_compiled_loop_and_equal_the_numpy_oracle(
        name, dtype, loop_calls):
    cls, options = CELLS[name]
    layer = same_masks_every_call(cls(5, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0, **options)
                                  .regularize(**MASKED[name]))
    x = np.random.default_rng(1).normal(size=(4, 7, 5)).astype(dtype)
    worst = oracle_and_compiled(lambda: outputs_and_grads(layer, x, np.array([7, 3, 5, 1])), oracle_of(name, dtype))
    assert worst <= TOL[dtype], f"{name}: the compiled loop differs from NumPy by {worst:.2e}"
    assert loop_calls == {"forward": 4, "backward": 4}


@pytest.mark.parametrize("name", ["lstm-peephole-projection", "gru-reset-after", "mingru"])
def test_zoneout_in_evaluation_mixes_with_its_rate_in_the_compiled_loop_as_in_numpy(name, loop_calls):
    """In evaluation zoneout is its expectation, s_t = z s_{t−1} + (1 − z) s̃_t, the same at every step."""
    cls, options = CELLS[name]
    layer = cls(5, 8, bidirectional=True, dtype=np.float64, rng=0, **options).regularize(zoneout=0.3)
    layer.eval()
    x = np.random.default_rng(2).normal(size=(3, 6, 5))

    def run():
        return list(layer.forward(x, lengths=np.array([6, 4, 2]))[:1])

    assert oracle_and_compiled(run) <= TOL[np.float64]
    assert loop_calls["forward"] == 2


@pytest.mark.parametrize("name", sorted(MASKED))
def test_gradcheck_passes_through_the_compiled_loop_under_every_regulariser(name, loop_calls):
    cls, options = CELLS[name]
    layer = same_masks_every_call(cls(3, 4, bidirectional=True, dtype=np.float64, rng=0, **options)
                                  .regularize(**MASKED[name]))
    x = np.random.default_rng(5).normal(size=(2, 4, 3))
    with kernels.using("compiled"):
        assert rnnkit.gradcheck(layer, x, lengths=np.array([4, 2])) < GRADCHECK_TOL
    assert loop_calls["forward"] > 0 and loop_calls["backward"] > 0


@DTYPES
@pytest.mark.parametrize("accumulate", [False, True], ids=["assign", "accumulate"])
def test_blas_product_from_compiled_code_equals_numpy_on_row_blocks_of_larger_arrays(dtype, accumulate):
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(9, 7)).astype(dtype), rng.normal(size=(7, 12)).astype(dtype)
    out = rng.normal(size=(10, 20)).astype(dtype)
    expected = out.copy()
    expected[2:7, 3:15] = a[:5] @ b + (expected[2:7, 3:15] if accumulate else 0)
    matmul_into(a[:5], b, out[2:7, 3:15], accumulate)  # a row prefix into a column block: strided rows
    assert relative_error(out, expected) <= TOL[dtype]


@DTYPES
def test_blas_product_from_compiled_code_reads_a_single_row_whatever_its_row_stride(dtype):
    w = np.arange(1.0, 5.0, dtype=dtype).reshape(4, 1)
    w_t = np.ascontiguousarray(w.T)  # (1, 4) view with a row stride of one element: NumPy keeps it as it is
    out = np.zeros((1, 4), dtype)
    matmul_into(np.full((1, 1), 2.0, dtype), w_t, out, False)
    assert out.tolist() == [[2.0, 4.0, 6.0, 8.0]]


def test_blas_products_compile_once_whether_a_loop_assigns_or_accumulates():
    """A loop step that assigns (out = a W) and accumulates (out += a W) with constant flags, as a reset-before GRU's
    backward does: numba would compile the product once per constant, so the flag reaches it as a variable."""
    @numba.njit
    def assign_then_accumulate(a, weight, out):
        blas.matmul_weight(a, weight, out, False)
        blas.matmul_weight(a, weight, out, True)

    rng = np.random.default_rng(7)
    a, w = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    out = np.full((3, 5), np.nan, np.float32)
    assign_then_accumulate(a, blas.loop_weight(w), out)
    assert relative_error(out, 2 * (a @ w)) <= TOL[np.float32]
    assert {signature[3] for signature in blas._matmul_weight.signatures} == {numba.types.boolean}


def test_row_helpers_compile_once_whether_called_with_a_constant_lo_or_a_parts_lo():
    """The skeleton zeroes the padded rows' δa from unit 0 and a part's own units from its lo; numba would compile
    a helper once per constant, so lo reaches it as a variable."""
    from rnnkit.kernels import sequence_loop

    @numba.njit
    def all_then_part(src, out, lo):
        sequence_loop.copy_rows(src, out, 0, out.shape[1])
        sequence_loop.zero_rows(out, lo, out.shape[1])

    src = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    out = np.full((3, 4), np.nan, np.float32)
    all_then_part(src, out, 2)
    assert np.array_equal(out, np.where(np.arange(4) < 2, src, 0))
    for helper in (sequence_loop._copy_rows, sequence_loop._zero_rows):
        assert all(signature[2] == numba.types.intp for signature in helper.signatures), helper


def test_the_plain_loops_share_of_units_and_rows_starts_at_a_variable_zero():
    """The plain loop's (0, width) — `own_units`, `own_rows` with no team — reach the row helpers typed like a
    part's (lo, hi), so the plain loop and a team's share one compiled copy of each helper."""
    from rnnkit.kernels import team

    @numba.njit
    def plain_shares(width):
        return team.own_units(width, None), team.own_rows(width, None)

    assert plain_shares(5) == ((0, 5), (0, 5))
    signature = plain_shares.signatures[0]
    assert plain_shares.overloads[signature].signature.return_type == numba.types.UniTuple(
        numba.types.UniTuple(numba.types.intp, 2), 2)


def test_a_mogrifier_rounds_product_compiles_once_for_the_forwards_assignments_and_the_backwards_sums():
    from rnnkit.kernels import mogrifier

    @numba.njit
    def assign_then_accumulate(inp, first, second, mids, out):
        mogrifier.round_product(inp, first, second, 0, mids, 0, inp.shape[0], False, out, False, None)
        mogrifier.round_product(inp, first, second, 0, mids, 0, inp.shape[0], False, out, True, None)

    rng = np.random.default_rng(8)
    inp, q = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(1, 3, 4)).astype(np.float32)
    out = np.full((2, 4), np.nan, np.float32)
    assign_then_accumulate(inp, blas.loop_weights(q), blas.loop_weights(q), np.empty((0, 0, 0, 0), np.float32), out)
    assert relative_error(out, 2 * (inp @ q[0])) <= TOL[np.float32]
    assert {signature[-2] for signature in mogrifier._round_product.signatures} == {numba.types.boolean}


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole-projection", "gru-reset-after", "rnn-tanh", "rhn-uncoupled",
                                  "jordan-softmax", "mogrifier-peephole-projection", "lnlstm", "lngru"])
def test_recording_state_gradient_norms_steps_back_in_python_after_the_compiled_forward_with_the_same_gradients(
        name, loop_calls):
    """``record_state_grads`` (the vanishing-gradient diagnostics) runs the backward in the Python loop after a
    compiled forward, which keeps no per-step copies the loop does not need (the LSTM's tanh(c_t), the gates apart
    from the projection): its gradients equal the compiled backward's."""
    cls, options = CELLS[name]
    layer = cls(5, 8, rng=0, **options)
    x = np.random.default_rng(6).normal(size=(3, 6, 5)).astype(np.float32)
    with kernels.using("compiled"):
        compiled = outputs_and_grads(layer, x)
        layer.record_state_grads = True
        try:
            recorded = outputs_and_grads(layer, x)
        finally:
            layer.record_state_grads = False
    assert loop_calls == {"forward": 2, "backward": 1}
    assert max(relative_error(r, c) for r, c in zip(recorded, compiled)) <= TOL[np.float32]


def backward_peak(layer, x) -> tuple[int, list]:
    """(the peak bytes a backward of ``layer`` on ``x`` allocates, its gradients); the loop is compiled first, as
    numba's work would be traced too."""
    layer.backward(np.ones_like(layer.forward(x)[0]))
    layer.zero_grad()
    y, _ = layer.forward(x)
    tracemalloc.start()
    try:
        dx, _ = layer.backward(np.ones_like(y))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, [dx] + [p.grad.copy() for p in layer.parameters()]


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole-projection", "gru-reset-after", "lnlstm", "lngru"])
def test_the_compiled_backward_writes_its_gate_gradients_over_the_gate_history_and_allocates_no_array_for_them(
        name, monkeypatch):
    """The LSTM's, the reset-after GRU's and the layer-normalised cells' backward step reads a step's gates, then
    writes δa over them (the GRUs keep r, which their weight sums need, where h_{t−1} W_hh[n]ᵀ + b_hn was): the same
    gradients as with δa in an array of its own, which the backward no longer allocates; the gates read before the
    backward are copies."""
    cls, options = CELLS[name]
    steps, batch = 40, 8
    layer = cls(2, 32, rng=0, dtype=np.float64, **options)
    x = np.random.default_rng(7).normal(size=(batch, steps, 2))
    gate_history_bytes = steps * batch * layer.runners[0][0].cell.gate_width * 8
    with kernels.using("compiled"):
        over_gates, grads = backward_peak(layer, x)
        monkeypatch.setattr(cls.cell_class, "grads_over_gates", False)
        own_array, expected = backward_peak(layer, x)
        monkeypatch.undo()
        y, _ = layer.forward(x)
        gates = layer.trace().gates
        before = {k: v.copy() for k, v in gates.items()}
        layer.backward(np.ones_like(y))
    assert all(np.array_equal(g, e) for g, e in zip(grads, expected))
    assert own_array - over_gates > gate_history_bytes / 2, (own_array, over_gates, gate_history_bytes)
    assert all(np.array_equal(gates[k], before[k]) for k in gates)
    with pytest.raises(rnnkit.errors.UsageError, match="read trace\\(\\).gates before backward"):
        layer.trace()


@pytest.mark.parametrize("name", ["lstm", "gru-reset-after", "lnlstm", "lngru"])
def test_a_ragged_backward_over_the_gate_history_gives_padded_rows_no_gradient(name):
    """δa goes over the gates, whose padded rows hold the projection of the padding: the loop zeroes them, so the
    weight sums see no gradient from padding. Padding the batch with noise changes no gradient."""
    cls, options = CELLS[name]
    layer = cls(3, 6, rng=0, dtype=np.float64, **options)
    rng = np.random.default_rng(8)
    x, lengths = rng.normal(size=(3, 7, 3)), np.array([7, 4, 2])
    noisy = x.copy()
    for b, n in enumerate(lengths):
        noisy[b, n:] = rng.normal(size=(7 - n, 3)) * 10
    with kernels.using("compiled"):
        clean, padded = outputs_and_grads(layer, x, lengths=lengths), outputs_and_grads(layer, noisy, lengths=lengths)
    for got, expected in zip(padded[2:], clean[2:]):  # final state, δ(initial state), every parameter gradient
        assert relative_error(got, expected) <= TOL[np.float64]


def test_a_bidirectional_backward_runs_the_backward_loop_compiled_for_a_contiguous_output_gradient():
    """Each direction of a bidirectional layer reads its half of δ(output), a strided view: the loop is handed a
    contiguous copy, so that numba compiles no second specialisation of the backward loop for a strided one."""
    from rnnkit.kernels import lstm

    layer = rnnkit.LSTM(3, 4, bidirectional=True, rng=0)
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype(np.float32)
    with kernels.using("compiled"):
        y, _ = layer.forward(x)
        layer.backward(np.ones_like(y))
    assert lstm.lstm_sequence_backward.signatures
    assert all(signature[1].layout == "C" for signature in lstm.lstm_sequence_backward.signatures)


def test_a_call_with_zoneout_runs_the_loops_compiled_for_a_call_without_it():
    """Zoneout's arrays have the same types with and without it (`rnnkit.recurrent.noise.loop_zoneout`: empty
    arrays for none), so a layer with zoneout — on every state or on c alone, in training and in evaluation —
    compiles no loop of its own."""
    from rnnkit.kernels import lstm, parallel

    x = np.random.default_rng(3).normal(size=(4, 3, 5)).astype(np.float32)
    entries = (lstm.lstm_sequence_forward, lstm.lstm_sequence_backward)
    with kernels.using("compiled"), parallel.using_teams("never"):
        outputs_and_grads(rnnkit.LSTM(5, 6, rng=0), x)
        compiled = [set(entry.signatures) for entry in entries]
        for rate in (0.3, (0.0, 0.3)):
            zoned = rnnkit.LSTM(5, 6, rng=0).regularize(zoneout=rate)
            outputs_and_grads(zoned, x)
            zoned.eval()
            outputs_and_grads(zoned, x)
    assert [set(entry.signatures) for entry in entries] == compiled
