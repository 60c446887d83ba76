"""Initializers: bounds, moments and structure."""

import numpy as np
import pytest

from rnnkit import init


def test_xavier_and_he_bounds(rng):
    w = np.empty((200, 300))
    init.xavier_uniform(w, rng=rng)
    assert np.abs(w).max() <= np.sqrt(6 / 500)
    assert w.std() == pytest.approx(np.sqrt(2 / 500), rel=0.05)
    init.he_uniform(w, rng=rng)
    assert np.abs(w).max() <= np.sqrt(6 / 300)
    init.he_normal(w, rng=rng)
    assert w.std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    init.xavier_normal(w, rng=rng)
    assert w.std() == pytest.approx(np.sqrt(2 / 500), rel=0.05)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4)])
def test_orthogonal_has_orthonormal_rows_or_columns(rng, shape):
    w = init.orthogonal(np.empty(shape), rng=rng)
    small = min(shape)
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_identity_constant_default_and_per_gate(rng):
    np.testing.assert_array_equal(init.identity(np.empty((3, 3)), gain=0.5), 0.5 * np.eye(3))
    np.testing.assert_array_equal(init.constant(np.empty(4), 1.0), np.ones(4))
    w = init.default_uniform(np.empty((50, 50)), hidden_size=25, rng=rng)
    assert np.abs(w).max() <= 0.2
    fused = init.per_gate(np.empty((12, 4)), 3, init.identity)
    np.testing.assert_array_equal(fused, np.vstack([np.eye(4)] * 3))
