"""The BLAS of the compiled loop (`rnnkit.kernels.blas`): ``RNNKIT_BLAS`` chooses it with one-line errors, and with
MKL (``rnnkit[mkl]``) the recurrent products run on packed weights and the loop still equals the NumPy oracle.

The MKL tests run in a child process with ``RNNKIT_BLAS=mkl`` (the backend is chosen once per process, when the
kernels load); they skip where MKL is not installed. CI also runs the engine's test files under ``RNNKIT_BLAS=mkl``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
from rnnkit.errors import ConfigError, DependencyError  # noqa: E402
from rnnkit.kernels import blas, mkl  # noqa: E402

needs_mkl = pytest.mark.skipif(mkl.library_path() is None, reason="MKL is not installed (pip install 'rnnkit[mkl]')")


def test_an_unknown_rnnkit_blas_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"RNNKIT_BLAS: expected one of openblas, mkl, got 'atlas'"):
        blas.choose_backend("atlas")


def test_rnnkit_blas_mkl_without_mkl_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(mkl, "library", lambda: None)
    with pytest.raises(DependencyError, match=r"pip install 'rnnkit\[mkl\]'"):
        blas.choose_backend("mkl")


def test_rnnkit_blas_openblas_is_numpys_blas_whatever_is_installed():
    assert blas.choose_backend("openblas") == "openblas"
    assert blas.choose_backend(" OpenBLAS ") == "openblas"


def test_unset_rnnkit_blas_takes_mkl_only_where_it_is_installed_on_an_intel_processor(monkeypatch):
    monkeypatch.setattr(mkl, "library_path", lambda: None)
    assert blas.choose_backend("") == "openblas"
    monkeypatch.setattr(mkl, "library_path", lambda: "libmkl_rt.so")
    monkeypatch.setattr(mkl, "library", lambda: object())
    monkeypatch.setattr(mkl, "intel_cpu", lambda: False)
    assert blas.choose_backend("") == "openblas"
    monkeypatch.setattr(mkl, "intel_cpu", lambda: True)
    assert blas.choose_backend("") == "mkl"


def test_the_products_route_is_panels_on_openblas_with_avx512_unless_rnnkit_products_says_otherwise():
    from rnnkit.kernels import backend

    assert backend.products_route("openblas", "") == ("panels" if backend.avx512() else "blas")
    assert backend.products_route("mkl", "") == "blas"
    assert backend.products_route("openblas", " BLAS ") == "blas"
    assert backend.products_route("openblas", "panels") == "panels"
    with pytest.raises(ConfigError, match="RNNKIT_PRODUCTS: expected one of panels, blas, got 'gpu'"):
        backend.products_route("openblas", "gpu")
    with pytest.raises(ConfigError, match="expected the OpenBLAS backend, got RNNKIT_BLAS=mkl"):
        backend.products_route("mkl", "panels")


def test_rnnkit_pack_is_auto_unless_it_says_all():
    from rnnkit.kernels import backend

    assert backend.pack_setting("") == "auto" and backend.pack_setting(" ALL ") == "all"
    with pytest.raises(ConfigError, match="RNNKIT_PACK: expected one of auto, all, got 'some'"):
        backend.pack_setting("some")


@pytest.mark.skipif(blas.BACKEND != "mkl", reason="the loop's products are not MKL's in this process")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_with_mkl_a_weight_of_at_most_unpacked_up_to_elements_is_multiplied_as_it_is_unless_every_one_is_packed(
        dtype, monkeypatch):
    """An LSTM's W_hhᵀ at H = 64 (16,384 elements) is used as it is, its view W_hh.T included, and its products
    still equal NumPy's; one more column is packed; with ``RNNKIT_PACK=all`` (`blas.PACK`) the smaller one is too."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 64)).astype(dtype)
    small, large = (rng.standard_normal((columns, 64)).astype(dtype).T for columns in (256, 257))
    assert small.size == blas.UNPACKED_UP_TO
    for setting, packed in (("auto", (False, True)), ("all", (True, True))):
        monkeypatch.setattr(blas, "PACK", setting)
        for matrix, expect in zip((small, large), packed):
            weight = blas.loop_weight(matrix)
            assert (weight[1].size > 0) is expect, (setting, matrix.shape)
            out = np.full((3, matrix.shape[1]), np.nan, dtype)
            blas.matmul_weight(a, weight, out, False)
            tol = (1e-5 if dtype == np.float32 else 1e-13) * np.abs(a @ matrix).max()
            assert np.abs(out - a @ matrix).max() <= tol


def test_without_mkl_a_loop_weight_is_the_matrix_itself_with_its_panels_where_the_processor_runs_them():
    if blas.BACKEND == "mkl":
        pytest.skip("this process runs the MKL backend")
    w = np.ones((3, 4), np.float32)
    matrix, packed, small, panels, shares = blas.loop_weight(w, team_blocks=1)
    assert matrix is w and packed.size == 0 and shares.size == 0  # shares are MKL's alone
    if blas.panels_apply(w.dtype):
        assert not small and np.array_equal(panels[0, :, :4], w) and panels.shape == (1, 3, 32)
    else:
        assert small == blas.small_kernels(np.float32) and panels.size == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 64, 256), (16, 256, 1024), (16, 256, 300), (16, 200, 333), (17, 256, 1024),
                                     (16, 1024, 256)])
def test_a_product_in_column_blocks_equals_numpy_for_every_shape_in_and_out_of_the_blocks_range(m, k, n, dtype):
    """The loop's skinny products on OpenBLAS's small-matrix kernels run in blocks of columns (the last one
    narrower): the same product as NumPy's, accumulated or not, for shapes inside and outside the blocks' range
    (`blas.SMALL_ROWS`, `SMALL_DEPTH`, `SMALL_MNK`). Forced on here, so it runs on every processor and dtype where
    the products are the BLAS's (with panels, `rnnkit.kernels.panels`, the other routes are not compiled in)."""
    if blas.PANELS:
        pytest.skip("the loop's products run on panels here (tests/test_panels.py)")
    rng = np.random.default_rng(m + k + n)
    a, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    blocks = (w, np.empty(0, np.uint8), True, np.empty((0, 0, 0), dtype), np.empty((0, 0), np.uint8))  # BLAS blocks
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for accumulate in (False, True):
        out = rng.standard_normal((m, n)).astype(dtype)
        expected = a @ w + (out if accumulate else 0)
        blas.matmul_weight(a, blocks, out, accumulate)
        assert np.abs(out - expected).max() <= tol * np.abs(expected).max(), accumulate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 64, 256), (16, 256, 1024), (5, 7, 1), (3, 1, 9), (16, 48, 40)])
def test_a_product_by_the_transposed_view_of_a_weight_equals_numpy_whole_and_in_column_blocks(m, k, n, dtype):
    """`matmul_into` reads b = W.T (unit stride down its columns) as stored, with BLAS's 'T' flag: what a team's
    share of W_hhᵀ takes where the loop's panels come straight from W_hh and the share is not whole panels."""
    rng = np.random.default_rng(m * k + n)
    a, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((n, k)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for lo, hi in ((0, n), (0, (n + 1) // 2), ((n + 1) // 2, n)):
        for accumulate in (False, True):
            out = rng.standard_normal((m, n)).astype(dtype)
            expected = out.copy()
            expected[:, lo:hi] = a @ w.T[:, lo:hi] + (out[:, lo:hi] if accumulate else 0)
            blas.matmul_into(a, w.T[:, lo:hi], out[:, lo:hi], accumulate)
            assert np.abs(out - expected).max() <= tol * np.abs(expected).max(), (lo, hi, accumulate)


def test_the_product_compiles_once_whatever_the_layouts_of_its_arrays():
    """numba compiles a function once per combination of its arguments' layouts (C, F for a transposed view, A for
    any strides); `matmul_into` hands its arrays to the compiled product typed "A" (`rnnkit.kernels.jit.any_layout`),
    so one compiled copy serves every combination, each with the right numbers."""
    rng = np.random.default_rng(7)
    a_c, b_c = rng.standard_normal((5, 6)), rng.standard_normal((6, 4))
    a_f, b_f = np.ascontiguousarray(a_c.T).T, np.ascontiguousarray(b_c.T).T
    wide = rng.standard_normal((5, 9))
    for a in (a_c, a_f, wide[:, 1:7]):
        for b in (b_c, b_f):
            for out in (np.empty((5, 4)), np.empty((5, 8))[:, 2:6]):
                blas.matmul_into(a, b, out, False)
                assert np.abs(out - a @ b).max() <= 1e-13, (a.flags.f_contiguous, b.flags.f_contiguous)
    for signature in blas._matmul_into.signatures:
        assert [kind.layout for kind in signature[:3]] == ["A", "A", "A"], signature


def test_any_layout_types_an_array_as_any_strides_and_keeps_it_alive():
    """`any_layout` changes only the type: the same memory, and a reference of its own (an array made inside a
    compiled function and returned through it stays valid after the function's other references are gone)."""
    from numba import njit, types

    from rnnkit.kernels.jit import any_layout

    @njit
    def fresh_through_any_layout(n):
        return any_layout(np.arange(n * 2.0).reshape(n, 2).T)

    @njit
    def same_memory(x):
        any_layout(x)[0, 0] = -1.0

    out = fresh_through_any_layout(3)
    assert np.array_equal(out, np.arange(6.0).reshape(3, 2).T)
    assert fresh_through_any_layout.nopython_signatures[0].return_type == types.Array(types.float64, 2, "A")
    x = np.zeros((2, 2))
    same_memory(x)
    assert x[0, 0] == -1.0


def test_a_product_by_a_b_strided_along_both_axes_is_refused_not_computed_wrong():
    a, w = np.ones((3, 4), np.float32), np.ones((4, 10), np.float32)
    with pytest.raises(ValueError, match="unit stride"):
        blas.matmul_into(a, w[:, ::2], np.empty((3, 5), np.float32), False)


CHILD = r"""
import numpy as np, rnnkit
from rnnkit import kernels
from rnnkit.kernels import blas
assert blas.BACKEND == "mkl" and blas.SOURCE == "mkl" and blas.PACK == "all", (blas.BACKEND, blas.SOURCE, blas.PACK)
rng = np.random.default_rng(0)
for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-13)):
    for m, k, n in ((1, 3, 5), (7, 16, 64), (33, 40, 24)):
        a, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        weight = blas.loop_weight(w)
        assert weight[1].size > 0, "not packed"
        out = rng.standard_normal((m, n)).astype(dtype)
        expected = out + a @ w
        blas.matmul_weight(a, weight, out, True)
        assert np.abs(out - expected).max() <= tol * np.abs(expected).max(), (dtype, m, k, n)
        blas.matmul_weight(a[: m // 2], weight, out[: m // 2], False)  # fewer rows than packed for: a ragged step
        assert np.abs(out[: m // 2] - a[: m // 2] @ w).max(initial=0) <= tol * np.abs(expected).max()
def run(layer, x, lengths):
    layer.zero_grad()
    y, _ = layer.forward(x, None, lengths=lengths)
    dx, _ = layer.backward(np.cos(y))
    return [y, dx] + [p.grad.copy() for p in layer.parameters()]
for cls, options in ((rnnkit.RNN, {}), (rnnkit.LSTM, {"proj_size": 3, "peephole": True}), (rnnkit.GRU, {}),
                     (rnnkit.GRU, {"reset_after": False}), (rnnkit.RHN, {"depth": 3, "coupled": False}),
                     (rnnkit.Jordan, {"output_size": 3, "output_activation": "softmax"}),
                     (rnnkit.MogrifierLSTM, {"rounds": 3, "rank": 2}), (rnnkit.MogrifierLSTM, {"rounds": 1})):
    layer = cls(5, 6, num_layers=2, bidirectional=True, dtype=np.float64, rng=1, **options)
    x, lengths = rng.standard_normal((4, 7, 5)), np.array([7, 5, 5, 2])
    with kernels.using("numpy"):
        expected = run(layer, x, lengths)
    with kernels.using("compiled"):
        got = run(layer, x, lengths)
    worst = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    assert worst < 1e-12, (cls.__name__, options, worst)
print("ok")
"""


@needs_mkl
def test_with_mkl_packed_products_and_the_compiled_loops_of_the_cells_with_matrices_equal_numpy():
    """Packed products equal NumPy's ``@`` (float32 and float64, accumulating, fewer rows than packed for), and
    RNN, LSTM (peepholes, projection), GRU (both resets), RHN (a packed weight per micro-cell), Jordan and the
    Mogrifier (stacks of packed round matrices, low rank, and an empty stack) loops on MKL equal the NumPy oracle:
    stacked, bidirectional, ragged, every gradient."""
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "RNNKIT_BLAS": "mkl", "RNNKIT_PACK": "all"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@needs_mkl
def test_rnnkit_info_names_mkl_as_the_compiled_loops_blas_when_chosen():
    result = subprocess.run([sys.executable, "-m", "rnnkit", "info"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "RNNKIT_BLAS": "mkl"})
    assert result.returncode == 0, result.stderr
    assert "(the compiled loop's gemm, packed weights; the layers' whole-sequence products)" in result.stdout


@pytest.mark.skipif(blas.BACKEND != "mkl", reason="the loop's products are not MKL's in this process")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("blocks", "hidden"), [(4, 256), (3, 48), (1, 40), (4, 20), (2, 16)])
def test_with_mkl_a_team_weight_packs_each_parts_columns_and_every_product_from_them_equals_numpy(blocks, hidden,
                                                                                                 dtype,
                                                                                                 pack_every_weight):
    """``loop_weight(W, blocks)`` holds no whole packed copy but each part's units of every block packed on their
    own (16-unit multiples: 16 and 4 units at H = 20, 16 and none at H = 16); each part's products in a
    team and the whole product from the shares (a team whose parts ran one after the other) equal NumPy's, and a
    weight packed for another number of blocks is refused."""
    from rnnkit.kernels.jit import njit

    @njit(cache=False)
    def part_product(a, weight, out, blocks, part):
        if blocks == 1:
            blas.matmul_columns(a, weight, out, (part, 2), False)
        else:
            blas.matmul_gate_units(a, weight, out, blocks, (part, 2))

    rng = np.random.default_rng(blocks * hidden)
    a, w = rng.standard_normal((9, 37)).astype(dtype), rng.standard_normal((37, blocks * hidden)).astype(dtype)
    weight = blas.loop_weight(w, blocks)
    assert weight[1].size == 0 and weight[4].shape[0] == 2 * blocks
    expected, tol = a @ w, (1e-5 if dtype == np.float32 else 1e-13) * np.abs(a @ w).max()
    whole = rng.standard_normal(expected.shape).astype(dtype)
    blas.matmul_weight(a, weight, whole, False)
    parts = np.full_like(expected, np.nan)
    for part in (0, 1):
        part_product(a, weight, parts, blocks, part)
    assert np.abs(whole - expected).max() <= tol and np.abs(parts - expected).max() <= tol
    with pytest.raises(ValueError, match="another number of blocks"):
        part_product(a, weight, parts, 2 if blocks == 1 else 1, 0)


@pytest.mark.skipif(blas.BACKEND != "mkl", reason="the loop's products are not MKL's in this process")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("blocks", "rows", "depth", "hidden"), [(0, 16, 256, 256), (0, 3, 37, 11), (4, 16, 64, 64),
                                                                 (4, 9, 37, 20), (1, 5, 40, 40)])
def test_with_mkl_a_transposed_view_is_packed_as_it_is_and_its_products_equal_those_of_its_contiguous_copy(
        blocks, rows, depth, hidden, dtype, pack_every_weight):
    """W.T of a C-contiguous W (unit stride in its columns: what a loop multiplies by, W_hhᵀ and W_ihᵀ) is packed
    by MKL as the transposed operand, whole or as a team's shares, without a contiguous copy of Wᵀ: every product
    equals the one from the copy's packing and NumPy's ``a @ W.T``."""
    rng = np.random.default_rng(rows * depth)
    w = rng.standard_normal((max(blocks, 1) * hidden, depth)).astype(dtype)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    view, copy = w.T, np.ascontiguousarray(w.T)
    products = []
    for matrix in (view, copy):
        weight = blas.loop_weight(matrix, blocks)
        assert (weight[4] if blocks else weight[1]).size > 0  # packed, the view as well as the copy
        out = np.full((rows, w.shape[0]), np.nan, dtype)
        blas.matmul_weight(a, weight, out, False)
        products.append(out)
    tol = (1e-5 if dtype == np.float32 else 1e-13) * np.abs(a @ w.T).max()
    assert np.array_equal(products[0], products[1]) and np.abs(products[0] - a @ w.T).max() <= tol


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mkl_packs_a_weight_below_the_threshold_on_one_thread_and_a_larger_one_on_the_callers_count(monkeypatch,
                                                                                                   dtype):
    """A small weight is packed on one MKL thread (on two it waited for the second thread to wake: 60 against 15 µs
    at 64 × 256); from `mkl.ONE_THREAD_PACKS_BELOW` bytes on, on the calling thread's count; the products from
    either packing equal NumPy's within rounding: relative to |a| @ |W|, the bound of a sum's rounding in any order
    (the middle row of ``a`` sums to zero, so its products cancel, and MKL's AVX2 kernels on an AMD processor sum in
    another order than NumPy's OpenBLAS: 1.3% apart relative to the products themselves)."""
    counts = []
    real = mkl.local_threads
    monkeypatch.setattr(mkl, "local_threads", lambda count: counts.append(count) or real(count))
    items = mkl.ONE_THREAD_PACKS_BELOW // np.dtype(dtype).itemsize
    small = np.arange(items - 8, dtype=dtype).reshape(-1, 8) / items
    large = np.arange(items, dtype=dtype).reshape(-1, 8) / items
    a = np.linspace(-1, 1, 3 * 8, dtype=dtype).reshape(3, 8)
    for matrix, expected in ((small.T, [1]), (large.T, [])):
        counts.clear()
        packed = mkl.pack(matrix)
        assert counts == expected
        if blas.BACKEND == "mkl":  # the loop's products read MKL's packed copies in this process
            weight = (matrix, packed, False, np.empty((0, 0, 0), dtype), np.empty((0, 0), np.uint8))
            out = np.empty((3, matrix.shape[1]), dtype)
            blas.matmul_weight(a, weight, out, False)
            bound = (1e-5 if dtype == np.float32 else 1e-12) * (np.abs(a) @ np.abs(matrix))
            assert (np.abs(out - a @ matrix) <= bound).all()
