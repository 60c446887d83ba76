"""The Elman RNN layer: gradients, the runner's semantics (ragged batches, reversal, stateful carry), contract."""

import numpy as np
import pytest

from conftest import GRADCHECK_TOL
from rnnkit import RNN, gradcheck


def rnn64(*args, **kwargs):
    return RNN(*args, dtype=np.float64, rng=0, **kwargs)


@pytest.mark.parametrize("options", [
    dict(),
    dict(nonlinearity="relu"),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True),
    dict(bias=False),
], ids=str)
def test_gradcheck_with_initial_state(rng, options):
    layer = rnn64(3, 4, **options)
    x = rng.normal(size=(2, 5, 3))
    h0 = rng.normal(size=(layer.num_directions * layer.num_layers, 2, 4))
    assert gradcheck(layer, x, h0) < GRADCHECK_TOL


def test_gradcheck_with_inter_layer_dropout(rng):
    layer = rnn64(3, 4, num_layers=2, dropout=0.5)
    assert gradcheck(layer, rng.normal(size=(2, 4, 3)), None) < GRADCHECK_TOL


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck_with_lengths(rng, bidirectional):
    layer = rnn64(3, 4, num_layers=2, bidirectional=bidirectional)
    x = rng.normal(size=(3, 5, 3))
    h0 = rng.normal(size=(layer.num_directions * 2, 3, 4))
    assert gradcheck(layer, x, h0, lengths=np.array([2, 5, 4])) < GRADCHECK_TOL


def test_gradcheck_stateful_second_chunk(rng):
    layer = rnn64(3, 4, num_layers=2, stateful=True)
    layer.forward(rng.normal(size=(2, 4, 3)))  # first chunk: its final state is carried, detached
    assert layer.carried_state is not None
    assert gradcheck(layer, rng.normal(size=(2, 3, 3))) < GRADCHECK_TOL


def test_shapes_and_pytorch_parameter_names():
    layer = RNN(3, 4, num_layers=2, bidirectional=True)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (4, 3), "weight_hh_l0": (4, 4), "bias_ih_l0": (4,), "bias_hh_l0": (4,),
        "weight_ih_l0_reverse": (4, 3), "weight_hh_l0_reverse": (4, 4),
        "bias_ih_l0_reverse": (4,), "bias_hh_l0_reverse": (4,),
        "weight_ih_l1": (4, 8), "weight_hh_l1": (4, 4), "bias_ih_l1": (4,), "bias_hh_l1": (4,),
        "weight_ih_l1_reverse": (4, 8), "weight_hh_l1_reverse": (4, 4),
        "bias_ih_l1_reverse": (4,), "bias_hh_l1_reverse": (4,),
    }
    y, h = layer.forward(np.zeros((5, 7, 3), np.float32))
    assert y.shape == (5, 7, 8) and h.shape == (4, 5, 4)
    assert y.dtype == h.dtype == np.float32


def test_default_init_is_uniform_within_one_over_sqrt_hidden():
    layer = RNN(10, 64, rng=0)
    bound = 1 / np.sqrt(64)
    for _, p in layer.named_parameters():
        assert np.abs(p.data).max() <= bound
    assert np.abs(layer.weight_hh_l0.data).max() > 0.9 * bound


def test_equals_the_loop_written_out(rng):
    layer = rnn64(3, 4)
    x, h = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 4))
    y, h_n = layer.forward(x, h[None])
    w_ih, w_hh = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    b = layer.bias_ih_l0.data + layer.bias_hh_l0.data
    for t in range(6):
        h = np.tanh(x[:, t] @ w_ih.T + h @ w_hh.T + b)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13)
    np.testing.assert_allclose(h_n[0], h, rtol=1e-13)


def test_unbatched_2d_input_is_one_sequence(rng):
    layer = rnn64(3, 4, bidirectional=True)
    x = rng.normal(size=(6, 3))
    y, h = layer.forward(x)
    dx, dh0 = layer.backward(np.ones_like(y), np.ones_like(h))
    assert dx.shape == x.shape and dh0.shape == (2, 4)
    yb, hb = layer.forward(x[None])
    np.testing.assert_allclose(y, yb[0])
    np.testing.assert_allclose(h, hb[:, 0])
    with pytest.raises(ValueError, match=r"shape \(1, 6, 8\), got \(6, 8\)"):
        layer.backward(np.ones_like(y))


def test_reverse_direction_final_state_is_output_at_time_zero(rng):
    layer = rnn64(3, 4, bidirectional=True)
    y, h = layer.forward(rng.normal(size=(2, 5, 3)))
    np.testing.assert_allclose(h[1], y[:, 0, 4:])
    np.testing.assert_allclose(h[0], y[:, -1, :4])


def test_ragged_batch_equals_each_sequence_alone(rng):
    layer = rnn64(3, 4, num_layers=2, bidirectional=True)
    lengths = np.array([2, 5, 3])
    x = rng.normal(size=(3, 5, 3))
    x_padded = x.copy()
    for b, n in enumerate(lengths):
        x_padded[b, n:] = 1e3  # garbage past the end must not matter
    y, h = layer.forward(x_padded, lengths=lengths)
    dy = rng.normal(size=y.shape)
    dx, _ = layer.backward(dy)
    for b, n in enumerate(lengths):
        yb, hb = layer.forward(x[b:b + 1, :n])
        np.testing.assert_allclose(y[b, :n], yb[0], atol=1e-13)
        np.testing.assert_allclose(h[:, b], hb[:, 0], atol=1e-13)
        assert not y[b, n:].any(), "outputs past the end are zero"
        assert not dx[b, n:].any(), "gradients at padded positions are exactly zero"


def test_stateful_carries_final_state_and_reset_clears_it(rng):
    layer = rnn64(3, 4, stateful=True)
    x = rng.normal(size=(2, 8, 3))
    y_full, _ = RNN(3, 4, dtype=np.float64, rng=0).forward(x)
    y1, _ = layer.forward(x[:, :5])
    y2, _ = layer.forward(x[:, 5:])
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), y_full, rtol=1e-13)
    with pytest.raises(ValueError, match="batch size 2"):
        layer.forward(rng.normal(size=(3, 2, 3)))
    layer.reset_state()
    y1_again, _ = layer.forward(x[:, :5])
    np.testing.assert_allclose(y1_again, y1)


def test_state_at_gives_the_state_inside_the_last_sequence(rng):
    layer = rnn64(3, 4, num_layers=2)
    x = rng.normal(size=(2, 6, 3))
    layer.forward(x)
    mid = layer.state_at(4)
    _, h4 = layer.forward(x[:, :4])
    np.testing.assert_allclose(mid, h4)


def test_backward_with_only_final_state_gradient(rng):
    layer = rnn64(3, 4)
    layer.forward(rng.normal(size=(2, 5, 3)))
    dx, dh0 = layer.backward(None, np.ones((1, 2, 4)))
    assert dx.shape == (2, 5, 3) and dh0.shape == (1, 2, 4)


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m.forward(np.zeros((2, 5, 4), np.float32)), ValueError, "3 features"),
    (lambda m: m.forward(np.zeros((2, 5, 3), np.complex128)), TypeError, "got complex128"),
    (lambda m: m.forward(np.zeros((2, 5, 3), np.int64)), TypeError, "float32"),
    (lambda m: m.forward(np.zeros((5,), np.float32)), ValueError, "2-D or 3-D"),
    (lambda m: m.forward(np.full((2, 5, 3), np.nan, np.float32)), ValueError, "NaN"),
    (lambda m: m.forward(np.zeros((2, 5, 3), np.float32), np.zeros((1, 3, 4), np.float32)), ValueError,
     r"initial state h must have shape \(1, 2, 4\)"),
    (lambda m: m.forward(np.zeros((2, 5, 3), np.float32), lengths=np.array([0, 5])), ValueError, r"\[1, 5\]"),
    (lambda m: m.forward(np.zeros((2, 5, 3), np.float32), lengths=np.array([5])), ValueError, "2 integers"),
    (lambda m: m.backward(np.zeros((2, 5, 4))), RuntimeError, "no matching forward"),
])
def test_bad_input_raises_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(RNN(3, 4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(nonlinearity="softsign"), "nonlinearity"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(dtype=np.int32), "float32 or float64"),
])
def test_bad_constructor_arguments(kwargs, message):
    args = dict(input_size=3, hidden_size=4) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        RNN(**args)
