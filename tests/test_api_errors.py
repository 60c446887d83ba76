"""Regression tests of the API-error item of the robustness issue: every mistake a caller can make with a layer's
arguments, inputs or gradients is an `rnnkit.errors` type with a one-line message naming the argument, and the
layers accept what PyTorch accepts (an empty batch).

Decisions these tests pin down:

* an empty batch (B = 0) is valid, as in ``torch.nn.LSTM``: empty outputs and final states, empty gradients;
  an empty time axis (T = 0) is refused, as PyTorch refuses it, for the recurrent layers and the CRF alike;
* a gradient is checked as the forward checks an input: real floating dtypes (float16 included) are converted to
  the layer's dtype; integer, boolean, complex and object arrays are a `DTypeError`; NaN or Inf is a `ShapeError`;
  a gradient of the wrong shape, or a state gradient with the wrong number of components, is a `ShapeError`;
* layer options are checked by the `rnnkit.module` helpers (`check_positive_int`, `check_probability`,
  `check_bool`, ...): a bool is not a size, a string is not a number, and ``'yes'`` is not True.
"""

import numpy as np
import pytest

import rnnkit
from rnnkit import (
    CRF,
    GRU,
    LSTM,
    RHN,
    RNN,
    Embedding,
    GRUCell,
    Highway,
    Jordan,
    Linear,
    LSTMCell,
    MogrifierLSTM,
    RNNCell,
)
from rnnkit.attention import AdditiveAttention, LuongAttention
from rnnkit.errors import ConfigError, DTypeError, RnnkitError, ShapeError


def assert_one_line_naming(info, *words):
    message = str(info.value)
    assert isinstance(info.value, RnnkitError), f"{type(info.value).__name__}: {message}"
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


# -- empty batches and empty time axes ------------------------------------------------------------------------

LAYERS = {
    "rnn": lambda: RNN(3, 4, num_layers=2, bidirectional=True, rng=0),
    "lstm": lambda: LSTM(3, 4, proj_size=2, peephole=True, rng=0),
    "gru": lambda: GRU(3, 4, rng=0),
    "rhn": lambda: RHN(3, 4, depth=2, rng=0),
    "mogrifier": lambda: MogrifierLSTM(3, 4, rounds=2, rng=0),
    "jordan": lambda: Jordan(3, 4, 2, rng=0),
}


def parts(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("kind", LAYERS)
def test_an_empty_batch_gives_empty_outputs_states_and_gradients_as_in_pytorch(kind):
    layer = LAYERS[kind]()
    y, state = layer.forward(np.zeros((0, 5, 3), np.float64), lengths=np.zeros(0, int))
    rows = layer.num_directions * layer.num_layers
    assert y.shape == (0, 5, layer.output_size) and y.dtype == layer.dtype
    assert [p.shape for p in parts(state)] == [(rows, 0, s) for s in layer.state_sizes]
    dx, dstate = layer.backward(np.zeros_like(y), state)
    assert dx.shape == (0, 5, 3) and dx.dtype == np.float64
    assert [p.shape for p in parts(dstate)] == [(rows, 0, s) for s in layer.state_sizes]
    assert all(not p.grad.any() for p in layer.parameters())


@pytest.mark.parametrize("cell", [LSTMCell, GRUCell])
def test_a_step_cell_takes_an_empty_batch_too(cell):
    m = cell(3, 4, rng=0)
    state = m.forward(np.zeros((0, 3), np.float32))
    dx, dprev = m.backward(tuple(np.zeros_like(p) for p in parts(state)) if isinstance(state, tuple)
                           else np.zeros_like(state))
    assert dx.shape == (0, 3) and all(p.shape == (0, 4) for p in parts(dprev))


def test_an_empty_time_axis_is_a_shape_error_for_recurrent_layers():
    with pytest.raises(ShapeError) as info:
        LSTM(3, 4).forward(np.zeros((2, 0, 3), np.float32))
    assert_one_line_naming(info, "input", "at least one time step")


@pytest.mark.parametrize("call", ["forward", "decode"])
def test_a_crf_with_no_time_steps_is_a_one_line_shape_error_not_an_index_error(call):
    crf, emissions = CRF(3), np.zeros((2, 0, 3), np.float32)
    with pytest.raises(ShapeError) as info:
        crf.forward(emissions, np.zeros((2, 0), int)) if call == "forward" else crf.decode(emissions)
    assert_one_line_naming(info, "emissions", "at least one time step", "(2, 0, 3)")


# -- gradients of the final state -----------------------------------------------------------------------------

def lstm_after_forward():
    layer = LSTM(3, 4, rng=0)
    y, _ = layer.forward(np.zeros((2, 5, 3), np.float32))
    return layer, y


@pytest.mark.parametrize("dstate, words", [
    ((np.zeros((1, 2, 5)), np.zeros((1, 2, 4))), ["gradient of the final state h", "(1, 2, 4)", "(1, 2, 5)"]),
    ((np.zeros((1, 2, 4)), np.zeros((2, 2, 4))), ["gradient of the final state c", "(1, 2, 4)", "(2, 2, 4)"]),
    ((np.zeros((1, 2, 4)),), ["gradient of the final state", "2 components", "got 1"]),
    ((np.zeros((1, 2, 4)),) * 3, ["gradient of the final state", "2 components", "got 3"]),
    (np.zeros((1, 2, 4)), ["gradient of the final state", "tuple of 2 arrays", "ndarray"]),
], ids=["h wrong shape", "c wrong shape", "one component", "three components", "one array"])
def test_a_wrong_final_state_gradient_is_a_shape_error_naming_it_not_a_broadcast_error(dstate, words):
    layer, y = lstm_after_forward()
    with pytest.raises(ShapeError) as info:
        layer.backward(np.zeros_like(y), dstate)
    assert_one_line_naming(info, *words)


def test_a_final_state_gradient_may_leave_out_one_component():
    layer, y = lstm_after_forward()
    dx, (dh0, dc0) = layer.backward(None, (None, np.ones((1, 2, 4), np.float32)))
    assert dx.shape == (2, 5, 3) and dh0.shape == dc0.shape == (1, 2, 4)


# -- gradients are checked as inputs are ------------------------------------------------------------------------

BAD_GRADIENTS = {
    "int64": (lambda shape: np.zeros(shape, np.int64), DTypeError, "int64"),
    "bool": (lambda shape: np.zeros(shape, bool), DTypeError, "bool"),
    "complex128": (lambda shape: np.zeros(shape, np.complex128), DTypeError, "complex128"),
    "object": (lambda shape: np.zeros(shape, object), DTypeError, "object"),
    "list": (lambda shape: np.zeros(shape).tolist(), DTypeError, "list"),
    "nan": (lambda shape: np.full(shape, np.nan), ShapeError, "NaN or Inf"),
    "inf": (lambda shape: np.full(shape, -np.inf), ShapeError, "NaN or Inf"),
    "too large for float32": (lambda shape: np.full(shape, 1e300), ShapeError, "NaN or Inf (as float32)"),
}


def _output_gradient(kind, bad):
    """(module, call of its backward with a bad gradient, the name the message must give)."""
    x = np.zeros((2, 5, 3), np.float32)
    if kind == "linear":
        m = Linear(3, 4)
        m.forward(x)
        return lambda: m.backward(bad((2, 5, 4))), "Linear: gradient of the output"
    if kind == "highway":
        m = Highway(3)
        m.forward(x)
        return lambda: m.backward(bad((2, 5, 3))), "Highway: gradient of the output"
    if kind == "embedding":
        m = Embedding(5, 4)
        m.forward(np.zeros((2, 5), int))
        return lambda: m.backward(bad((2, 5, 4))), "Embedding: gradient of the output"
    if kind == "crf":
        m = CRF(3)
        m.forward(x, np.zeros((2, 5), int))
        return lambda: m.backward(bad((2,))), "CRF: gradient of the NLL"
    if kind == "lstm cell":
        m = LSTMCell(3, 4)
        m.forward(x[:, 0])
        return lambda: m.backward(bad((2, 4)), np.zeros((2, 4))), "gradient of the new state h"
    m = LSTM(3, 4)
    y, _ = m.forward(x)
    if kind == "lstm final state":
        return lambda: m.backward(None, (np.zeros((1, 2, 4)), bad((1, 2, 4)))), "gradient of the final state c"
    return lambda: m.backward(bad(y.shape)), "gradient of the output"


@pytest.mark.parametrize("kind", ["lstm output", "lstm final state", "lstm cell", "linear", "highway", "embedding",
                                  "crf"])
@pytest.mark.parametrize("bad", BAD_GRADIENTS)
def test_backward_refuses_the_gradients_forward_would_refuse_as_inputs(kind, bad):
    make, error, word = BAD_GRADIENTS[bad]
    call, name = _output_gradient(kind, make)
    with pytest.raises(error) as info:
        call()
    assert_one_line_naming(info, name, word)


@pytest.mark.parametrize("kind", ["lstm output", "linear", "highway", "embedding", "crf"])
def test_backward_refuses_a_gradient_of_the_wrong_shape(kind):
    call, name = _output_gradient(kind, lambda shape: np.zeros(shape[:-1] + (shape[-1] + 1,)))
    with pytest.raises(ShapeError) as info:
        call()
    assert_one_line_naming(info, name, "must have shape")


def test_a_float16_gradient_is_converted_as_a_float16_input_is():
    layer, y = lstm_after_forward()
    dx, _ = layer.backward(np.ones(y.shape, np.float16))
    assert dx.dtype == np.float32 and np.isfinite(dx).all()


def test_a_crf_takes_a_scalar_gradient_for_one_unbatched_sequence():
    crf = CRF(3, rng=0)
    crf.forward(np.zeros((4, 3), np.float32), np.zeros(4, int))
    assert crf.backward(1.0).shape == (4, 3)


# -- layer options --------------------------------------------------------------------------------------------

BAD_OPTIONS = {
    "LSTM dropout='0.1'": (lambda: LSTM(3, 4, num_layers=2, dropout="0.1"), "dropout", "str '0.1'"),
    "LSTM dropout=nan": (lambda: LSTM(3, 4, dropout=float("nan")), "dropout", "nan"),
    "LSTM dropout=1": (lambda: LSTM(3, 4, dropout=1), "dropout", "[0.0, 1.0)"),
    "LSTM hidden_size=True": (lambda: LSTM(3, True), "hidden_size", "bool True"),
    "LSTM hidden_size=2.0": (lambda: LSTM(3, 2.0), "hidden_size", "float 2.0"),
    "LSTM hidden_size='4'": (lambda: LSTM(3, "4"), "hidden_size", "str '4'"),
    "LSTM hidden_size=10**12": (lambda: LSTM(3, 10**12), "hidden_size", "1000000000000"),
    "LSTM num_layers=0": (lambda: LSTM(3, 4, num_layers=0), "num_layers", "got 0"),
    "LSTM bidirectional='yes'": (lambda: LSTM(3, 4, bidirectional="yes"), "bidirectional", "str 'yes'"),
    "LSTM bias=None": (lambda: LSTM(3, 4, bias=None), "bias", "NoneType"),
    "LSTM proj_size=4": (lambda: LSTM(3, 4, proj_size=4), "proj_size", "got 4"),
    "LSTM proj_size=True": (lambda: LSTM(3, 4, proj_size=True), "proj_size", "bool"),
    "LSTM peephole=1": (lambda: LSTM(3, 4, peephole=1), "peephole", "int 1"),
    "LSTM forget_bias='1'": (lambda: LSTM(3, 4, forget_bias="1"), "forget_bias", "str '1'"),
    "LSTM forget_bias=inf": (lambda: LSTM(3, 4, forget_bias=float("inf")), "forget_bias", "inf"),
    "LSTM rng='a'": (lambda: LSTM(3, 4, rng="a"), "rng", "str 'a'"),
    "LSTM dtype='foo'": (lambda: LSTM(3, 4, dtype="foo"), "dtype", "foo"),
    "GRU reset_after='no'": (lambda: GRU(3, 4, reset_after="no"), "reset_after", "str"),
    "RNN nonlinearity=None": (lambda: RNN(3, 4, nonlinearity=None), "nonlinearity", "None"),
    "RHN depth=1.5": (lambda: RHN(3, 4, depth=1.5), "depth", "float 1.5"),
    "RHN coupled=0": (lambda: RHN(3, 4, coupled=0), "coupled", "int 0"),
    "RHN transform_bias=nan": (lambda: RHN(3, 4, transform_bias=float("nan")), "transform_bias", "nan"),
    "Mogrifier rounds='2'": (lambda: MogrifierLSTM(3, 4, rounds="2"), "rounds", "str '2'"),
    "Mogrifier rank=0": (lambda: MogrifierLSTM(3, 4, rank=0), "rank", "got 0"),
    "Jordan output_size=0.5": (lambda: Jordan(3, 4, 0.5), "output_size", "float 0.5"),
    "Jordan state_decay=1.0": (lambda: Jordan(3, 4, 2, state_decay=1.0), "state_decay", "1.0"),
    "CRF(2.5)": (lambda: CRF(2.5), "num_tags", "float 2.5"),
    "CRF(True)": (lambda: CRF(True), "num_tags", "bool True"),
    "CRF(0)": (lambda: CRF(0), "num_tags", "got 0"),
    "CRF start_end='no'": (lambda: CRF(3, start_end="no"), "start_end", "str"),
    "Linear(3, '4')": (lambda: Linear(3, "4"), "out_features", "str '4'"),
    "Linear(0, 4)": (lambda: Linear(0, 4), "in_features", "got 0"),
    "Embedding(0, 4)": (lambda: Embedding(0, 4), "num_embeddings", "got 0"),
    "Embedding padding_idx=9": (lambda: Embedding(5, 4, padding_idx=9), "padding_idx", "got 9"),
    "OneHot(2.0)": (lambda: rnnkit.OneHot(2.0), "num_classes", "float 2.0"),
    "Dropout('0.1')": (lambda: rnnkit.Dropout("0.1"), "dropout probability p", "str '0.1'"),
    "Highway(2.5)": (lambda: Highway(2.5), "size", "float 2.5"),
    "Highway gate_bias=nan": (lambda: Highway(3, gate_bias=float("nan")), "gate_bias", "nan"),
    "AdditiveAttention(0, 3, 3)": (lambda: AdditiveAttention(0, 3, 3), "memory_size", "got 0"),
    "LuongAttention('3', 3)": (lambda: LuongAttention("3", 3), "memory_size", "str '3'"),
    "LuongAttention score='cos'": (lambda: LuongAttention(3, 3, score="cos"), "score", "'cos'"),
    "LSTMCell(3, True)": (lambda: LSTMCell(3, True), "hidden_size", "bool True"),
    "MSELoss('avg')": (lambda: rnnkit.MSELoss("avg"), "reduction", "'avg'"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_a_bad_layer_option_is_a_one_line_config_error_naming_the_option_and_the_value(case):
    make, name, received = BAD_OPTIONS[case]
    with pytest.raises((ConfigError, DTypeError)) as info:
        make()
    assert_one_line_naming(info, name, received)


def test_bool_and_integer_options_keep_working_with_numpy_scalars():
    layer = LSTM(np.int64(3), np.int32(4), num_layers=np.int64(1), bidirectional=np.bool_(True), dropout=0)
    assert (layer.input_size, layer.hidden_size, layer.bidirectional, layer.dropout) == (3, 4, True, 0.0)
    assert Embedding(5, 2, padding_idx=-1).padding_idx == 4  # PyTorch's negative padding index


# -- inputs of attention and masks ------------------------------------------------------------------------------

def test_attention_refuses_a_mask_that_leaves_a_row_without_positions():
    att = AdditiveAttention(3, 2, 4, rng=0)
    with pytest.raises(ShapeError) as info:
        att.prepare(np.zeros((2, 4, 3), np.float32), np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))
    assert_one_line_naming(info, "attention mask", "at least one source position")


def test_attention_refuses_a_query_of_the_wrong_shape():
    att = LuongAttention(3, 2, score="general", rng=0)
    mem = att.prepare(np.zeros((2, 4, 3), np.float32), np.ones((2, 4), bool))
    with pytest.raises(ShapeError) as info:
        att.step(mem, np.zeros((3, 2), np.float32))
    assert_one_line_naming(info, "attention query", "(2, 2)", "(3, 2)")


@pytest.mark.parametrize("mask, error, words", [
    (np.full((1, 3), 0.5), ShapeError, ["mask", "0 and 1"]),
    (np.array([["a", "b", "c"]]), DTypeError, ["mask", "<U1"]),
])
def test_a_crf_mask_must_be_boolean_or_zero_one(mask, error, words):
    with pytest.raises(error) as info:
        CRF(2).forward(np.zeros((1, 3, 2), np.float32), np.zeros((1, 3), int), mask)
    assert_one_line_naming(info, *words)


@pytest.mark.parametrize("lengths, words", [
    ([[1, 2], [3]], ["lengths", "2 integers"]),
    (np.array([2.0, 3.0]), ["lengths", "float64"]),
    (np.array([0, 3], np.uint8), ["lengths", "[1, 5]"]),
])
def test_bad_lengths_are_a_shape_error_naming_lengths(lengths, words):
    with pytest.raises(ShapeError) as info:
        GRU(3, 4).forward(np.zeros((2, 5, 3), np.float32), lengths=lengths)
    assert_one_line_naming(info, *words)


def test_unsigned_lengths_sort_as_the_same_signed_lengths():
    layer, x = GRU(3, 4, rng=0), np.random.default_rng(0).normal(size=(3, 5, 3))
    y_u, _ = layer.forward(x, lengths=np.array([2, 5, 3], np.uint16))
    y_s, _ = layer.forward(x, lengths=np.array([2, 5, 3]))
    np.testing.assert_array_equal(y_u, y_s)


# -- breaks the fuzz suite (tests/test_fuzz_api.py) found after the fixes above ---------------------------------

def test_attention_backward_over_an_empty_batch_gives_empty_gradients():
    att = AdditiveAttention(3, 2, 4, rng=0)
    mem = att.prepare(np.zeros((0, 2, 3), np.float32))
    context, alpha = att.step(mem, np.zeros((0, 2), np.float32))
    assert context.shape == (0, 3) and alpha.shape == (0, 2)
    assert att.step_backward(np.zeros((0, 3), np.float32)).shape == (0, 2)
    assert att.finish_backward(mem).shape == (0, 2, 3)


def test_crf_forward_without_tags_is_a_dtype_error_naming_tags():
    with pytest.raises(DTypeError) as info:
        CRF(3).forward(np.zeros((1, 2, 3), np.float32), None)
    assert_one_line_naming(info, "tags", "NoneType")


def test_a_numpy_scalar_is_not_a_dtype():
    with pytest.raises(DTypeError) as info:
        LuongAttention(3, 2, dtype=np.float64(0.5))
    assert_one_line_naming(info, "dtype", "np.float64(0.5)")


@pytest.mark.parametrize("make, state", [(lambda: RNN(3, 4), ()), (lambda: LSTM(3, 4), ())], ids=["rnn", "lstm"])
def test_an_empty_tuple_as_initial_state_is_a_one_line_error_not_an_index_error(make, state):
    with pytest.raises(RnnkitError) as info:
        make().forward(np.zeros((2, 5, 3), np.float32), state)
    assert_one_line_naming(info, "initial state")


def test_an_empty_tuple_as_a_step_cells_state_is_a_one_line_error_not_an_index_error():
    with pytest.raises(RnnkitError) as info:
        RNNCell(3, 4).forward(np.zeros((2, 3), np.float32), ())
    assert_one_line_naming(info, "state")


def test_an_empty_list_of_lengths_is_valid_for_an_empty_batch():
    y, _ = GRU(3, 4).forward(np.zeros((0, 5, 3), np.float32), lengths=[])
    assert y.shape == (0, 5, 4)


def test_crf_gradients_stay_finite_when_padded_steps_have_large_scores(rng):
    crf = CRF(3, rng=0)
    emissions = (1e3 * rng.normal(size=(3, 5, 3))).astype(np.float32)
    mask = np.arange(5) < np.array([[5], [2], [1]])
    crf.forward(emissions, rng.integers(0, 3, (3, 5)), mask)
    grad = crf.backward(np.ones(3, np.float32))
    assert np.isfinite(grad).all() and not grad[~mask].any()
    assert all(np.isfinite(p.grad).all() for p in crf.parameters())


def test_carried_state_trace_and_state_at_refuse_bad_arguments_by_name():
    layer = LSTM(3, 4, stateful=True)
    layer.forward(np.zeros((2, 5, 3), np.float32))
    for call, name in [(lambda: setattr(layer, "carried_state", ()), "initial state"),
                       (lambda: layer.trace(layer=1), "layer"), (lambda: layer.trace(direction=2), "direction"),
                       (lambda: layer.state_at(6), "k"), (lambda: layer.state_at("a"), "k"),
                       (lambda: setattr(layer, "detach_state", "yes"), "detach_state")]:
        with pytest.raises(RnnkitError) as info:
            call()
        assert_one_line_naming(info, name)
    assert layer.trace(layer=-1).states["h"].shape == (2, 5, 4)  # a negative index counts from the last
