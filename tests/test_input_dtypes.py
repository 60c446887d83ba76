"""Keras's autocast: any real floating input runs in the layer's dtype, and its gradient comes back in the input's
own dtype; integer, boolean, complex and object arrays are refused with a one-line `DTypeError`."""

import numpy as np
import pytest

import rnnkit
from rnnkit import (
    CRF,
    GRU,
    LSTM,
    RHN,
    RNN,
    Elman,
    GRUCell,
    Highway,
    Jordan,
    Linear,
    LSTMCell,
    MogrifierLSTM,
    ReLU,
    RNNCell,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from rnnkit.errors import DTypeError
from rnnkit.models.sequence import ModelConfig, SequenceModel


def flat(obj) -> list:
    return [a for o in obj for a in flat(o)] if isinstance(obj, tuple) else [obj]


def like(obj, dtype):
    """Ones shaped like ``obj`` (an array or a tuple of arrays), in ``dtype``."""
    return tuple(like(o, dtype) for o in obj) if isinstance(obj, tuple) else np.ones(obj.shape, dtype)


def run_layer(m, x):
    """A recurrent layer: outputs and final state forward, gradients of both back → (outputs, input gradients)."""
    y, state = m.forward(x)
    dx, dstate = m.backward(like(y, x.dtype), like(state, x.dtype))
    return [y, *flat(state)], [dx, *flat(dstate)]


def run_cell(m, x):
    state = m.forward(x)
    dx, dprev = m.backward(like(state, x.dtype))
    return flat(state), [dx, *flat(dprev)]


def run_plain(m, x):
    """Sequential, Linear, Highway, a SequenceModel or Elman: the outputs forward, their gradient back."""
    out = m.forward(x)
    y = out[0] if isinstance(out, tuple) else out
    dx = m.backward(like(y, x.dtype))
    return [y], flat(dx)


CASES = {
    "rnn": (lambda: RNN(3, 4, num_layers=2, bidirectional=True, rng=0), run_layer, (2, 5, 3)),
    "lstm": (lambda: LSTM(3, 4, proj_size=2, peephole=True, rng=0), run_layer, (2, 5, 3)),
    "gru": (lambda: GRU(3, 4, reset_after=False, rng=0), run_layer, (2, 5, 3)),
    "jordan": (lambda: Jordan(3, 4, 2, rng=0), run_layer, (2, 5, 3)),
    "rhn": (lambda: RHN(3, 4, depth=2, rng=0), run_layer, (2, 5, 3)),
    "mogrifier": (lambda: MogrifierLSTM(3, 4, rounds=2, rng=0), run_layer, (2, 5, 3)),
    "rnn cell": (lambda: RNNCell(3, 4, rng=0), run_cell, (2, 3)),
    "lstm cell": (lambda: LSTMCell(3, 4, rng=0), run_cell, (2, 3)),
    "gru cell": (lambda: GRUCell(3, 4, rng=0), run_cell, (2, 3)),
    "linear": (lambda: Linear(3, 4, rng=0), run_plain, (2, 5, 3)),
    "highway": (lambda: Highway(3, num_layers=2, rng=0), run_plain, (2, 5, 3)),
    "sequential": (lambda: Sequential(Linear(3, 4, rng=0), Tanh(), LSTM(4, 5, return_state=False, rng=1),
                                      Linear(5, 2, rng=2)), run_plain, (2, 5, 3)),
    "elman": (lambda: Elman(3, 4, 2, rng=0), run_plain, (2, 5, 3)),
    "sequence model": (lambda: SequenceModel(ModelConfig(3, 2, cell="gru", hidden_size=4), rng=0), run_plain,
                       (2, 5, 3)),
}


@pytest.mark.parametrize("kind", CASES)
def test_float64_input_to_a_float32_layer_computes_in_float32_and_returns_float64_gradients(kind, rng):
    make, run, shape = CASES[kind]
    x64 = rng.normal(size=shape)
    a, b = make(), make()
    outs, grads = run(a, x64)
    assert {o.dtype for o in outs} == {np.dtype(np.float32)}, "outputs are in the layer's dtype"
    assert {g.dtype for g in grads} == {np.dtype(np.float64)}, "input gradients are in the input's dtype"
    ref_outs, ref_grads = run(b, x64.astype(np.float32))
    for got, want in zip(outs + grads, ref_outs + ref_grads):
        np.testing.assert_array_equal(got, want.astype(got.dtype))  # exactly the float32 computation
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.grad.dtype == np.float32
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_the_readme_call_with_numpys_default_dtype_works():
    y, (h_n, c_n) = rnnkit.LSTM(3, 8).forward(np.random.randn(4, 10, 3))
    assert y.shape == (4, 10, 8) and y.dtype == np.float32


def test_float16_input_and_float64_initial_state_are_converted_and_their_gradients_keep_their_dtypes(rng):
    layer = GRU(3, 4, rng=0)
    y, h = layer.forward(rng.normal(size=(2, 5, 3)).astype(np.float16), rng.normal(size=(1, 2, 4)))
    dx, dh0 = layer.backward(np.ones_like(y), np.ones_like(h))
    assert y.dtype == np.float32 and dx.dtype == np.float16 and dh0.dtype == np.float64


def test_a_float64_layer_given_float32_input_computes_in_float64(rng):
    layer = LSTM(3, 4, dtype=np.float64, rng=0)
    x32 = rng.normal(size=(2, 5, 3)).astype(np.float32)
    y, _ = layer.forward(x32)
    dx, _ = layer.backward(np.ones_like(y))
    assert y.dtype == np.float64 and dx.dtype == np.float32
    y64, _ = LSTM(3, 4, dtype=np.float64, rng=0).forward(x32.astype(np.float64))
    np.testing.assert_array_equal(y, y64)


@pytest.mark.parametrize("act", [Sigmoid, Tanh, ReLU, Softmax])
def test_activations_compute_in_the_inputs_own_dtype(act, rng):
    for dtype in (np.float16, np.float32, np.float64):
        m = act()
        x = rng.normal(size=(2, 3)).astype(dtype)
        y = m.forward(x)
        assert y.dtype == dtype and m.backward(np.ones((2, 3))).dtype == dtype


def test_crf_takes_float64_emissions_and_returns_float64_gradients(rng):
    a, b = CRF(3, rng=0), CRF(3, rng=0)
    emissions, tags = rng.normal(size=(2, 4, 3)), rng.integers(0, 3, size=(2, 4))
    nll = a.forward(emissions, tags)
    d = a.backward(np.ones(2))
    assert nll.dtype == np.float32 and d.dtype == np.float64
    ref = b.forward(emissions.astype(np.float32), tags)
    np.testing.assert_array_equal(nll, ref)
    np.testing.assert_array_equal(d, b.backward(np.ones(2, np.float32)).astype(np.float64))
    for p, q in zip(a.decode(emissions), b.decode(emissions.astype(np.float32))):
        np.testing.assert_array_equal(p, q)


BAD = {
    "int64": np.zeros((2, 5, 3), np.int64),
    "bool": np.zeros((2, 5, 3), bool),
    "complex128": np.zeros((2, 5, 3), np.complex128),
    "object": np.zeros((2, 5, 3), object),
}


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("bad", BAD)
def test_non_real_floating_input_is_refused_with_one_line_naming_its_dtype(kind, bad):
    make, _, shape = CASES[kind]
    x = BAD[bad][(0,) * (3 - len(shape))]
    with pytest.raises(DTypeError, match=bad) as info:
        make().forward(x)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("module", [CRF(3), Tanh(), rnnkit.Dropout(0.5)], ids=["crf", "tanh", "dropout"])
def test_non_real_floating_input_is_refused_by_crf_activations_and_dropout(module):
    with pytest.raises(DTypeError, match="int64"):
        if isinstance(module, CRF):
            module.forward(np.zeros((1, 2, 3), np.int64), np.zeros((1, 2), np.int64))
        else:
            module.forward(np.zeros((2, 3), np.int64))


def test_a_float64_value_too_large_for_float32_is_refused_not_made_infinite():
    with pytest.raises(ValueError, match="NaN or Inf"):
        Linear(3, 2).forward(np.full((2, 3), 1e300))
