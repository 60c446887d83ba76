"""LSTM, GRU and Jordan: gradient checks in every configuration, and the equations written out by hand."""

import numpy as np
import pytest

from conftest import GRADCHECK_TOL
from rnnkit import GRU, LSTM, Jordan, gradcheck


def random_state(layer, batch, rng):
    rows = layer.num_directions * layer.num_layers
    parts = tuple(rng.normal(size=(rows, batch, size)) for size in layer.state_sizes)
    return parts if len(parts) > 1 else parts[0]


LAYERS = {
    "lstm": lambda: LSTM(3, 4, rng=0),
    "lstm-proj": lambda: LSTM(3, 4, proj_size=2, rng=0),
    "lstm-peephole": lambda: LSTM(3, 4, peephole=True, rng=0),
    "lstm-proj-peephole-2-layers-bi": lambda: LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=3,
                                                   peephole=True, rng=0),
    "lstm-dropout": lambda: LSTM(3, 4, num_layers=2, dropout=0.4, rng=0),
    "gru": lambda: GRU(3, 4, rng=0),
    "gru-reset-before": lambda: GRU(3, 4, reset_after=False, rng=0),
    "gru-2-layers-bi": lambda: GRU(3, 4, num_layers=2, bidirectional=True, rng=0),
    "gru-reset-before-2-layers-bi": lambda: GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False, rng=0),
    "jordan": lambda: Jordan(3, 4, 2, rng=0),
    "jordan-state-decay-tanh": lambda: Jordan(3, 4, 2, state_decay=0.5, output_activation="tanh", rng=0),
    "jordan-identity-bi": lambda: Jordan(3, 4, 2, output_activation="identity", bidirectional=True, rng=0),
}


@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_with_initial_state(name, rng):
    layer = LAYERS[name]()
    assert gradcheck(layer, rng.normal(size=(2, 5, 3)), random_state(layer, 2, rng)) < GRADCHECK_TOL


@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_with_lengths(name, rng):
    layer = LAYERS[name]()
    x = rng.normal(size=(3, 5, 3))
    assert gradcheck(layer, x, random_state(layer, 3, rng), lengths=np.array([2, 5, 1])) < GRADCHECK_TOL


@pytest.mark.parametrize("name", ["lstm", "gru", "jordan"])
def test_gradcheck_stateful_second_chunk(name, rng):
    layer = LAYERS[name]()
    layer.stateful = True
    layer.to(np.float64).forward(rng.normal(size=(2, 3, 3)))
    assert gradcheck(layer, rng.normal(size=(2, 4, 3))) < GRADCHECK_TOL


def sig(a):
    return 1 / (1 + np.exp(-a))


def test_lstm_peephole_equals_the_equations_written_out(rng):
    layer = LSTM(3, 4, peephole=True, proj_size=2, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 5, 3))
    y, (h_n, c_n) = layer.forward(x)
    p = {n: v.data for n, v in layer.named_parameters()}
    h, c = np.zeros((2, 2)), np.zeros((2, 4))
    for t in range(5):
        a = x[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
        i, f = sig(a_i + p["weight_ci_l0"] * c), sig(a_f + p["weight_cf_l0"] * c)
        c = f * c + i * np.tanh(a_g)
        o = sig(a_o + p["weight_co_l0"] * c)
        h = (o * np.tanh(c)) @ p["weight_hr_l0"].T
        np.testing.assert_allclose(y[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(c_n[0], c, rtol=1e-12)


def test_gru_reset_before_equals_the_cho_equations(rng):
    layer = GRU(3, 4, reset_after=False, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 5, 3))
    y, _ = layer.forward(x)
    w_ih, w_hh = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    b = layer.bias_ih_l0.data + layer.bias_hh_l0.data
    h = np.zeros((2, 4))
    for t in range(5):
        a = x[:, t] @ w_ih.T + b
        r = sig(a[:, :4] + h @ w_hh[:4].T)
        z = sig(a[:, 4:8] + h @ w_hh[4:8].T)
        n = np.tanh(a[:, 8:] + (r * h) @ w_hh[8:].T)
        h = (1 - z) * n + z * h
        np.testing.assert_allclose(y[:, t], h, rtol=1e-12)


def test_jordan_feeds_back_its_output(rng):
    net = Jordan(3, 5, 2, state_decay=0.3, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 6, 3))
    y, _ = net.forward(x)
    p = {n: v.data for n, v in net.named_parameters()}
    y_prev, s = np.zeros((2, 2)), np.zeros((2, 2))
    for t in range(6):
        s = 0.3 * s + y_prev
        h = np.tanh(x[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + s @ p["weight_hh_l0"].T + p["bias_hh_l0"])
        y_prev = sig(h @ p["weight_hy_l0"].T + p["bias_hy_l0"])
        np.testing.assert_allclose(y[:, t], y_prev, rtol=1e-12)


def test_forget_bias_and_parameter_shapes():
    layer = LSTM(3, 4, proj_size=2, peephole=True, forget_bias=1.0)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    assert shapes == {"weight_ih_l0": (16, 3), "weight_hh_l0": (16, 2), "bias_ih_l0": (16,), "bias_hh_l0": (16,),
                      "weight_ci_l0": (4,), "weight_cf_l0": (4,), "weight_co_l0": (4,), "weight_hr_l0": (2, 4)}
    np.testing.assert_array_equal(layer.bias_ih_l0.data[4:8], 1.0)
    np.testing.assert_array_equal(layer.bias_hh_l0.data[4:8], 0.0)
    assert {n: p.shape for n, p in GRU(3, 4).named_parameters()}["weight_hh_l0"] == (12, 4)
    y, (h, c) = layer.forward(np.zeros((5, 7, 3), np.float32))
    assert y.shape == (5, 7, 2) and h.shape == (1, 5, 2) and c.shape == (1, 5, 4)


@pytest.mark.parametrize("make, message", [
    (lambda: LSTM(3, 4, proj_size=4), "proj_size"),
    (lambda: Jordan(3, 4, 2, output_activation="relu"), "output_activation"),
    (lambda: Jordan(3, 4, 2, state_decay=1.0), "state_decay"),
    (lambda: LSTM(3, 4, bias=False, forget_bias=1.0), "forget_bias needs bias"),
])
def test_bad_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lstm_initial_state_must_be_a_pair():
    with pytest.raises(ValueError, match="2 components"):
        LSTM(3, 4).forward(np.zeros((1, 2, 3), np.float32), (np.zeros((1, 1, 4), np.float32),))
