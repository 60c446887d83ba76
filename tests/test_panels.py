"""The compiled loop's skinny products on panels (`rnnkit.kernels.panels`): W packed once into panels of 128-byte
rows, multiplied by a micro-kernel written in LLVM IR. Every tile size and remainder (rows and columns) gives NumPy's
product, assigned or accumulated, in float32 and float64; a range of panels writes only its columns; a team's share
runs on the panels where it starts a panel and on the BLAS where it does not."""

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

from rnnkit.kernels import blas, panels  # noqa: E402 - after the skip for the kernels

TOL = {np.float32: 1e-5, np.float64: 1e-13}
#: the panels' product is compiled into the kernels only on their route (`rnnkit.kernels.backend.PRODUCTS`)
on_the_panels_route = pytest.mark.skipif(not blas.PANELS, reason="the loop's products are not on panels here: MKL's "
                                         "backend, a processor without AVX-512 or RNNKIT_PRODUCTS=blas")


def worst(got, expected) -> float:
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_lays_each_panels_rows_out_contiguously_and_pads_the_last_with_zeros(dtype):
    w = np.arange(3 * 37, dtype=dtype).reshape(3, 37)
    packed = panels.pack(w)
    width = panels.width(dtype)
    assert width * np.dtype(dtype).itemsize == panels.PANEL_BYTES
    assert packed.shape == (-(-37 // width), 3, width) and packed.flags.c_contiguous
    for p in range(packed.shape[0]):
        columns = w[:, p * width:(p + 1) * width]
        assert np.array_equal(packed[p, :, :columns.shape[1]], columns)
        assert not packed[p, :, columns.shape[1]:].any()


@on_the_panels_route
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_on_panels_equal_numpy_for_every_tile_and_remainder(dtype):
    """Rows 1 – 17 take the 8-row tiles and the 4-, 2- and 1-row tiles for the rest; columns a whole number of
    panels or not (the last one narrower); depth 1 and more; assigned and accumulated."""
    rng = np.random.default_rng(3)
    width = panels.width(dtype)
    for m in (1, 2, 3, 5, 7, 8, 13, 16, 17):
        for k in (1, 7, 64):
            for n in (1, width - 1, width, width + 1, 3 * width + 5):
                a, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
                packed = panels.pack(w)
                for accumulate in (False, True):
                    out = rng.standard_normal((m, n)).astype(dtype)
                    expected = a @ w + (out if accumulate else 0)
                    panels.panel_product(a, packed, out, 0, packed.shape[0], accumulate)
                    assert worst(out, expected) <= TOL[dtype], (m, k, n, accumulate)


@on_the_panels_route
def test_a_range_of_panels_writes_its_columns_only_and_reads_strided_rows():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 40)).astype(np.float32)[::2]  # rows with a stride of two rows
    w = rng.standard_normal((20, 100)).astype(np.float32)
    big = np.full((3, 130), np.nan, np.float32)
    out = big[:, :100]  # rows with the stride of a wider array
    panels.panel_product(a[:, :20], panels.pack(w), out, 1, 3, False)
    assert worst(out[:, 32:96], a[:, :20] @ w[:, 32:96]) <= TOL[np.float32]
    assert np.isnan(out[:, :32]).all() and np.isnan(out[:, 96:]).all() and np.isnan(big[:, 100:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_loop_weights_product_runs_on_its_panels_where_the_processor_has_them(dtype):
    if not blas.panels_apply(dtype):
        pytest.skip("no panels here: MKL's backend, or a processor without AVX-512")
    rng = np.random.default_rng(5)
    a, w = rng.standard_normal((16, 256)).astype(dtype), rng.standard_normal((256, 1024)).astype(dtype)
    weight = blas.loop_weight(w)
    assert weight[3].shape == (1024 // panels.width(dtype), 256, panels.width(dtype)) and not weight[2]
    out = np.full((16, 1024), np.nan, dtype)
    blas.matmul_weight(a, weight, out, False)
    assert worst(out, a @ w) <= TOL[dtype]


@on_the_panels_route
@pytest.mark.parametrize("accumulate", [False, True], ids=["assigned", "added"])
@pytest.mark.parametrize(("lo", "hi"), [(0, 128), (128, 256), (96, 160), (48, 112), (224, 250)])
def test_a_team_share_writes_its_columns_only_with_the_bits_of_the_whole_product(lo, hi, accumulate):
    """Shares starting a panel run on the panels (the last may end the matrix in a narrower panel); the others
    through a scratch array of the panels that hold them: either way only the share's columns are written, each with
    the bits the whole product gives it."""
    rng = np.random.default_rng(6)
    a, w = rng.standard_normal((16, 64)).astype(np.float32), rng.standard_normal((64, 250)).astype(np.float32)
    weight = blas.loop_weight(w)
    before = rng.standard_normal((16, 250)).astype(np.float32)
    whole = before.copy()
    blas.matmul_weight(a, weight, whole, accumulate)
    out = before.copy()
    out[:, :lo], out[:, hi:] = np.nan, np.nan
    blas._share_columns(a, weight, out, lo, hi, accumulate, -1)  # -1: the weight has no shares packed for a team
    np.testing.assert_array_equal(out[:, lo:hi], whole[:, lo:hi])
    assert worst(out[:, lo:hi], before[:, lo:hi] * accumulate + a @ w[:, lo:hi]) <= TOL[np.float32]
    assert np.isnan(np.delete(out, np.s_[lo:hi], axis=1)).all()


def test_on_the_panels_route_a_weight_without_its_panels_is_refused_not_left_unwritten():
    if not blas.PANELS:
        pytest.skip("the loop's products are the BLAS's here")
    w = np.ones((4, 8), np.float32)
    without = (w, np.empty(0, np.uint8), False, np.empty((0, 0, 0), np.float32), np.empty((0, 0), np.uint8))
    with pytest.raises(ValueError, match="without its panels"):
        blas.matmul_weight(np.ones((2, 4), np.float32), without, np.empty((2, 8), np.float32), False)
    with pytest.raises(ValueError, match="without its panels"):  # a team's share of it too
        blas._share_columns(np.ones((2, 4), np.float32), without, np.empty((2, 8), np.float32), 0, 4, False, -1)
