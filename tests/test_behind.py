"""A backward loop with its weight sums made behind it on the other core (`rnnkit.kernels.behind`,
`rnnkit.kernels.parallel.Pipeline` with ``follows``). Forced on for every shape here (``use_pipelines("always")``,
teams on): outputs and every gradient equal the NumPy per-step oracle — ragged, with an initial state, under every
regulariser, float32 and float64 — the sums come out the same to the bit however the tasks fall to the two threads,
only the cells whose sums it knows make them there, a failed loop never leaves the partner waiting, and the policy
takes the shapes it should."""

import threading

import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit.recurrent import halves

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
from rnnkit.kernels import behind as behind_kernels  # noqa: E402 - needs numba
from rnnkit.kernels import parallel  # noqa: E402
from rnnkit.kernels import team as team_kernels  # noqa: E402
from rnnkit.kernels.blas import matmul_into  # noqa: E402
from test_pipelines import DTYPES, oracle_and_pipeline  # noqa: E402 - compiled, then the oracle
from test_sequence_loop import (  # noqa: E402
    TOL,
    initial_state,
    outputs_and_grads,
    relative_error,
    same_masks_every_call,
)
from test_teams import TEAM_CELLS  # noqa: E402

#: the cells whose weight sums go behind the loop: the gated cell's sums (with an LSTM's peepholes beside them), the
#: GRU's with its reset gate after the product (δq), and the layer-normalised cells' (δP of the normalised products);
#: of the cells whose loop splits in a team, not the Mogrifier, whose own `accumulate` sums its rounds' weights too
BEHIND_CELLS = sorted(name for name in TEAM_CELLS if name != "mogrifier")


@pytest.fixture
def behind(monkeypatch):
    """Sums behind the loop (and the projection ahead of it) forced on, teams on, the two directions of a layer in
    turn; the list of the calls of `Behind.work` as (batch, whether it ran on the worker thread)."""
    worked = []
    original = behind_kernels.Behind.work

    def counted(self, sync):
        worked.append((self.batch, threading.current_thread() is not threading.main_thread()))
        return original(self, sync)

    monkeypatch.setattr(behind_kernels.Behind, "work", counted)
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "always")
    monkeypatch.setattr(parallel.PAIRS, "choice", "never")
    monkeypatch.setattr(halves.HALVES, "choice", "never")  # else halves take a narrow-input team's place
    if parallel.blas_threads() < 2:
        pytest.skip("one BLAS thread allowed: the sums are made after the loop, in the caller")
    return worked


@DTYPES
@pytest.mark.parametrize("name", BEHIND_CELLS)
def test_sums_behind_the_loop_equal_the_numpy_oracle_ragged_with_an_initial_state(name, dtype, behind):
    """40 steps of 6 rows: chunks of 22 steps (`behind.CHUNK_ROWS` = 128 rows), the last of 18; the partner takes
    tasks from the start, the caller after its loop."""
    cls, options, _ = TEAM_CELLS[name]
    layer = cls(5, 64, dtype=dtype, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40, 5)).astype(dtype)
    state0 = initial_state(layer, 6, rng, dtype)  # for two directions: one direction takes the first rows
    state0 = tuple(s[:1] for s in state0) if isinstance(state0, tuple) else state0[:1]
    lengths = np.array([40, 13, 25, 1, 40, 37])
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x, lengths, state0), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the sums behind the loop differ from NumPy by {worst:.2e}"
    assert (6, True) in behind and (6, False) in behind  # the partner from the start, the caller after its loop


@DTYPES
@pytest.mark.parametrize("name", BEHIND_CELLS)
def test_sums_behind_the_loop_equal_the_numpy_oracle_under_every_regulariser(name, dtype, behind):
    cls, options, rates = TEAM_CELLS[name]
    layer = same_masks_every_call(cls(4, 64, dtype=dtype, rng=0, **options).regularize(dropout_input=0.3, **rates))
    x, lengths = np.random.default_rng(2).normal(size=(5, 30, 4)).astype(dtype), np.array([30, 30, 2, 16, 3])
    worst = oracle_and_pipeline(lambda: outputs_and_grads(layer, x, lengths), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the sums behind the loop differ from NumPy by {worst:.2e}"
    assert behind


@pytest.mark.parametrize("name", ["lstm", "lnlstm", "lngru"])
def test_the_sums_are_the_same_to_the_bit_with_the_partner_or_without_it(name, behind, monkeypatch):
    """Each sum is made chunk after chunk in the loop's order, each chunk one GEMM on one BLAS thread, whichever
    thread takes it: the partner from the start, or the caller alone after its loop (the partner could not start:
    the cores were taken between the runner's look and the pipeline's claim)."""
    cls, options, _ = TEAM_CELLS[name]
    layer = cls(8, 64, rng=0, **options)
    x = np.random.default_rng(3).normal(size=(32, 20, 8)).astype(np.float32)
    with kernels.using("compiled"):
        shared = outputs_and_grads(layer, x)
        assert (32, True) in behind
        behind.clear()
        monkeypatch.setattr(parallel, "cores_free", lambda: True)
        parallel._busy.acquire()
        try:
            alone = outputs_and_grads(layer, x)
        finally:
            parallel._busy.release()
    assert all(np.array_equal(a, b) for a, b in zip(shared, alone))
    assert behind == [(32, False)]


@pytest.mark.parametrize(("choice", "shares"), [("always", False), ("never", True)], ids=["behind", "team"])
def test_a_backward_loop_alone_on_one_core_multiplies_by_its_whole_weight_and_a_teams_by_shares(choice, shares, behind,
                                                                                                 monkeypatch):
    """The backward loop beside the sums runs as a team of one part: W_hh packed whole (``team_blocks`` 0), not as
    the columns a team's two parts take (``team_blocks`` 1:
    `rnnkit.recurrent.compiled_loop.CompiledSequenceLoop.team_shares`, ``Workspace.alone``)."""
    from rnnkit.kernels import blas

    packed, original = [], blas.loop_weight

    def recorded(matrix, team_blocks=0):
        packed.append(team_blocks)
        return original(matrix, team_blocks)

    monkeypatch.setattr(parallel.PIPELINES, "choice", choice)
    layer = rnnkit.LSTM(64, 64, dtype=np.float32, rng=0)
    x = np.ones((5, 16, 64), np.float32)
    y, _ = layer(x)
    monkeypatch.setattr(blas, "loop_weight", recorded)  # the backward's packing only
    layer.backward(np.ones_like(y))
    assert packed and (1 in packed) is shares and bool(behind) is not shares


@pytest.mark.parametrize(("cls", "options"), [
    (rnnkit.LSTM, {}), (rnnkit.RNN, {}), (rnnkit.LayerNormLSTM, {}), (rnnkit.LayerNormGRU, {}), (rnnkit.GRU, {}),
    (rnnkit.GRU, {"reset_after": False}), (rnnkit.MogrifierLSTM, {}), (rnnkit.Jordan, {}), (rnnkit.IndRNN, {}),
    (rnnkit.RHN, {}), (rnnkit.MinLSTM, {})])
def test_only_the_cells_whose_sums_it_knows_make_them_behind_the_loop(cls, options):
    """The gated cell's sums (no ``accumulate`` of the class's own), the GRU's with the reset after its product and
    the layer-normalised cells'; every other cell makes its sums after the loop."""
    cell = (cls(4, 64, 5, rng=0) if cls is rnnkit.Jordan else cls(4, 64, rng=0, **options)).cells[0]
    ws = cell.allocate(3, 2)
    ws.x_hat, ws.x_inv_std = np.zeros((6, cell.gate_width), cell.dtype), np.ones((6, 1), cell.dtype)  # LN's X̂, s
    if getattr(ws, "gates", 0) is None:  # an LSTM's forward makes its projection the gate history
        ws.gates = np.zeros((3, 2, cell.gate_width), cell.dtype)
    made = cell.sums_behind(ws, np.zeros((3, 2, 4), cell.dtype), np.zeros((6, 64), cell.dtype), False)
    knows = cls in (rnnkit.LSTM, rnnkit.RNN, rnnkit.LayerNormLSTM, rnnkit.LayerNormGRU, rnnkit.GRU) and not options
    assert isinstance(made, behind_kernels.Behind) if knows else made is None


def test_a_gru_with_the_reset_before_its_product_makes_its_sums_after_the_loop(behind):
    layer = rnnkit.GRU(4, 64, rng=0, reset_after=False)
    with kernels.using("compiled"):
        y, _ = layer.forward(np.ones((2, 3, 4), np.float32))
        layer.backward(np.ones_like(y))
    assert behind == []


def test_the_directions_of_a_layer_sum_after_their_loops(behind):
    """A bidirectional layer's directions, at once or in turn, make their sums after their loops, as whole GEMMs:
    the two ways stay the same to the bit (tests/test_parallel_directions.py)."""
    layer = rnnkit.LSTM(4, 64, bidirectional=True, rng=0)
    with kernels.using("compiled"):
        y, _ = layer.forward(np.ones((2, 3, 4), np.float32))
        layer.backward(np.ones_like(y))
    assert behind == []


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("steps", "batch"), [(50, 3), (20, 16), (9, 64), (1, 200)])
@pytest.mark.parametrize("norm", [False, True], ids=["plain", "normalised"])
def test_the_tasks_sum_what_the_whole_sequence_gemms_do(steps, batch, reverse, norm):
    """Chunks of 43 + 7, 8 + 8 + 4, 8 + 1 steps and one of one step, in the loop's order either way; float64 to
    rounding."""
    rng = np.random.default_rng(5)
    rows, gates, inputs, hidden = steps * batch, 24, 5, 6
    dxp, d_rec = rng.normal(size=(steps, batch, gates)), rng.normal(size=(rows, gates))
    x, h_prev, w_ih = rng.normal(size=(steps, batch, inputs)), rng.normal(size=(rows, hidden)), rng.normal(
        size=(gates, inputs))
    gamma, hat, inv_std = rng.normal(size=gates), rng.normal(size=(rows, gates)), rng.uniform(0.5, 2, (rows, 1))
    start = [rng.normal(size=(gates, inputs)), rng.normal(size=(gates, hidden)), rng.normal(size=gates),
             rng.normal(size=gates)]
    grads = tuple(g.copy() for g in start)
    work = behind_kernels.Behind(dxp, x, h_prev, w_ih, grads, reverse, d_rec=d_rec,
                                 norm=(gamma, hat, inv_std) if norm else None)
    sync = team_kernels.new_sync(projected=False)
    team_kernels.add_ready(sync, steps)
    work.work(sync)
    d = dxp.reshape(rows, gates)
    if norm:  # the layer norm's backward: s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩), δv̂ = δ ⊙ γ
        d_hat = d * gamma
        d = inv_std * (d_hat - d_hat.mean(axis=1, keepdims=True) - hat * (d_hat * hat).mean(axis=1, keepdims=True))
    expected = (d @ w_ih, start[0] + d.T @ x.reshape(rows, inputs), start[1] + d_rec.T @ h_prev,
                start[2] + dxp.reshape(rows, gates).sum(axis=0), start[3] + d_rec.sum(axis=0))
    for got, want in zip((work.dx, *grads), expected):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_gru_with_the_reset_after_its_product_sums_its_delta_q(reverse):
    """δW_hh += δqᵀ H_prev and δb_hh += Σ δq, δq = [δa_r, δa_z, δa_n ⊙ r] made a chunk at a time in one buffer; the
    input side's sums take δa itself, which stays as it was."""
    rng = np.random.default_rng(9)
    steps, batch, hs = 20, 16, 8  # chunks of 8 + 8 + 4 steps
    rows = steps * batch
    dxp, r = rng.normal(size=(steps, batch, 3 * hs)), rng.uniform(size=(steps, batch, hs))
    x, h_prev, w_ih = rng.normal(size=(steps, batch, 5)), rng.normal(size=(rows, hs)), rng.normal(size=(3 * hs, 5))
    grads = (np.zeros((3 * hs, 5)), np.zeros((3 * hs, hs)), np.zeros(3 * hs), np.zeros(3 * hs))
    da = dxp.reshape(rows, 3 * hs).copy()
    work = behind_kernels.Behind(dxp, x, h_prev, w_ih, grads, reverse, reset=r)
    sync = team_kernels.new_sync(projected=False)
    team_kernels.add_ready(sync, steps)
    work.work(sync)
    dq = np.concatenate([da[:, :2 * hs], da[:, 2 * hs:] * r.reshape(rows, hs)], axis=1)
    assert np.array_equal(dxp.reshape(rows, 3 * hs), da)
    expected = (da @ w_ih, da.T @ x.reshape(rows, 5), dq.T @ h_prev, da.sum(axis=0), dq.sum(axis=0))
    for got, want in zip((work.dx, *grads), expected):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_partner_waits_for_the_steps_the_loop_announces():
    steps, batch = 4, 64  # one chunk: its tasks wait for the last step
    rng = np.random.default_rng(6)
    dxp = rng.normal(size=(steps, batch, 8))
    work = behind_kernels.Behind(dxp, rng.normal(size=(steps, batch, 3)), rng.normal(size=(steps * batch, 2)),
                                 rng.normal(size=(8, 3)), (np.zeros((8, 3)), np.zeros((8, 2)), None, None), False)
    sync = team_kernels.new_sync(projected=False)
    partner = threading.Thread(target=work.work, args=(sync,), daemon=True)
    partner.start()
    for _ in range(steps - 1):
        team_kernels.announce_step((0, 1, sync))
    partner.join(0.2)
    assert partner.is_alive()  # three of the chunk's four steps announced: it waits
    team_kernels.announce_step((0, 1, sync))
    partner.join(10)
    assert not partner.is_alive()
    assert np.allclose(work.dx, dxp.reshape(-1, 8) @ work.sources[4])


def test_a_failed_loop_releases_the_waiting_partner_frees_the_cores_and_is_raised(behind):
    partner_returned = threading.Event()

    def work(sync):
        team_kernels.wait_until(sync, team_kernels.READY, 1, sync)  # no step is ever announced
        partner_returned.set()

    def loop(team):
        raise RuntimeError("the loop failed")

    before = parallel.blas_threads()
    with pytest.raises(RuntimeError, match="the loop failed"):
        with parallel.Pipeline(work, follows=True) as pipeline:
            pipeline.run(loop)
    assert partner_returned.is_set() and parallel.cores_free() and parallel.blas_threads() == before


def test_with_the_cores_busy_the_caller_runs_its_loop_then_all_of_the_work(behind):
    order = []
    parallel._busy.acquire()
    try:
        with parallel.Pipeline(lambda sync: order.append("work"), follows=True) as pipeline:
            pipeline.run(lambda team: order.append(("loop", team[1])))
    finally:
        parallel._busy.release()
    assert order == [("loop", 1), "work"]


@pytest.mark.parametrize(("choice", "dtype", "chunks", "work", "expected"), [
    ("auto", np.float32, 3, 1 << 18, True), ("auto", np.float32, 13, 1 << 22, True),
    ("auto", np.float32, 2, 1 << 22, False), ("auto", np.float32, 13, (1 << 18) - 1, False),
    ("auto", np.float64, 13, 1 << 22, False), ("always", np.float64, 1, 1, True), ("never", np.float32, 13, 1 << 22,
                                                                                  False)])
def test_the_policy_sums_behind_loops_of_three_chunks_and_2_18_multiply_adds_a_step(choice, dtype, chunks, work,
                                                                                    expected, monkeypatch):
    monkeypatch.setattr(parallel.PIPELINES, "choice", choice)
    assert parallel.behind_pays(dtype, chunks, work) is expected


def test_a_chunk_is_eight_steps_or_128_rows():
    assert [behind_kernels.chunk_steps(b) for b in (1, 4, 6, 16, 64)] == [128, 32, 22, 8, 8]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_into_reads_an_a_stored_as_its_transpose(dtype):
    """δW += δXPᵀ X: ``a`` the transposed view of a C-contiguous array (BLAS's 'T' flag), whole and a block of it."""
    rng = np.random.default_rng(8)
    d, x = rng.normal(size=(40, 12)).astype(dtype), rng.normal(size=(40, 5)).astype(dtype)
    out = rng.normal(size=(12, 5)).astype(dtype)
    expected = out + d.T @ x
    matmul_into(d.T, x, out, True)
    block = np.zeros((12, 5), dtype)
    matmul_into(d[8:24].T, x[8:24], block, False)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.allclose(out, expected, rtol=tol, atol=tol)
    assert np.allclose(block, d[8:24].T @ x[8:24], rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="a needs unit stride"):
        matmul_into(np.zeros((6, 8), dtype)[::2, ::2], np.zeros((4, 3), dtype), np.zeros((3, 3), dtype), False)


def test_the_machine_report_says_where_the_sums_go_behind_the_loop(monkeypatch):
    from rnnkit.machine import report

    line = next(line for line in report() if line.startswith("weight gradients behind the backward loop: "))
    assert "RNNKIT_PIPELINES=never turns them off" in line and "Cell.sums_behind" in line
    monkeypatch.setattr(parallel.PIPELINES, "choice", "never")
    assert "never for the backwards of one direction whose cells make them (RNNKIT_PIPELINES=never)" in " ".join(
        report())


@pytest.mark.parametrize(("batch", "layers"), [(1, 1), (3, 1), (3, 2)])
def test_the_callers_output_gradient_is_never_written_over(batch, layers, behind):
    """δx goes over the layer's own time-major δ(output) only: at B = 1 that is the caller's array itself (its
    transpose is contiguous), which stays as it was; the gradients equal those of the sums after the loop."""
    layer = rnnkit.LSTM(64, 64, num_layers=layers, rng=0)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(batch, 20, 64)).astype(np.float32)
    dy = rng.normal(size=(batch, 20, 64)).astype(np.float32)
    given = dy.copy()
    with kernels.using("compiled"):
        y, _ = layer.forward(x)
        dx = layer.backward(dy)[0]
        assert behind and np.array_equal(dy, given)
        with parallel.using_pipelines("never"):
            layer.forward(x)
            expected = layer.backward(given)[0]
    assert relative_error(dx, expected) <= 1e-5


def test_dx_is_written_over_the_layers_own_output_gradient(behind, monkeypatch):
    """One (T·B, I) array less while the loop runs: δX's rows go where δ(output)'s were, once the loop has read
    them."""
    over = []
    original = behind_kernels.Behind.write_dx_over

    def spied(self, dy):
        original(self, dy)
        over.append(np.shares_memory(self.dx, dy))

    monkeypatch.setattr(behind_kernels.Behind, "write_dx_over", spied)
    layer = rnnkit.GRU(64, 64, rng=0)
    with kernels.using("compiled"):
        y, _ = layer.forward(np.ones((4, 20, 64), np.float32))
        layer.backward(np.ones_like(y))
    assert over == [True]


def behind_case(rng, steps, batch, variant):
    """A `Behind` over random float64 arrays (gates 24, hidden 8, input 5): ``variant`` "plain", "normalised" (a
    layer-normalised projection), "reset" (a GRU's reset after its product) or "sums" (a layer-normalised
    projection and row sums: `row_sums_case`); its gradients start at zero."""
    rows, gates = steps * batch, 24
    dxp = rng.normal(size=(steps, batch, gates))
    norm = (rng.normal(size=gates), rng.normal(size=(rows, gates)), rng.uniform(0.5, 2, (rows, 1)))
    grads = (np.zeros((gates, 5)), np.zeros((gates, 8)), np.zeros(gates), np.zeros(gates))
    return behind_kernels.Behind(dxp, rng.normal(size=(steps, batch, 5)), rng.normal(size=(rows, 8)),
                                 rng.normal(size=(gates, 5)), grads, False,
                                 norm=norm if variant in ("normalised", "sums") else None,
                                 reset=rng.uniform(size=(steps, batch, 8)) if variant == "reset" else None,
                                 sums=row_sums_case(rng, dxp.reshape(rows, gates)) if variant == "sums" else None)


def row_sums_case(rng, d):
    """Row sums as a layer-normalised cell names them: two products of ``d`` (rows, G), the second with its last 6
    columns scaled row by row (as the LN-GRU's δa_n ⊙ r), and one of other arrays (rows, 8), a total of each; every
    sum starts at zero."""
    rows, gates = d.shape
    other, scale = rng.normal(size=(rows, 8)), rng.uniform(size=(rows, 6))
    products = (behind_kernels.row_product(d, rng.normal(size=(rows, gates)), np.zeros(gates)),
                behind_kernels.row_product(d, rng.normal(size=(rows, gates)), np.zeros(gates), scale, gates - 6),
                behind_kernels.row_product(other, rng.normal(size=(rows, 8)), np.zeros(8)))
    totals = (behind_kernels.row_total(d, np.zeros(gates)),
              behind_kernels.row_total(d, np.zeros(gates), scale, gates - 6),
              behind_kernels.row_total(other, np.zeros(8)))
    return products, totals


def row_sum_results(work) -> list:
    if not work.sums:
        return []
    products, totals = work.sums
    return [item[2] for item in products] + [item[1] for item in totals]


def scaled(a, scale, offset):
    """a with its columns from ``offset`` on times ``scale`` (a copy)."""
    if offset >= a.shape[1]:
        return a
    out = a.copy()
    out[:, offset:] *= scale
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("steps", "batch"), [(50, 3), (20, 16), (1, 200)])
def test_the_row_sums_are_a_fourth_task_and_sum_each_product_and_total_over_every_row(steps, batch, reverse):
    work = behind_case(np.random.default_rng(13), steps, batch, "sums")
    sync = team_kernels.new_sync(projected=False)
    team_kernels.add_ready(sync, steps)
    work.work(sync)
    products, totals = work.sums
    for a, b, out, scale, offset in products:
        assert np.allclose(out, (scaled(a, scale, offset) * b).sum(axis=0), rtol=1e-12, atol=1e-12)
    for a, out, scale, offset in totals:
        assert np.allclose(out, scaled(a, scale, offset).sum(axis=0), rtol=1e-12, atol=1e-12)
    chunks = behind_kernels.chunk_count(steps, batch)
    assert work.row_sums and work.claims[behind_kernels.DONE_SUMS] == chunks
    assert work.claims[behind_kernels.NEXT] >= (behind_kernels.TASKS + 1) * chunks


def test_both_layer_normalised_cells_sum_their_normalisations_behind_the_loop():
    made = {}
    for cls in (rnnkit.LayerNormLSTM, rnnkit.LayerNormGRU):
        cell = cls(4, 64, rng=0).cells[0]
        ws = cell.allocate(3, 2)
        ws.x_hat, ws.x_inv_std = np.zeros((6, cell.gate_width), cell.dtype), np.ones((6, 1), cell.dtype)
        ws.gates = np.zeros((3, 2, cell.gate_width), cell.dtype)  # the forward's gate history: its projection
        made[cls] = cell.sums_behind(ws, np.zeros((3, 2, 4), cell.dtype), np.zeros((6, 64), cell.dtype), False)
    assert made[rnnkit.LayerNormLSTM].row_sums and made[rnnkit.LayerNormGRU].row_sums


@pytest.mark.parametrize("variant", ["plain", "normalised", "reset", "sums"])
def test_two_threads_taking_the_tasks_sum_to_the_bit_what_one_does(variant):
    """The partner and the caller at once, every step announced: the waits between a chunk's tasks (δP written
    first) and between a sum's chunks (and its one buffer for δq) keep each sum in its one order."""
    results = []
    for threads in (1, 2):
        work = behind_case(np.random.default_rng(11), 40, 16, variant)  # five chunks of eight steps
        sync = team_kernels.new_sync(projected=False)
        team_kernels.add_ready(sync, 40)
        others = [threading.Thread(target=work.work, args=(sync,)) for _ in range(threads - 1)]
        for other in others:
            other.start()
        work.work(sync)
        for other in others:
            other.join(10)
        results.append((work.dx, *work.grads, work.dxp, *row_sum_results(work)))
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_a_chunks_recurrent_sum_waits_for_the_step_after_it():
    """Zoneout's backward swaps s̃ into the slot of the state the step after a chunk reads as H_prev, which is the
    chunk's first H_prev rows, until that step ends: δW_hh's task of a chunk waits for it; the chunk's other tasks
    do not."""
    work = behind_case(np.random.default_rng(12), 16, 16, "plain")  # two chunks of eight steps
    sync = team_kernels.new_sync(projected=False)
    team_kernels.add_ready(sync, 8)  # the first chunk's steps, not the one after it
    partner = threading.Thread(target=work.work, args=(sync,), daemon=True)
    partner.start()
    partner.join(0.3)
    grad_ih, grad_hh, _, _ = work.grads
    assert partner.is_alive() and grad_ih.any() and not grad_hh.any()
    team_kernels.add_ready(sync, 8)
    partner.join(10)
    assert not partner.is_alive() and grad_hh.any()
