"""A deep copy of a parameter (`rnnkit.module.Parameter.__deepcopy__`, used by `rnnkit.gradcheck` before every
evaluation) owns copies of its arrays, and keeps an array it shares with another object shared in the copy."""

import copy

import numpy as np

import rnnkit
from rnnkit import Parameter


def test_a_deep_copied_parameter_owns_equal_copies_of_its_arrays():
    p = Parameter(np.arange(6.0).reshape(2, 3))
    p.grad += 1
    q = copy.deepcopy(p)
    assert type(q) is Parameter and q.data is not p.data and q.grad is not p.grad
    assert np.array_equal(q.data, p.data) and np.array_equal(q.grad, p.grad) and q.data.dtype == p.data.dtype
    q.data[0, 0] = 99
    assert p.data[0, 0] == 0


def test_an_array_shared_with_a_parameter_stays_shared_in_a_deep_copy():
    p = Parameter(np.ones((2, 2)))
    copied_p, copied_data = copy.deepcopy((p, p.data))
    assert copied_data is copied_p.data and copied_data is not p.data


def test_a_deep_copied_layer_computes_the_same_and_trains_apart():
    layer = rnnkit.LSTM(3, 4, bidirectional=True, rng=0)
    twin = copy.deepcopy(layer)
    x = np.random.default_rng(1).normal(size=(5, 2, 3)).astype(np.float32)
    assert np.array_equal(layer.forward(x)[0], twin.forward(x)[0])
    for p, q in zip(layer.parameters(), twin.parameters()):
        assert p.data is not q.data and p.grad is not q.grad
