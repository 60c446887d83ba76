"""The exercise's interface on the composites (deck 000): tiny fixed inputs, expected outputs, and messages that say
what is likely wrong when an expectation fails."""

import functools

import numpy as np
import pytest

from rnnkit import SGD, Elman, LSTMNet
from rnnkit.errors import ConfigError, ShapeError, UsageError
from rnnkit.recurrent.elman import L2Regularizer


def _tiny_elman():
    """I = 2, H = 2, O = 1 with every weight set by hand."""
    net = Elman(2, 2, 1, dtype=np.float64, rng=0)
    net.W_xh = [[0.1, 0.2], [0.3, 0.4]]
    net.W_hh = [[0.5, 0.0], [0.0, 0.5]]
    net.b_h = [0.0, 0.1]
    net.W_hy = [[1.0], [-1.0]]
    net.b_y = [0.0]
    return net


def test_weights_stack_w_xh_w_hh_and_b_h_over_x_h_and_one():
    net = _tiny_elman()
    expected = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.0], [0.0, 0.5], [0.0, 0.1]])
    np.testing.assert_allclose(net.weights, expected, err_msg="weights must be [W_xh; W_hh; b_h] with rows in the "
                               "order x, h, 1 (is the bias row last? are the matrices transposed?)")


def test_the_stacked_matrix_computes_the_hidden_state_over_the_concatenation():
    net = _tiny_elman()
    x = np.array([[[1.0, 2.0]]])
    _, h_n = net.forward(x)
    x_tilde = np.concatenate([x[0, 0], np.zeros(2), [1.0]])
    np.testing.assert_allclose(h_n[0, 0], np.tanh(x_tilde @ net.weights),
                               err_msg="h_1 must be tanh([x_1, h_0, 1] · W_h) with h_0 = 0")
    np.testing.assert_allclose(h_n[0, 0], np.tanh([0.7, 1.1]), err_msg="hand-computed h_1 = tanh(x W_xh + b_h)")


def test_assigning_weights_writes_the_parameters_and_puts_the_whole_bias_in_b_ih():
    net = _tiny_elman()
    new = np.arange(10.0).reshape(5, 2) / 10
    net.weights = new
    np.testing.assert_allclose(net.weights, new, err_msg="reading weights back must give what was assigned")
    np.testing.assert_allclose(net.rnn.bias_hh_l0.data, 0, err_msg="b_h goes to bias_ih_l0; bias_hh_l0 is zeroed")
    with pytest.raises(ShapeError, match=r"weights must be a real array of shape \(5, 2\)"):
        net.weights = np.zeros((4, 2))


def test_gradient_weights_is_the_gradient_of_the_stacked_matrix():
    net = _tiny_elman()
    x = np.array([[[1.0, 2.0], [0.5, -1.0]]])
    y, _ = net.forward(x)
    net.backward(np.ones_like(y))
    g = net.gradient_weights
    assert g.shape == (5, 2)
    np.testing.assert_allclose(g[:2], net.rnn.weight_ih_l0.grad.T, err_msg="rows for x: ∂L/∂W_xh = (∂L/∂W_ih)ᵀ")
    np.testing.assert_allclose(g[4], net.rnn.bias_ih_l0.grad, err_msg="the bias row is ∂L/∂b_h")


def test_an_attached_optimizer_steps_after_each_backward():
    net = _tiny_elman()
    net.optimizer = functools.partial(SGD, lr=0.5)
    before = net.weights
    y, _ = net.forward(np.array([[[1.0, 2.0]]]))
    net.backward(np.ones_like(y))
    step = 0.5 * net.gradient_weights
    np.testing.assert_allclose(net.weights[:4], before[:4] - step[:4],
                               err_msg="with an optimizer attached, backward must end with W ← W − lr · ∂L/∂W")
    np.testing.assert_allclose(net.weights[4], before[4] - 2 * step[4],
                               err_msg="b_h is PyTorch's two biases: under SGD it moves twice the lecture's step")
    with pytest.raises(ConfigError, match="optimizer must be"):
        net.optimizer = "sgd"


def test_initialize_applies_the_weight_and_bias_initializers():
    class Constant:  # the exercise's initializer interface
        def __init__(self, value):
            self.value = value

        def initialize(self, shape, fan_in, fan_out):
            return np.full(shape, self.value)

    net = LSTMNet(2, 3, 1, dtype=np.float64, rng=0)
    net.initialize(Constant(0.25), 0.0)
    np.testing.assert_allclose(net.W_xh, 0.25, err_msg="every weight matrix must come from the weights initializer")
    np.testing.assert_allclose(net.b_h, 0.0, err_msg="every bias must come from the bias initializer")
    assert net.weights.shape == (2 + 3 + 1, 4 * 3)


def test_regularization_loss_sums_the_regularizer_over_the_weight_matrices_only():
    net = _tiny_elman()
    net.regularizer = L2Regularizer(2.0)
    squares = (0.01 + 0.04 + 0.09 + 0.16) + (0.25 + 0.25) + (1.0 + 1.0)
    assert net.regularization_loss() == pytest.approx(squares), "R = (α/2) Σ‖W‖² over W_xh, W_hh, W_hy (no biases)"


def test_the_lecture_matrices_refuse_a_stacked_network_in_one_line():
    with pytest.raises(UsageError, match="one layer and one direction"):
        _ = Elman(2, 2, 1, num_layers=2).weights
