"""The optional compiled path computes what the NumPy path computes (to 1e-6 in float32, 1e-12 in float64)."""

import numpy as np
import pytest

from rnnkit import GRU, LSTM
from rnnkit.recurrent import kernels

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")


def run(layer, x, lengths, dy, compiled):
    previous = kernels.configure(enabled=compiled, max_elements=10**9)
    try:
        layer.zero_grad()
        y, final = layer.forward(x, lengths=lengths)
        dx, dstate = layer.backward(dy)
        return [y, dx, *[p.grad.copy() for p in layer.parameters()]]
    finally:
        kernels.configure(**previous)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("make", [
    lambda dt: LSTM(5, 7, num_layers=2, bidirectional=True, dtype=dt, rng=0),
    lambda dt: LSTM(5, 7, proj_size=3, dtype=dt, rng=0),
    lambda dt: GRU(5, 7, num_layers=2, bidirectional=True, dtype=dt, rng=0),
    lambda dt: GRU(5, 7, bias=False, dtype=dt, rng=0),
], ids=["lstm", "lstm-proj", "gru", "gru-no-bias"])
def test_compiled_and_numpy_paths_agree(make, dtype, tol):
    layer = make(dtype)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 9, 5)).astype(dtype)
    lengths = np.array([9, 4, 7, 1])
    dy = rng.normal(size=(4, 9, layer.output_size)).astype(dtype)
    for a, b in zip(run(layer, x, lengths, dy, False), run(layer, x, lengths, dy, True)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_size_limit_selects_the_path():
    previous = kernels.configure(enabled=True, max_elements=100)
    try:
        assert kernels.use_compiled(100) and not kernels.use_compiled(101)
    finally:
        kernels.configure(**previous)
