"""The whole-sequence products a · W on panels (`rnnkit.kernels.whole`), which `rnnkit.recurrent.products.matmul`
sends there with the compiled kernels selected on the panels route: NumPy's product within rounding, assigned and
accumulated, for a transposed weight (X W_ihᵀ) and a weight as stored (δXP W_ih); rows split between two threads
give the bits of one thread; and the products that stay on NumPy's GEMM: a transposed a, a small product, mixed
dtypes, another route, and the NumPy kernels (the oracle)."""

import numpy as np
import pytest
import threadpoolctl

pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

from rnnkit import kernels  # noqa: E402 - after the skip for the kernels
from rnnkit.kernels import backend, blas, parallel, whole  # noqa: E402
from rnnkit.recurrent import products  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-13}
on_the_panels_route = pytest.mark.skipif(not blas.PANELS, reason="the loop's products are not on panels here: MKL's "
                                         "backend, a processor without AVX-512 or RNNKIT_PRODUCTS=blas")


def operands(dtype, rows: int, depth: int, columns: int, transposed: bool, seed: int = 0):
    """a (rows, depth) and W (depth, columns): W as a transposed view of a (columns, depth) weight, or as stored."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    w = rng.standard_normal((columns, depth) if transposed else (depth, columns)).astype(dtype)
    return a, (w.T if transposed else w)


def rounding_bound(a, w, dtype) -> np.ndarray:
    """A sum of products in any order is within (its depth · ε) · |a| @ |W| of the exact one; TOL stands for it."""
    return TOL[dtype] * (np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64))


@on_the_panels_route
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [True, False], ids=["weight-transposed", "weight-as-stored"])
def test_a_product_on_panels_equals_the_exact_product_within_rounding_assigned_and_accumulated(dtype, transposed):
    """1,603 rows: whole blocks, a last block of a few rows, and tiles of 8, 2 and 1 rows; 100 columns: three
    panels and a narrower fourth in float32."""
    a, w = operands(dtype, 1603, 384, 100, transposed)
    assert whole.applies(a, w, None)
    exact = a.astype(np.float64) @ w.astype(np.float64)
    got = whole.product(a, w)
    assert got.dtype == dtype and got.shape == (1603, 100)
    assert np.all(np.abs(got - exact) <= rounding_bound(a, w, dtype))
    start = np.random.default_rng(1).standard_normal((1603, 100)).astype(dtype)
    added = whole.product(a, w, start.copy(), accumulate=True)
    assert np.all(np.abs(added - (start + exact)) <= rounding_bound(a, w, dtype) + TOL[dtype] * np.abs(start))


@on_the_panels_route
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_split_between_two_threads_give_the_bits_of_one_thread(dtype):
    """Each element is one chain of multiply-adds over the whole depth, whichever thread makes its row: a direction
    in a pair (one thread) computes what it computes in turn (two)."""
    a, w = operands(dtype, 1000, 512, 256, transposed=True)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        alone = whole.product(a, w)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if parallel.blas_threads() < 2:
            pytest.skip("two BLAS threads are not allowed here")
        split = whole.product(a, w)
    assert np.array_equal(split, alone)


@on_the_panels_route
def test_below_a_depth_of_384_the_panels_sum_as_openblas_does_to_the_bit():
    """The order OpenBLAS sums in below its depth blocks, as the panels do: a layer whose input is narrower keeps
    the bits of the NumPy product (``docs/performance-history.md``, part 35)."""
    if blas.SOURCE != "numpy":
        pytest.skip("the loop's BLAS is not NumPy's OpenBLAS here")
    a, w = operands(np.float32, 800, 256, 1024, transposed=True)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert np.array_equal(whole.product(a, w), a @ w)


def test_products_that_stay_on_numpys_gemm(monkeypatch):
    """A transposed a (the weight gradients' δXPᵀ), a product below MIN_WORK, mixed dtypes, an ``out`` of another
    dtype, any product off the panels route, and one shallower than DEEP where two BLAS threads are allowed (OpenBLAS
    gives the panels' bits there, and its two threads need no hand-off)."""
    a, w = operands(np.float32, 2000, 256, 1024, transposed=True)
    deep, deep_w = operands(np.float32, 2000, whole.DEEP, 256, transposed=True)
    monkeypatch.setattr(backend, "PRODUCTS", "panels")
    monkeypatch.setattr(parallel, "blas_threads", lambda: 2)
    assert not whole.applies(a, w, None) and whole.applies(deep, deep_w, None)
    monkeypatch.setattr(parallel, "blas_threads", lambda: 1)
    assert whole.applies(a, w, None)
    assert not whole.applies(np.ascontiguousarray(a.T).T, w, None)
    assert not whole.applies(a[:10], w, None)  # 10 · 256 · 1,024 multiply-adds < MIN_WORK
    assert not whole.applies(a, w.astype(np.float64), None)
    assert not whole.applies(a, w, np.empty((2000, 1024), np.float64))
    monkeypatch.setattr(backend, "PRODUCTS", "blas")
    assert not whole.applies(a, w, None)


def test_the_numpy_kernels_keep_numpys_product_as_the_oracle(monkeypatch):
    """`products.matmul` asks for the panels only with the compiled kernels selected."""
    asked = []
    monkeypatch.setattr(whole, "applies", lambda *args: asked.append(args) or False)
    a, w = operands(np.float32, 2000, 256, 1024, transposed=True)
    with kernels.using("numpy"):
        products.matmul(a, w)
    assert not asked
    with kernels.using("compiled"):
        if kernels.active() is None:
            pytest.skip("the compiled kernels are not available here")
        products.matmul(a, w)
    assert len(asked) == 1


@on_the_panels_route
def test_matmul_sends_a_weight_product_to_the_panels_with_the_compiled_kernels(monkeypatch):
    made = []
    product = whole.product
    monkeypatch.setattr(whole, "product", lambda *args: made.append(args) or product(*args))
    a, w = operands(np.float32, 2000, 256, 1024, transposed=True)
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(1, user_api="blas"):
        got = products.matmul(a, w)
    assert len(made) == 1 and np.all(np.abs(got - a @ w) <= rounding_bound(a, w, np.float32))


@on_the_panels_route
def test_a_layer_gives_the_same_bits_as_halves_a_team_or_a_pipeline_at_an_input_deeper_than_openblas_blocks():
    """The whole batch's projection on the panels sums each product as the halves' and the pipeline's writers do, at
    any depth: at input 512 (OpenBLAS sums in blocks of 384 there) the schedule a call takes never changes its
    outputs (with NumPy's GEMM for the team's projection they differed by 6.6e-7)."""
    import rnnkit
    from rnnkit.recurrent import halves

    layer = rnnkit.LSTM(512, 256, rng=0)
    x = np.random.default_rng(1).normal(size=(32, 6, 512)).astype(np.float32)
    outputs = []
    schedules = (("always", "always", "never"), ("never", "always", "never"), ("never", "always", "always"),
                 ("never", "never", "never"))  # (halves, teams, pipelines)
    with kernels.using("compiled"), threadpoolctl.threadpool_limits(2, user_api="blas"):
        for halves_choice, teams_choice, pipelines_choice in schedules:
            with halves.using_halves(halves_choice), parallel.using_teams(teams_choice), \
                    parallel.using_pipelines(pipelines_choice):
                layer.train()
                outputs.append(layer.forward(x)[0])
                layer.discard_saved()
    assert all(np.array_equal(out, outputs[0]) for out in outputs[1:])
