"""Highway layer, Recurrent Highway Network and Mogrifier LSTM: gradients, reductions to known cases, options."""

import numpy as np
import pytest

from conftest import GRADCHECK_TOL
from rnnkit import LSTM, RHN, Highway, MogrifierLSTM, Sequential, gradcheck


def sig(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("options", [dict(), dict(activation="relu", gate_bias=0.5), dict(num_layers=3)], ids=str)
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_highway_gradcheck_on_batches_and_sequences(rng, options, shape):
    x = rng.normal(size=shape)
    x[np.abs(x) < 0.1] = 0.3
    assert gradcheck(Highway(3, rng=0, **options), x) < GRADCHECK_TOL


def test_highway_equation_and_stacking_in_sequential(rng):
    layer = Highway(4, dtype=np.float64, rng=0)
    x = rng.normal(size=(3, 4))
    w, b = layer.weight.data, layer.bias.data
    h, t = np.tanh(x @ w[:4].T + b[:4]), sig(x @ w[4:].T + b[4:])
    np.testing.assert_allclose(layer.forward(x), h * t + x * (1 - t), rtol=1e-12)
    np.testing.assert_array_equal(b[4:], -2.0)
    stack = Sequential(Highway(4, rng=1), Highway(4, rng=2))
    assert gradcheck(stack, rng.normal(size=(2, 3, 4))) < GRADCHECK_TOL


RHN_CASES = [dict(depth=1), dict(depth=3), dict(depth=2, coupled=False),
             dict(depth=2, num_layers=2, bidirectional=True)]


@pytest.mark.parametrize("options", RHN_CASES, ids=str)
def test_rhn_gradcheck_with_state_and_lengths(rng, options):
    layer = RHN(3, 4, rng=0, **options)
    x = rng.normal(size=(3, 5, 3))
    s0 = rng.normal(size=(layer.num_directions * layer.num_layers, 3, 4))
    assert gradcheck(layer, x, s0) < GRADCHECK_TOL
    assert gradcheck(layer, x, s0, lengths=np.array([5, 2, 3])) < GRADCHECK_TOL


def test_rhn_depth_one_coupled_is_the_highway_recurrence_written_out(rng):
    layer = RHN(3, 4, depth=1, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 6, 3))
    y, _ = layer.forward(x)
    w_ih, w_hh = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    b = layer.bias_ih_l0.data + layer.bias_hh_l0.data
    s = np.zeros((2, 4))
    for t in range(6):
        a = x[:, t] @ w_ih.T + s @ w_hh.T + b
        h, tg = np.tanh(a[:, :4]), sig(a[:, 4:])
        s = h * tg + s * (1 - tg)
        np.testing.assert_allclose(y[:, t], s, rtol=1e-12)


def test_rhn_micro_cells_use_their_own_weights_and_the_input_only_first(rng):
    layer = RHN(3, 4, depth=3, dtype=np.float64, rng=0)
    assert layer.weight_hh_l0.shape == (3 * 8, 4) and layer.weight_ih_l0.shape == (8, 3)
    np.testing.assert_array_equal(layer.bias_hh_l0.data.reshape(3, 2, 4)[:, 1], -2.0)
    x = rng.normal(size=(2, 4, 3))
    y, _ = layer.forward(x)
    r = layer.weight_hh_l0.data.reshape(3, 8, 4)
    bh = layer.bias_hh_l0.data.reshape(3, 8)
    s = np.zeros((2, 4))
    for t in range(4):
        for depth in range(3):
            a = s @ r[depth].T + bh[depth]
            if depth == 0:
                a += x[:, t] @ layer.weight_ih_l0.data.T + layer.bias_ih_l0.data
            h, tg = np.tanh(a[:, :4]), sig(a[:, 4:])
            s = h * tg + s * (1 - tg)
        np.testing.assert_allclose(y[:, t], s, rtol=1e-12)


MOG_CASES = [dict(rounds=0), dict(rounds=1), dict(rounds=4), dict(rounds=5, rank=2),
             dict(rounds=3, proj_size=2, peephole=True), dict(rounds=2, num_layers=2, bidirectional=True)]


@pytest.mark.parametrize("options", MOG_CASES, ids=str)
def test_mogrifier_gradcheck_with_state_and_lengths(rng, options):
    layer = MogrifierLSTM(3, 4, rng=0, **options)
    rows = layer.num_directions * layer.num_layers
    state = (rng.normal(size=(rows, 3, layer.state_sizes[0])), rng.normal(size=(rows, 3, 4)))
    x = rng.normal(size=(3, 5, 3))
    assert gradcheck(layer, x, state) < GRADCHECK_TOL
    assert gradcheck(layer, x, state, lengths=np.array([5, 1, 3])) < GRADCHECK_TOL


def test_mogrifier_with_zero_rounds_equals_the_lstm(rng):
    mog = MogrifierLSTM(3, 4, rounds=0, num_layers=2, dtype=np.float64, rng=0)
    lstm = LSTM(3, 4, num_layers=2, dtype=np.float64, rng=1)
    lstm.load_state_dict(mog.state_dict())
    x = rng.normal(size=(2, 6, 3))
    (y1, (_, c1)), (y2, (_, c2)) = mog.forward(x), lstm.forward(x)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c1, c2, rtol=1e-12, atol=1e-15)
    dy = rng.normal(size=y1.shape)
    np.testing.assert_allclose(mog.backward(dy)[0], lstm.backward(dy)[0], rtol=1e-11, atol=1e-14)


def test_mogrifier_rounds_written_out(rng):
    layer = MogrifierLSTM(3, 4, rounds=3, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 3))
    h0, c0 = rng.normal(size=(1, 2, 4)), rng.normal(size=(1, 2, 4))
    q, r = layer.weight_mq_l0.data, layer.weight_mr_l0.data
    xm = 2 * sig(h0[0] @ q[0].T) * x           # round 1
    hm = 2 * sig(xm @ r[0].T) * h0[0]          # round 2
    xm = 2 * sig(hm @ q[1].T) * xm             # round 3
    lstm = LSTM(3, 4, dtype=np.float64, rng=1)
    lstm.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("weight_m")})
    expected, _ = lstm.forward(xm[:, None], (hm[None], c0))
    y, _ = layer.forward(x[:, None], (h0, c0))
    np.testing.assert_allclose(y, expected, rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: RHN(3, 4, depth=0), "depth"),
    (lambda: MogrifierLSTM(3, 4, rounds=-1), "rounds"),
    (lambda: MogrifierLSTM(3, 4, rank=0), "rank"),
    (lambda: Highway(3, activation="sigmoid"), "activation"),
])
def test_bad_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()
