"""Feed-forward building blocks: gradients by central differences, semantics, and the layer contract."""

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL
from rnnkit import Dropout, Embedding, Linear, OneHot, ReLU, Sequential, Sigmoid, Softmax, Tanh, gradcheck


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
def test_linear_gradcheck(rng, shape):
    assert gradcheck(Linear(3, 4, rng=0), rng.normal(size=shape)) < GRADCHECK_TOL


def test_linear_without_bias_has_only_weight():
    layer = Linear(3, 2, bias=False)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert gradcheck(layer, np.ones((2, 3))) < GRADCHECK_TOL


@pytest.mark.parametrize("layer", [Sigmoid(), Tanh(), Softmax(), Softmax(axis=1)], ids=lambda m: type(m).__name__)
def test_activation_gradcheck(rng, layer):
    assert gradcheck(layer, rng.normal(size=(3, 4, 5))) < GRADCHECK_TOL


def test_relu_gradcheck_away_from_kink(rng):
    x = rng.normal(size=(4, 6))
    x[np.abs(x) < 0.1] = 0.5  # the derivative is undefined at 0
    assert gradcheck(ReLU(), x) < GRADCHECK_TOL


DERIVATIVES_OF_THE_OUTPUT = {"Sigmoid": (Sigmoid, lambda y: y * (1 - y)), "Tanh": (Tanh, lambda y: 1 - y**2),
                             "ReLU": (ReLU, lambda y: (y > 0).astype(y.dtype))}


@pytest.mark.parametrize("name", sorted(DERIVATIVES_OF_THE_OUTPUT))
def test_activation_derivatives_come_from_the_output(rng, name):
    """backward saves only the output y, and δx = δy ⊙ f'(y) equals the central-difference gradient of forward."""
    cls, derivative_of_output = DERIVATIVES_OF_THE_OUTPUT[name]
    layer = cls()
    x = rng.normal(size=(3, 4))
    x[np.abs(x) < 0.1] = 0.5  # ReLU's derivative is undefined at 0
    dy = rng.normal(size=x.shape)
    y = layer.forward(x)
    saved = layer.saved_for_backward()
    assert len(saved) == 1 and saved[0] is y  # the output, and nothing else, is kept for the backward
    layer.save_for_backward(*saved)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dy * derivative_of_output(y), rtol=0, atol=1e-15)
    eps = 1e-6
    numeric = (cls().forward(x + eps) - cls().forward(x - eps)) / (2 * eps)
    np.testing.assert_allclose(dx, dy * numeric, rtol=0, atol=1e-8)


def test_sigmoid_is_stable_for_large_inputs():
    y = Sigmoid().forward(np.array([-1000.0, 1000.0]))
    assert np.isfinite(y).all() and y[0] == 0.0 and y[1] == 1.0


def test_embedding_gradcheck_and_repeated_indices():
    emb = Embedding(5, 3, rng=0)
    idx = np.array([[0, 2, 2], [4, 0, 1]])
    assert gradcheck(emb, idx) < GRADCHECK_TOL
    emb.zero_grad()
    emb.forward(idx)
    emb.backward(np.ones((2, 3, 3)))
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [2, 1, 2, 0, 1])


@pytest.mark.parametrize("shape", [(32, 100), (7,), (0, 4)])
def test_embedding_gradient_sums_every_position_of_each_index_and_none_of_the_padding(shape):
    rng = np.random.default_rng(0)
    emb = Embedding(9, 4, padding_idx=2, dtype=np.float64, rng=0)
    idx = rng.integers(0, 9, shape)
    dy = rng.standard_normal(shape + (4,))
    emb.forward(idx)
    emb.backward(dy)
    want = np.zeros((9, 4))
    np.add.at(want, idx.reshape(-1), dy.reshape(-1, 4))
    want[2] = 0
    np.testing.assert_allclose(emb.weight.grad, want, rtol=1e-13, atol=1e-13)


def test_embedding_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        Embedding(5, 2).forward(np.array([5]))
    with pytest.raises(TypeError, match="integer"):
        Embedding(5, 2).forward(np.array([0.0]))


def test_one_hot_matches_identity_rows():
    np.testing.assert_array_equal(OneHot(4).forward(np.array([2, 0])), np.eye(4, dtype=np.float32)[[2, 0]])


def test_dropout_gradcheck_train_mode_and_identity_in_eval(rng):
    drop = Dropout(0.4, rng=0)
    x = rng.normal(size=(50, 40))
    assert gradcheck(drop, x) < GRADCHECK_TOL
    y = drop.forward(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)
    assert 0.5 < kept.mean() < 0.7
    drop.eval()
    assert drop.forward(x) is x


def test_sequential_gradcheck_and_names(rng):
    model = Sequential(Linear(3, 5, rng=0), Tanh(), Linear(5, 2, rng=1))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert gradcheck(model, rng.normal(size=(4, 3))) < GRADCHECK_TOL


def test_gradients_accumulate_until_zero_grad(rng):
    layer = Linear(3, 2, dtype=np.float64, rng=0)
    x = rng.normal(size=(4, 3))
    layer.forward(x)
    layer.backward(np.ones((4, 2)))
    once = layer.weight.grad.copy()
    layer.forward(x)
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_float32_default_and_float64_preserved(rng):
    layer = Linear(3, 2)
    assert layer.weight.data.dtype == np.float32
    assert layer.forward(rng.normal(size=(2, 3)).astype(np.float32)).dtype == np.float32
    layer.to(np.float64)
    assert layer.weight.grad.dtype == np.float64
    assert layer.forward(rng.normal(size=(2, 3))).dtype == np.float64


def test_state_dict_round_trip_and_mismatch_errors():
    a, b = Linear(3, 2, rng=0), Linear(3, 2, rng=1)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"weight": a.weight.data})
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\), got \(3, 3\)"):
        b.load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})


def test_train_eval_mode_propagates():
    model = Sequential(Linear(2, 2), Dropout(0.5))
    model.eval()
    assert not model[1].training
    model.train()
    assert model[1].training


@pytest.mark.parametrize("bad, error, message", [
    (np.ones((2, 4), np.float32), ValueError, "3 features"),
    (np.ones((2, 3), np.int64), TypeError, "real floating-point array .* got int64"),
    (np.full((2, 3), np.nan, np.float32), ValueError, "NaN"),
    ([[1.0, 2.0, 3.0]], TypeError, "numpy array"),
])
def test_linear_rejects_bad_input_with_clear_errors(bad, error, message):
    with pytest.raises(error, match=message):
        Linear(3, 2).forward(bad)


def test_manual_seed_makes_default_initialization_reproducible():
    rnnkit.manual_seed(7)
    a = Linear(3, 2).weight.data.copy()
    rnnkit.manual_seed(7)
    np.testing.assert_array_equal(a, Linear(3, 2).weight.data)


def test_a_modules_dtype_is_its_first_listed_parameters_found_in_its_sub_modules_and_follows_to():
    """`Module.dtype` takes the first parameter `named_parameters` lists (read many times a call, it does not list
    them all): a container without parameters of its own takes its first sub-module's, one without any the default."""
    model = Sequential(Tanh(), Linear(3, 4, dtype=np.float64), Linear(4, 2))
    assert next(p for _, p in model.named_parameters()) is model[1].weight
    assert model.dtype == np.float64
    assert model.to(np.float32).dtype == np.float32 and model[2].dtype == np.float32
    assert Sequential(Tanh(), ReLU()).dtype == np.dtype(rnnkit.module.DEFAULT_DTYPE)
