"""The lecture's Elman network: its matrices are views of the PyTorch-layout parameters, and it trains by BPTT."""

import numpy as np

from conftest import GRADCHECK_TOL
from rnnkit import Elman, gradcheck


def test_equals_the_lecture_equations(rng):
    net = Elman(3, 5, 2, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 6, 3))
    y, _ = net.forward(x)
    h = np.zeros((2, 5))
    for t in range(6):
        h = np.tanh(h @ net.W_hh + x[:, t] @ net.W_xh + net.b_h)
        expected = 1 / (1 + np.exp(-(h @ net.W_hy + net.b_y)))
        np.testing.assert_allclose(y[:, t], expected, rtol=1e-12)


def test_matrices_are_views_of_the_parameters():
    net = Elman(3, 4, 2)
    assert net.W_xh.shape == (3, 4) and net.W_hh.shape == (4, 4) and net.W_hy.shape == (4, 2)
    net.W_hh[0, 1] = 7.0
    assert net.rnn.weight_hh_l0.data[1, 0] == 7.0
    net.b_h = np.ones(4)
    np.testing.assert_array_equal(net.b_h, np.ones(4))


def test_gradcheck_with_initial_state(rng):
    net = Elman(3, 4, 2, rng=0)
    assert gradcheck(net, rng.normal(size=(2, 5, 3)), rng.normal(size=(1, 2, 4))) < GRADCHECK_TOL
