"""One recurrence on both cores (`rnnkit.kernels.team`): the units of an LSTM, GRU, RNN, layer-normalised or Mogrifier
layer split between two parts, each a compiled loop, with a barrier each step (the Mogrifier's after each round too).
Forced on for every shape here (``use_teams("always")``): the team's outputs and every gradient equal the NumPy
per-step oracle — uneven shares, ragged, reversed, with an initial state, peepholes, recurrent dropout, weight drop
and zoneout, float32 and float64 — and the policy of `team_size` splits only what it should."""


import numpy as np
import pytest

import rnnkit
from rnnkit import kernels
from rnnkit.recurrent import halves

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")
from rnnkit.kernels import parallel  # noqa: E402 - needs numba
from rnnkit.kernels import team as team_kernels  # noqa: E402
from test_sequence_loop import (  # noqa: E402
    TOL,
    initial_state,
    oracle_of,
    outputs_and_grads,
    relative_error,
    same_masks_every_call,
)

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
#: the cells whose units split (``team_units``), and the regularisers each takes in the compiled loop
TEAM_CELLS = {
    "lstm": (rnnkit.LSTM, {}, {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": (0.3, 0.2)}),
    "lstm-peephole": (rnnkit.LSTM, {"peephole": True}, {"zoneout": (0.3, 0.2)}),
    "gru-reset-after": (rnnkit.GRU, {}, {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3}),
    "rnn-tanh": (rnnkit.RNN, {}, {"dropout_recurrent": 0.4, "weight_drop": 0.5, "zoneout": 0.3}),
    "rnn-relu": (rnnkit.RNN, {"nonlinearity": "relu"}, {"zoneout": 0.3}),
    "lnlstm": (rnnkit.LayerNormLSTM, {}, {"zoneout": (0.3, 0.2)}),
    "lngru": (rnnkit.LayerNormGRU, {}, {"zoneout": 0.3}),
    "mogrifier": (rnnkit.MogrifierLSTM, {}, {"zoneout": (0.3, 0.2)}),  # it takes no recurrent dropout or weight drop
}


@pytest.fixture
def teams(monkeypatch):
    """Teams forced on, pipelines off (and the two directions of a layer run in turn, so that each direction can
    have one); the list of the parts' counts of every team that ran on two cores."""
    ran = []
    original = parallel._concurrently

    def counted(first, second, threads):
        ran.append(threads)
        return original(first, second, threads)

    monkeypatch.setattr(parallel, "_concurrently", counted)
    monkeypatch.setattr(parallel.TEAMS, "choice", "always")
    monkeypatch.setattr(parallel.PIPELINES, "choice", "never")  # a team's own forward (tests/test_pipelines.py)
    monkeypatch.setattr(parallel.PAIRS, "choice", "never")
    monkeypatch.setattr(halves.HALVES, "choice", "never")  # else halves take a narrow-input team's place
    if parallel.blas_threads() < 2:
        pytest.skip("one BLAS thread allowed: a team runs as one part")
    return ran


def oracle_and_team(run, name, dtype):
    """``run()`` on the oracle — NumPy; for the layer-normalised cells in float32, their kernels stepped by the
    Python loop (`test_sequence_loop.oracle_of` says why) — then with teams; the worst relative difference."""
    with oracle_of(name, dtype) or kernels.using("numpy"):
        expected = run()
    with kernels.using("compiled"):
        got = run()
    return max(relative_error(g, e) for g, e in zip(got, expected))


@DTYPES
@pytest.mark.parametrize("hidden", [48, 64], ids=["shares-32-16", "shares-32-32"])
@pytest.mark.parametrize("name", sorted(TEAM_CELLS))
def test_a_team_equals_the_numpy_oracle_ragged_reversed_with_an_initial_state(name, hidden, dtype, teams):
    cls, options, _ = TEAM_CELLS[name]
    layer = cls(5, hidden, bidirectional=True, dtype=dtype, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 9, 5)).astype(dtype)
    lengths, state0 = np.array([9, 3, 5, 1, 9, 7]), initial_state(layer, 6, rng, dtype)
    worst = oracle_and_team(lambda: outputs_and_grads(layer, x, lengths, state0), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the team differs from NumPy by {worst:.2e}"
    assert len(teams) == 2 * len(cls.cell_class.team_units)  # each split loop of each direction, a team of two


@DTYPES
@pytest.mark.parametrize("name", sorted(TEAM_CELLS))
def test_a_team_equals_the_numpy_oracle_under_recurrent_dropout_weight_drop_and_zoneout(name, dtype, teams):
    cls, options, rates = TEAM_CELLS[name]
    layer = same_masks_every_call(cls(4, 64, dtype=dtype, rng=0, **options).regularize(**rates))
    x, lengths = np.random.default_rng(2).normal(size=(5, 8, 4)).astype(dtype), np.array([8, 8, 2, 6, 3])
    worst = oracle_and_team(lambda: outputs_and_grads(layer, x, lengths), name, dtype)
    assert worst <= TOL[dtype], f"{name}: the team differs from NumPy by {worst:.2e}"
    assert len(teams) == len(cls.cell_class.team_units)


@pytest.mark.parametrize("rounds", [0, 1, 4])
def test_a_mogrifier_team_splits_its_input_rounds_too_and_equals_the_numpy_oracle(rounds, teams):
    """An input as wide as the state (48: shares 32 and 16), so that both parts compute columns of the rounds that
    gate x as well as of those that gate h; no round (the LSTM), one (the last gates x) and four (the last gates h)."""
    layer = rnnkit.MogrifierLSTM(48, 48, rounds=rounds, bidirectional=True, dtype=np.float64, rng=0)
    rng = np.random.default_rng(4)
    x, lengths, state0 = rng.normal(size=(4, 6, 48)), np.array([6, 2, 5, 6]), initial_state(layer, 4, rng, np.float64)
    worst = oracle_and_team(lambda: outputs_and_grads(layer, x, lengths, state0), "mogrifier", np.float64)
    assert worst <= TOL[np.float64], f"rounds={rounds}: the team differs from NumPy by {worst:.2e}"
    assert len(teams) == 2  # each direction's forward; the backward runs on one core


def test_an_elman_state_detached_at_every_step_equals_the_numpy_oracle_in_a_team(teams):
    layer = rnnkit.RNN(3, 64, dtype=np.float64, rng=0)
    layer.detach_state = True
    x, lengths = np.random.default_rng(3).normal(size=(3, 5, 3)), np.array([5, 2, 4])
    assert oracle_and_team(lambda: outputs_and_grads(layer, x, lengths), "rnn-tanh", np.float64) <= TOL[np.float64]
    assert len(teams) == 2


@pytest.mark.parametrize(("cls", "options"), [(rnnkit.LSTM, {"proj_size": 16}), (rnnkit.GRU, {"reset_after": False}),
                                              (rnnkit.IndRNN, {}), (rnnkit.MinGRU, {}),
                                              (rnnkit.MogrifierLSTM, {"rank": 4})])
def test_cells_whose_units_do_not_split_run_as_one_part(cls, options, teams):
    layer = cls(4, 64, rng=0, **options)
    y, _ = layer.forward(np.ones((2, 3, 4), np.float32))
    layer.backward(np.ones_like(y))
    assert teams == []


def test_a_team_runs_each_part_with_one_blas_thread_and_restores_the_limit_after(teams):
    layer = rnnkit.LSTM(4, 32, rng=0)
    before = parallel.blas_threads()
    layer.forward(np.ones((2, 3, 4), np.float32))
    assert teams == [before // 2] and parallel.blas_threads() == before


def test_a_failed_part_releases_the_other_from_its_barrier_and_the_error_is_raised(teams):
    def job(team):
        if team[0] == 1:
            raise RuntimeError("part 1 failed")
        team_kernels.barrier(team)  # would wait for part 1 for ever without the abort flag

    with pytest.raises(RuntimeError, match="part 1 failed"):
        parallel.team(2, job, 1 << 20)


def test_units_split_in_cache_line_shares_and_the_team_of_one_owns_every_unit():
    assert team_kernels.own_units(48, (0, 2, None)) == (0, 32)
    assert team_kernels.own_units(48, (1, 2, None)) == (32, 48)
    assert team_kernels.own_units(256, (1, 2, None)) == (128, 256)
    assert team_kernels.own_units(48, (0, 1, None)) == (0, 48)


@pytest.mark.parametrize(("batch", "hidden", "parts"), [(16, 256, 2), (16, 512, 2), (64, 256, 2), (16, 128, 2),
                                                         (32, 512, 1), (64, 512, 1), (1, 64, 1), (16, 48, 1)])
def test_the_automatic_policy_splits_the_lstm_shapes_that_measured_faster_on_the_blas(batch, hidden, parts,
                                                                                      monkeypatch):
    monkeypatch.setattr(parallel.TEAMS, "choice", "auto")
    monkeypatch.setattr("rnnkit.machine.blas_spin_bounded", lambda: True)
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.small_kernels", lambda dtype: np.dtype(dtype) == np.float32)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: False)
    assert parallel.team_size(np.float32, batch, hidden, 4 * hidden, hidden) == parts
    assert parallel.team_size(np.float64, batch, hidden, 4 * hidden, hidden) == 1


@pytest.mark.parametrize(("batch", "hidden", "parts"), [(16, 256, 2), (64, 512, 2), (32, 512, 2), (64, 1024, 2),
                                                         (1, 64, 1), (4, 64, 1), (16, 48, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_with_the_products_on_panels_the_automatic_policy_splits_every_shape_with_enough_work(batch, hidden, parts,
                                                                                               dtype, monkeypatch):
    """Panels run a core's product at its peak, so a team paid at the largest shapes too, and in float64."""
    monkeypatch.setattr(parallel.TEAMS, "choice", "auto")
    monkeypatch.setattr("rnnkit.machine.blas_spin_bounded", lambda: True)
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: True)
    monkeypatch.setattr("rnnkit.kernels.blas.small_kernels", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: False)
    assert parallel.team_size(dtype, batch, hidden, 4 * hidden, hidden) == parts


@pytest.mark.parametrize(("batch", "hidden", "parts"), [(16, 256, 2), (64, 512, 2), (32, 512, 2), (64, 1024, 2),
                                                         (32, 128, 2), (1, 64, 1), (4, 64, 1), (16, 48, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_on_mkl_the_automatic_policy_splits_every_shape_with_enough_work(batch, hidden, parts, dtype, monkeypatch):
    """Each part multiplies by its own columns of the weight, packed by MKL on their own, on one MKL thread:
    faster than one loop whose products run on MKL's two threads at every measured shape."""
    monkeypatch.setattr(parallel.TEAMS, "choice", "auto")
    monkeypatch.setattr("rnnkit.machine.blas_spin_bounded", lambda: True)
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.small_kernels", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: True)
    assert parallel.team_size(dtype, batch, hidden, 4 * hidden, hidden) == parts


def test_with_the_products_on_panels_a_team_splits_only_where_each_share_is_whole_panels(monkeypatch):
    """96 units split into 48 and 48: whole 16-column panels in float64, not whole 32-column panels in float32,
    which falls back to the BLAS's rule (here: no small-matrix kernels, so no team)."""
    monkeypatch.setattr(parallel.TEAMS, "choice", "auto")
    monkeypatch.setattr("rnnkit.machine.blas_spin_bounded", lambda: True)
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: True)
    monkeypatch.setattr("rnnkit.kernels.blas.small_kernels", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: False)
    assert parallel.team_size(np.float64, 64, 96, 384, 96) == 2
    assert parallel.team_size(np.float32, 64, 96, 384, 96) == 1


def test_the_automatic_policy_never_splits_while_openblas_threads_spin_long(monkeypatch):
    monkeypatch.setattr(parallel.TEAMS, "choice", "auto")
    monkeypatch.setattr("rnnkit.machine.blas_spin_bounded", lambda: False)
    monkeypatch.setattr("rnnkit.kernels.blas.small_kernels", lambda dtype: True)
    monkeypatch.setattr("rnnkit.kernels.blas.packs_shares", lambda dtype: False)
    monkeypatch.setattr("rnnkit.kernels.blas.panels_apply", lambda dtype: True)
    assert parallel.team_size(np.float32, 16, 256, 1024, 256) == 1


def test_using_teams_sets_the_policy_inside_a_block_and_restores_it_after_an_error():
    before = parallel.teams_choice()
    with pytest.raises(RuntimeError), parallel.using_teams("never"):
        assert parallel.teams_choice() == "never"
        raise RuntimeError
    assert parallel.teams_choice() == before
