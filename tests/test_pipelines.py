"""A forward loop with its input projection written ahead of it on the other core (`rnnkit.kernels.ahead`,
`rnnkit.kernels.parallel.Pipeline`). Forced on for every shape here (``use_pipelines("always")``, teams on): the
outputs and every gradient equal the NumPy per-step oracle — ragged, reversed, with an initial state, under
recurrent dropout, weight drop and zoneout, float32 and float64 — only the cells that name their projection (one
GEMM, or its layer norm) run one, the loop never waits for ever, and the policy takes the shapes it should."""

import threading

import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit.recurrent import catalog, halves

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
from rnnkit.kernels import ahead as ahead_kernels  # noqa: E402 - needs numba
from rnnkit.kernels import parallel  # noqa: E402
from rnnkit.kernels import team as team_kernels  # noqa: E402
from test_sequence_loop import (  # noqa: E402
    TOL,
    initial_state,
    oracle_of,
    outputs_and_grads,
    relative_error,
    same_masks_every_call,
)
from test_teams import TEAM_CELLS  # noqa: E402

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
#: every cell whose loop splits in a team names its projection (one GEMM, or its layer norm) but the Mogrifier, whose
#: projection depends on the state: it runs inside the loop, and nothing can be written ahead of it
PIPELINE_CELLS = sorted(name for name in TEAM_CELLS if name != "mogrifier")


@pytest.fixture
def pipelines(monkeypatch):
    """Pipelines and teams forced on, the two directions of a layer in turn; the list of the calls of
    `rnnkit.kernels.ahead.Ahead.write` as (batch, reverse, whether it ran on the worker thread, beside the loop)."""
    written = []
    original = ahead_kernels.Ahead.write

    def counted(self, sync):
        written.append((self.batch, self.reverse, threading.current_thread() is not threading.main_thread()))
        return original(self, sync)

    monkeypatch.setattr(ahead_kernels.Ahead, "write", counted)
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "always")
    monkeypatch.setattr(parallel.PAIRS, "choice", "never")
    monkeypatch.setattr(halves.HALVES, "choice", "never")  # else halves take a narrow-input team's place
    if parallel.blas_threads() < 2:
        pytest.skip("one BLAS thread allowed: the projection is written before the loop, in the caller")
    return written


def oracle_and_pipeline(run, name="", dtype=np.float64):
    """``run()`` on the oracle (`test_sequence_loop.oracle_of`: NumPy, or for the layer-normalised cells in float32
    their kernels stepped by the Python loop), then with pipelines; the worst relative difference."""
    with oracle_of(name, dtype) or kernels.using("numpy"):
        expected = run()
    with kernels.using("compiled"):
        got = run()
    return max(relative_error(g, e) for g, e in zip(got, expected))


@DTYPES
@pytest.mark.parametrize("name", PIPELINE_CELLS)
def test_a_pipeline_equals_the_numpy_oracle_ragged_reversed_with_an_initial_state(name, dtype, pipelines):
    """40 steps of 6 rows: chunks of 3 steps (`ahead.CHUNK_ROWS` = 16 rows; the last of 1), so the loop waits for the
    writer's later ones."""
    cls, options, _ = TEAM_CELLS[name]
    layer = cls(5, 64, bidirectional=True, dtype=dtype, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40, 5)).astype(dtype)
    lengths, state0 = np.array([40, 13, 25, 1, 40, 37]), initial_state(layer, 6, rng, dtype)
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x, lengths, state0), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the pipeline differs from NumPy by {worst:.2e}"
    assert pipelines == [(6, False, True), (6, True, True)]  # each direction in its order of steps, on both cores


@DTYPES
@pytest.mark.parametrize("name", PIPELINE_CELLS)
def test_a_pipeline_equals_the_numpy_oracle_under_recurrent_dropout_weight_drop_and_zoneout(name, dtype, pipelines):
    cls, options, rates = TEAM_CELLS[name]
    layer = same_masks_every_call(cls(4, 64, dtype=dtype, rng=0, **options).regularize(**rates))
    x, lengths = np.random.default_rng(2).normal(size=(5, 30, 4)).astype(dtype), np.array([30, 30, 2, 16, 3])
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x, lengths), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the pipeline differs from NumPy by {worst:.2e}"
    assert pipelines == [(5, False, True)]


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.LayerNormGRU])
@pytest.mark.parametrize("batch", [1, 3, 16, 64, 65])
def test_the_projection_written_ahead_in_chunks_is_the_cells_projection(batch, cls, pipelines):
    """Chunks of one step (B ≥ 16), of several (B < 16: 6 and 1 at B = 3; all 7 steps in one at B = 1), in either
    order, from a time-major input or a batch-first one (its rows copied time-major chunk by chunk); the product, then
    the layer norm and the bias, as `project` does; X̂ and s for the backward. float64: on every route of the
    products (panels, OpenBLAS, MKL's packed weights) equal to rounding."""
    cell = cls(24, 64, rng=0, dtype=np.float64).cells[0]
    for p in cell.parameters():
        p.data[...] = np.random.default_rng(7).normal(size=p.data.shape)
    x = np.random.default_rng(4).normal(size=(7, batch, 24))
    batch_first = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)  # (T, B, I), a transposed view
    for reverse, given in ((False, x), (True, x), (False, batch_first), (True, batch_first)):
        ws, expected_ws = cell.allocate(7, batch), cell.allocate(7, batch)
        projection = cell.ahead_projection(given, batch, reverse)  # time-major, or a transposed batch-first input
        projection.write(team_kernels.new_sync(projected=False))
        projection.leave_in(ws)
        assert np.array_equal(projection.x, x)  # laid out time-major by the writer where it was batch-first
        with kernels.using("compiled"):
            expected = cell.project(x.reshape(7 * batch, 24), expected_ws)
        np.testing.assert_allclose(projection.out, expected, rtol=1e-12, atol=1e-12)
        for name in ("x_hat", "x_inv_std"):
            if hasattr(expected_ws, name):
                np.testing.assert_allclose(getattr(ws, name), getattr(expected_ws, name), rtol=1e-12, atol=1e-12)


def test_a_cell_that_names_its_projection_terms_projects_exactly_with_them():
    """`projection_terms` is what the pipeline writes in place of `project`: where a cell of the catalogue names
    them (every variant, random parameters), its `project` must be that GEMM, or its layer norm, and nothing more
    (the Mogrifier, whose projection comes after its rounds, says None)."""
    cells = [entry.layer(6, 32, rng=0, **options).cells[0]
             for entry in catalog.entries() for options in entry.variants.values()]
    x = np.random.default_rng(5).normal(size=(7, 6)).astype(np.float32)
    named = []
    for cell in cells:
        for p in cell.parameters():
            p.data[...] = np.random.default_rng(6).normal(size=p.data.shape)
        terms = cell.projection_terms()
        if terms is not None:
            weight, bias, norm = terms
            expected = x @ weight.T
            if norm is not None:
                mean, variance = expected.mean(axis=1, keepdims=True), expected.var(axis=1, keepdims=True)
                expected = (expected - mean) / np.sqrt(variance + 1e-5) * norm[0] + norm[1]
            expected = expected + (0 if bias is None else bias)
            np.testing.assert_allclose(cell.project(x), expected, rtol=1e-4, atol=1e-4)
            named.append(type(cell).__name__)
    assert {"LSTMStep", "GRUStep", "RNNStep", "LayerNormLSTMStep", "LayerNormGRUStep"} <= set(named)
    assert "MogrifierStep" not in named


@pytest.mark.parametrize(("cls", "options"), [(rnnkit.MogrifierLSTM, {}), (rnnkit.LSTM, {"proj_size": 16}),
                                              (rnnkit.IndRNN, {}), (rnnkit.RHN, {})])
def test_cells_whose_projection_comes_later_or_whose_loop_does_not_split_run_no_pipeline(
        cls, options, pipelines):
    layer = cls(4, 64, rng=0, **options)
    y, _ = layer.forward(np.ones((2, 3, 4), np.float32))
    layer.backward(np.ones_like(y))
    assert pipelines == []


def test_inside_a_pair_of_directions_each_direction_projects_first_with_one_gemm(pipelines, monkeypatch):
    """The two directions at once hold both cores: no pipeline (`parallel.cores_free`), the projection's GEMM."""
    monkeypatch.setattr(parallel.PAIRS, "choice", "always")
    layer = rnnkit.GRU(4, 64, bidirectional=True, dtype=np.float64, rng=0)
    x = np.random.default_rng(6).normal(size=(3, 5, 4))
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x))
    assert worst <= TOL[np.float64] and pipelines == []


def test_with_the_cores_busy_a_pipeline_writes_the_projection_then_runs_the_loop_in_the_caller(pipelines):
    order = []
    parallel._busy.acquire()
    try:
        with parallel.Pipeline(lambda sync: order.append("write")) as pipeline:
            pipeline.run(lambda team: order.append(("loop", team[1])))
    finally:
        parallel._busy.release()
    assert order == ["write", ("loop", 1)]


def test_a_failed_writer_releases_the_loop_from_its_wait_and_the_error_is_raised(pipelines):
    def loop(team):
        team_kernels.wait_ready(team, 0)  # would wait for the writer for ever without the abort flag

    def write(sync):
        raise RuntimeError("the writer failed")

    before = parallel.blas_threads()
    with pytest.raises(RuntimeError, match="the writer failed"):
        with parallel.Pipeline(write) as pipeline:
            pipeline.run(loop)
    assert parallel.cores_free() and parallel.blas_threads() == before


def test_an_error_before_the_loop_stops_the_started_writer_frees_the_cores_and_is_raised(pipelines):
    """The writer starts when the pipeline is entered; where the caller's work before its loop fails, leaving
    sets the abort flag — the writer, waiting here for a step that never comes, returns — and frees the cores."""
    writer_returned = threading.Event()

    def write(sync):
        team_kernels.wait_ready((0, 1, sync), 0)  # no step is ever announced: only the abort flag ends this
        writer_returned.set()

    before = parallel.blas_threads()
    with pytest.raises(RuntimeError, match="before the loop"):
        with parallel.Pipeline(write):
            raise RuntimeError("the workspace failed before the loop")
    assert writer_returned.is_set() and parallel.cores_free() and parallel.blas_threads() == before


def test_each_side_of_a_pipeline_makes_its_mkl_products_on_one_thread_of_its_own(pipelines, monkeypatch):
    """With the MKL backend, the writer and the loop each set MKL's thread count for their own thread
    (`rnnkit.kernels.mkl.local_threads`): MKL's global limit did not keep two threads' products apart."""
    from contextlib import contextmanager

    counts = []

    @contextmanager
    def recorded(count):
        counts.append((threading.current_thread() is threading.main_thread(), count))
        yield

    monkeypatch.setattr("rnnkit.kernels.backend.BACKEND", "mkl")
    monkeypatch.setattr("rnnkit.kernels.mkl.local_threads", recorded)
    half = parallel.blas_threads() // 2
    with parallel.Pipeline(lambda sync: team_kernels.add_ready(sync, 1)) as pipeline:
        pipeline.run(lambda team: team_kernels.wait_ready(team, 0))
    assert sorted(counts) == [(False, half), (True, half)]


@pytest.mark.parametrize(("pipelines_choice", "bidirectional", "shares"), [
    ("always", False, False), ("never", True, False), ("never", False, True)], ids=["pipeline", "pair", "team"])
def test_a_loop_alone_on_one_core_multiplies_by_its_whole_weight_and_a_teams_by_shares(
        pipelines_choice, bidirectional, shares, pipelines, monkeypatch):
    """A forward loop beside its writer, or beside the other direction of a pair, runs alone on its core: W_hhᵀ
    packed whole (``team_blocks`` 0), not as the 4 gate blocks' shares a team's two parts take
    (`rnnkit.recurrent.compiled_loop.CompiledSequenceLoop.team_shares`)."""
    from rnnkit.kernels import blas

    packed, original = [], blas.loop_weight

    def recorded(matrix, team_blocks=0):
        packed.append(team_blocks)
        return original(matrix, team_blocks)

    monkeypatch.setattr(blas, "loop_weight", recorded)
    monkeypatch.setattr(parallel.PIPELINES, "choice", pipelines_choice)
    monkeypatch.setattr(parallel.PAIRS, "choice", "always" if bidirectional else "never")
    layer = rnnkit.LSTM(64, 64, dtype=np.float32, rng=0, bidirectional=bidirectional)
    with rnnkit.no_grad():
        layer(np.ones((5, 16, 64), np.float32))
    assert packed and (4 in packed) is shares


def test_a_started_writer_runs_beside_the_work_before_the_loop(pipelines):
    """Entering the pipeline puts the writer on the worker thread at once: it runs while the caller is still
    before its loop."""
    started = threading.Event()

    def write(sync):
        started.set()
        team_kernels.add_ready(sync, 1)

    before, during = parallel.blas_threads(), []
    with parallel.Pipeline(write) as pipeline:
        assert started.wait(10)  # before run: the caller's work before its loop
        during.append(parallel.blas_threads())
        pipeline.run(lambda team: team_kernels.wait_ready(team, 0))
    assert during == [before // 2]  # one BLAS thread each meanwhile, every one back afterwards
    assert parallel.cores_free() and parallel.blas_threads() == before


@DTYPES
def test_a_lone_directions_batch_first_input_laid_out_by_the_writer_equals_the_oracle(dtype, pipelines):
    """Not ragged, no noise: the layer hands its runner the transposed view of the caller's batch-first input, and
    the writer copies it time-major chunk by chunk; outputs and every gradient equal the NumPy oracle, and the trace
    keeps a C-contiguous time-major input for the weight sums."""
    layer = rnnkit.LSTM(12, 64, rng=3, dtype=dtype)
    x = np.random.default_rng(9).normal(size=(5, 7, 12)).astype(dtype)
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x), "lstm", dtype)
    assert worst <= TOL[dtype] and pipelines and all(on_worker for _, _, on_worker in pipelines)
    assert_the_trace_keeps_the_input_time_major(layer, x)


def test_without_a_pipeline_the_runner_lays_the_batch_first_view_out_itself(monkeypatch):
    monkeypatch.setattr(parallel.PIPELINES, "choice", "never")
    layer = rnnkit.LSTM(12, 64, rng=3)
    assert_the_trace_keeps_the_input_time_major(layer, np.random.default_rng(9).normal(size=(5, 7, 12)).astype(
        np.float32))


def assert_the_trace_keeps_the_input_time_major(layer, x):
    """One compiled forward of ``layer`` over the batch-first ``x``: its trace holds x C-contiguous, time-major."""
    with kernels.using("compiled"):
        layer(x)
    trace = layer._last.traces[0][0]
    assert trace.x.flags.c_contiguous and np.array_equal(trace.x, x.transpose(1, 0, 2))


def test_the_loop_waits_for_each_step_until_the_writer_announces_it():
    sync = team_kernels.new_sync(projected=False)
    team_kernels.add_ready(sync, 3)
    team_kernels.wait_ready((0, 1, sync), 2)  # steps 0, 1, 2 are ready: returns at once
    waiter = threading.Thread(target=team_kernels.wait_ready, args=((0, 1, sync), 3), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # step 3 is not announced yet
    team_kernels.add_ready(sync, 1)
    waiter.join(10)
    assert not waiter.is_alive() and sync[team_kernels.READY] == 4
    assert team_kernels.new_sync(projected=True)[team_kernels.READY] == np.iinfo(np.int64).max


@pytest.mark.parametrize(("dtype", "parts", "route", "inputs", "expected"), [
    (np.float32, 2, "panels", 256, True), (np.float32, 2, "panels", 192, True), (np.float32, 2, "panels", 191, False),
    (np.float32, 2, "panels", 64, False), (np.float32, 2, "panels", 512, False), (np.float32, 2, "panels", 257, False),
    (np.float32, 1, "panels", 256, False), (np.float64, 2, "panels", 256, False), (np.float32, 2, "mkl", 256, True),
    (np.float32, 2, "mkl", 192, True), (np.float32, 2, "mkl", 191, False), (np.float32, 2, "mkl", 257, False),
    (np.float64, 2, "mkl", 256, False), (np.float32, 2, "blas", 256, False)])
def test_the_automatic_policy_pipelines_float32_teams_on_packed_weights_whose_input_is_3_4_to_1_times_the_state(
        dtype, parts, route, inputs, expected, monkeypatch):
    monkeypatch.setattr(parallel.PIPELINES, "choice", "auto")
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: route == "panels")
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: route == "mkl")
    monkeypatch.setattr("rnnkit.kernels.distance.cores_near", lambda: True)  # near: far is tests/test_distance.py
    assert parallel.pipeline_pays(dtype, parts, inputs, 256) is expected


def test_never_turns_pipelines_off_and_always_takes_every_team(monkeypatch):
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: False)
    with parallel.using_pipelines("never"):
        assert not parallel.pipeline_pays(np.float32, 2, 16, 256)
    with parallel.using_pipelines("always"):
        assert parallel.pipeline_pays(np.float64, 2, 1024, 256) and not parallel.pipeline_pays(np.float64, 1, 16, 256)


def test_a_cell_with_a_projection_of_its_own_names_no_terms_unless_it_says_what_they_are():
    from rnnkit.recurrent.lstm import LSTMStep

    class Scaled(LSTMStep):
        def project(self, x, ws=None):
            return 2 * super().project(x, ws)

    assert Scaled(3, 8).projection_terms() is None and LSTMStep(3, 8).projection_terms() is not None


def _memory_owner(array):
    """The object that holds ``array``'s memory: an mmap for `rnnkit.kernels.panels.unpooled`, else None (malloc)."""
    owner = array
    while isinstance(owner, (np.ndarray, memoryview)):
        owner = owner.obj if isinstance(owner, memoryview) else owner.base
    return owner


def test_unpooled_panels_live_in_pages_of_their_own_and_equal_the_loops_packing():
    """Out of malloc's kept heap (`rnnkit.kernels.panels.unpooled`, where a writer's panels of 2 MiB or more go), so
    they add nothing to a call's high-water mark once written; the same panels as `pack` makes."""
    import mmap

    from rnnkit.kernels import blas, panels

    if not blas.panels_apply(np.float32):
        pytest.skip("the products are not on panels here")
    weight = np.random.default_rng(8).normal(size=(96, 40)).astype(np.float32)
    packed = panels.pack(weight.T, panels.unpooled)
    assert isinstance(_memory_owner(packed), mmap.mmap)
    np.testing.assert_array_equal(packed, panels.pack(np.ascontiguousarray(weight.T)))
    assert packed.flags.writeable


def test_a_writers_panels_take_pages_of_their_own_from_2_mib_on_before_a_backward_and_the_kept_heap_else():
    """`rnnkit.kernels.panels.transient`: below 2 MiB, fresh 4 KiB pages cost more than the few MiB they would add to
    the process's high-water mark, so they come from malloc, whose pages the next call reuses; without a backward to
    follow, every size does."""
    import mmap

    from rnnkit.kernels import panels

    floats = panels.HEAP_BELOW // 4
    below, from_it = panels.transient((floats - 32,), np.float32), panels.transient((floats // 32, 32), np.float32)
    assert below.shape == (floats - 32,) and from_it.shape == (floats // 32, 32)
    assert _memory_owner(below) is None
    assert isinstance(_memory_owner(from_it), mmap.mmap) or not hasattr(mmap, "MAP_ANONYMOUS")
    assert _memory_owner(panels.transient((floats // 32, 32), np.float32, backward=False)) is None


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_a_writers_panels_come_from_transient_told_whether_a_backward_follows(grad, pipelines, monkeypatch):
    """The pipeline's writer packs W_ihᵀ into `rnnkit.kernels.panels.transient` memory (the heap or pages of their
    own, by size and by whether a backward follows)."""
    from rnnkit.kernels import blas, panels

    if not blas.panels_apply(np.float32):
        pytest.skip("the products are not on panels here")
    calls = []

    def recording(shape, dtype, backward=True):
        calls.append((shape, backward))
        return panels.transient(shape, dtype, backward)
    monkeypatch.setattr(ahead_kernels, "transient", recording)
    layer, x = rnnkit.LSTM(4, 64, rng=0), np.zeros((3, 10, 4), np.float32)
    if grad:
        layer(x)
    else:
        with rnnkit.no_grad():
            layer(x)
    assert calls == [((256 // panels.width(np.float32), 4, panels.width(np.float32)), grad)]  # W_ihᵀ (4, 4·64)


@pytest.mark.parametrize(("cls", "normalised"), [(rnnkit.LSTM, False), (rnnkit.LayerNormLSTM, True)])
def test_only_a_layer_normalised_cell_hands_the_writer_a_layer_norm(cls, normalised, pipelines, monkeypatch):
    """None for every other cell, so that numba compiles no layer norm into its writer (`project_ahead`)."""
    norms, write = [], ahead_kernels.Ahead.write

    def noted(self, sync):
        norms.append(self.norm)
        return write(self, sync)

    monkeypatch.setattr(ahead_kernels.Ahead, "write", noted)
    cls(4, 64, rng=0)(np.zeros((3, 10, 4), np.float32))
    assert len(norms) == 1
    assert (norms[0] is not None) is normalised
