"""The compiled transposes of the weights each call lays out (`rnnkit.kernels.layout`): W_hhᵀ and the panels of Wᵀ
straight from W, in blocks transposed in registers, give exactly NumPy's copies — whole blocks, the rows and
columns past them, panel remainders, float32 and float64, every element written — the cells' `transposed` takes
them only with the compiled kernels and for large weights, and a layer whose weights take them computes exactly what
it computes with NumPy's copies."""

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

import rnnkit  # noqa: E402 - after the skip for the kernels
from rnnkit.kernels import ahead, blas, layout, panels, parallel  # noqa: E402, F401 - ahead: see compiled_calls
from rnnkit.recurrent import halves  # noqa: E402
from rnnkit.recurrent.cell import transposed  # noqa: E402

SHAPES = [(1024, 256), (256, 1024), (300, 257), (65, 1009), (1, 70000)]
#: whole blocks only (16 × 16 float32, 8 × 8 float64), and rows, columns or both past them
SMALL_SHAPES = [(16, 16), (8, 8), (32, 48), (37, 11), (8, 3), (1, 5), (17, 33), (15, 16), (16, 15)]


@pytest.fixture
def compiled_for_every_size(monkeypatch):
    """The compiled routes for small matrices too, so that every remainder is reached cheaply."""
    monkeypatch.setattr(layout, "COMPILED_FROM", 1)


@pytest.fixture
def compiled_calls(monkeypatch):
    """The number of calls of each compiled layout kernel, which still run (from Python: `rnnkit.kernels.ahead`'s
    writer calls one from compiled code, bound when that module was imported, at the top of this file)."""
    calls = {"transpose": 0, "panels": 0}

    def counting(name, kernel):
        def run(*args):
            calls[name] += 1
            return kernel(*args)
        return run
    monkeypatch.setattr(layout, "_transpose_blocks", counting("transpose", layout._transpose_blocks))
    monkeypatch.setattr(layout, "fill_panels_compiled", counting("panels", layout.fill_panels_compiled))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_transpose_in_blocks_equals_numpys_copy_bit_for_bit(shape, dtype, compiled_calls):
    w = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = layout.transpose(w)
    assert compiled_calls["transpose"] == 1
    assert out.flags.c_contiguous and out.dtype == dtype
    assert np.array_equal(out, w.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_the_transpose_writes_every_element_of_its_output(shape, dtype):
    w = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    out = np.full(shape[::-1], np.nan, dtype)
    layout._transpose_blocks(w, out)
    assert np.array_equal(out, w.T)


def test_a_block_is_as_wide_as_a_cache_line():
    assert layout.BLOCK_BYTES == 64  # 16 float32 or 8 float64: the shapes above reach whole blocks and remainders


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(37, 3), (64, 5), (65, 130), (63, 5), (33, 2), (64, 32), (48, 17), (40, 16)])
def test_panels_of_a_transposed_view_equal_the_panels_of_its_contiguous_copy(shape, dtype, compiled_for_every_size,
                                                                           compiled_calls):
    w = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    unwritten = lambda panel_shape, panel_dtype: np.full(panel_shape, np.nan, panel_dtype)  # noqa: E731
    from_view = panels.pack(w.T, unwritten)
    assert compiled_calls["panels"] == 1
    assert np.array_equal(from_view, panels.pack(np.ascontiguousarray(w.T)))


def test_panels_of_the_wrong_shape_are_refused():
    w = np.ones((40, 6), np.float32)
    with pytest.raises(ValueError, match="do not hold the transpose"):
        layout.fill_panels_of_transpose(w, np.empty((1, 6, panels.width(np.float32)), np.float32))


@pytest.mark.parametrize("bad", ["dtype", "width", "strided"])
def test_panels_the_blocks_cannot_fill_in_place_are_refused(bad):
    """The blocks write through addresses: panels of another dtype, narrower than a block or not C-contiguous would
    be written out of place."""
    w = np.ones((40, 6), np.float32)
    good = (2, 6, panels.width(np.float32))
    target = {"dtype": np.empty(good, np.float64),
              "width": np.empty((5, 6, 8), np.float32),
              "strided": np.empty((2, 6, 2 * good[2]), np.float32)[:, :, ::2]}[bad]
    with pytest.raises(ValueError, match="C-contiguous float32 panels"):
        layout.fill_panels_of_transpose(w, target)


@pytest.mark.parametrize("matrix", [
    np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32),  # small
    np.random.default_rng(4).standard_normal((600, 600)).astype(np.float32)[::2],  # strided rows
    np.asfortranarray(np.random.default_rng(5).standard_normal((300, 300))),  # its transpose contiguous already
])
def test_small_strided_or_column_major_matrices_keep_numpys_copy(matrix, compiled_calls):
    assert np.array_equal(layout.transpose(matrix), matrix.T)
    assert compiled_calls["transpose"] == 0


def test_cells_transpose_with_numpy_when_numpy_kernels_are_chosen(compiled_calls):
    w = np.random.default_rng(6).standard_normal((512, 256)).astype(np.float32)
    with rnnkit.kernels.using("numpy"):
        assert np.array_equal(transposed(w), w.T)
    assert compiled_calls["transpose"] == 0
    with rnnkit.kernels.using("compiled"):
        assert np.array_equal(transposed(w), w.T)
    assert compiled_calls["transpose"] == 1


def _lstm_call(dtype) -> tuple[np.ndarray, ...]:
    """Output, final state and every gradient of one LSTM training call on pipelines (where the products run on
    panels, `ahead`'s writer fills W_ihᵀ's in its compiled call, and W_hhᵀ's are packed from the view W_hh.T)."""
    layer = rnnkit.LSTM(24, 40, rng=0, dtype=dtype)
    x = np.random.default_rng(7).standard_normal((3, 9, 24)).astype(dtype)
    out, (h, c) = layer(x)
    grads = layer.backward(np.random.default_rng(8).standard_normal(out.shape).astype(dtype))
    dx, dstate = grads if isinstance(grads, tuple) else (grads, ())
    return (out, h, c, dx, *dstate, *(p.grad.copy() for p in layer.parameters()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_layer_computes_the_same_bits_with_the_compiled_layouts_as_with_numpys(dtype, monkeypatch, compiled_calls):
    with rnnkit.kernels.using("compiled"), parallel.using_pipelines("always"), parallel.using_teams("always"), \
            halves.using_halves("never"):
        monkeypatch.setattr(layout, "COMPILED_FROM", 1 << 62)
        numpys = _lstm_call(dtype)
        assert compiled_calls == {"transpose": 0, "panels": 0}
        monkeypatch.setattr(layout, "COMPILED_FROM", 1)
        compiled = _lstm_call(dtype)
    on_panels = blas.panels_apply(dtype)
    packed = blas.packs_weights(dtype)  # panels, or MKL's copy packed from the view W_hh.T
    assert compiled_calls["transpose"] == (0 if packed else 1)  # a contiguous W_hhᵀ only where nothing is packed
    assert compiled_calls["panels"] == (1 if on_panels else 0)  # W_hhᵀ's, straight from W_hh
    for a, b in zip(numpys, compiled, strict=True):
        assert np.array_equal(a, b)


def test_where_only_the_loops_panels_read_w_hh_transposed_it_is_a_view_packed_once_per_mask():
    """On the panels route a whole-sequence call keeps W_hhᵀ as the view W_hh.T and packs its panels from it at
    once; weight drop's masked W_hh gets a view and panels of its own (`GatedCell.transpose_recurrent`)."""
    if not blas.panels_apply(np.float32):
        pytest.skip("the products are not on panels here")
    cell = rnnkit.LSTM(24, 64, rng=0).cells[0]
    with rnnkit.kernels.using("compiled"):
        ws = cell.allocate(5, 16)
    assert ws.transposes_as_views and np.shares_memory(ws.w_hh_t, cell.weight_hh.data)
    assert np.array_equal(ws.w_hh_loop[3], panels.pack(np.ascontiguousarray(cell.weight_hh.data.T)))
    mask = (np.random.default_rng(1).random(cell.weight_hh.data.shape) > 0.5).astype(np.float32)
    cell.use_masks(ws, None, mask)
    assert np.shares_memory(ws.w_hh_t, ws.w_hh) and not np.shares_memory(ws.w_hh, cell.weight_hh.data)
    assert np.array_equal(ws.w_hh_loop[3], panels.pack(np.ascontiguousarray((cell.weight_hh.data * mask).T)))


def test_on_mkl_w_hh_transposed_is_a_view_whose_packed_copy_multiplies_as_numpy_does_once_per_mask(pack_every_weight):
    """On MKL a whole-sequence call keeps W_hhᵀ as the view W_hh.T and packs MKL's copy from it at once (the
    transposed operand: `rnnkit.kernels.mkl.pack`); weight drop's masked W_hh gets a view and a packed copy of its
    own. Each packed copy's product equals NumPy's ``h @ W_hhᵀ``."""
    if blas.BACKEND != "mkl":
        pytest.skip("the loop's products are not MKL's in this process")
    cell = rnnkit.LSTM(24, 64, rng=0, dtype=np.float32).cells[0]
    h = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)
    with rnnkit.kernels.using("compiled"):
        ws = cell.allocate(5, 16)
        assert ws.transposes_as_views and np.shares_memory(ws.w_hh_t, cell.weight_hh.data)
        mask = (np.random.default_rng(1).random(cell.weight_hh.data.shape) > 0.5).astype(np.float32)
        for weight in (cell.weight_hh.data, None):
            if weight is None:
                cell.use_masks(ws, None, mask)
                weight = cell.weight_hh.data * mask
                assert np.shares_memory(ws.w_hh_t, ws.w_hh) and not np.shares_memory(ws.w_hh, cell.weight_hh.data)
            packed = ws.w_hh_loop
            assert packed[1].size > 0 or packed[4].size > 0  # whole, or a team's shares
            out = np.full((16, 256), np.nan, np.float32)
            blas.matmul_weight(h, packed, out, False)
            assert np.abs(out - h @ weight.T).max() <= 1e-5 * np.abs(h @ weight.T).max()
