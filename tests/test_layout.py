"""The compiled transposes of the weights each call lays out (`rnnkit.kernels.layout`): W_hhᵀ in strips of rows
and the panels of Wᵀ straight from W give exactly NumPy's copies — every strip and panel remainder, float32 and
float64 — and the cells' `transposed` takes them only with the compiled kernels, for large weights."""

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

import rnnkit  # noqa: E402 - after the skip for the kernels
from rnnkit.kernels import layout, panels  # noqa: E402
from rnnkit.recurrent.cell import transposed  # noqa: E402

SHAPES = [(1024, 256), (256, 1024), (300, 257), (65, 1009), (1, 70000)]


@pytest.fixture
def compiled_for_every_size(monkeypatch):
    """The compiled routes for small matrices too, so that every remainder is reached cheaply."""
    monkeypatch.setattr(layout, "COMPILED_FROM", 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_transpose_in_strips_equals_numpys_copy_bit_for_bit(shape, dtype):
    w = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = layout.transpose(w)
    assert out.flags.c_contiguous and out.dtype == dtype
    assert np.array_equal(out, w.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(37, 3), (64, 5), (65, 130), (33, 1)])
def test_panels_of_a_transposed_view_equal_the_panels_of_its_contiguous_copy(shape, dtype, compiled_for_every_size):
    w = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    from_view = panels.pack(w.T)
    assert np.array_equal(from_view, panels.pack(np.ascontiguousarray(w.T)))


def test_small_or_strided_matrices_keep_numpys_copy():
    w = np.ones((8, 8), np.float32)
    assert np.array_equal(layout.transpose(w), w.T)
    strided = np.ones((600, 600), np.float32)[::2]
    assert np.array_equal(layout.transpose(strided), strided.T)


def test_cells_transpose_with_numpy_when_numpy_kernels_are_chosen(monkeypatch):
    calls = []
    monkeypatch.setattr(layout, "_transpose_strips", lambda *args: calls.append(args))
    w = np.ones((512, 256), np.float32)
    with rnnkit.kernels.using("numpy"):
        assert np.array_equal(transposed(w), w.T)
    assert not calls
    transposed(w)
    assert len(calls) == 1
