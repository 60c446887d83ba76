"""Variational dropout (input and recurrent), zoneout and weight drop: with fixed masks the layers equal a
hand-written masked recurrence (a torch-autograd transcription of `rnnkit.recurrent.noise`'s equations, outputs and
every gradient), in evaluation they equal the plain cell (dropout) or the expectation (zoneout), and every cell
that takes them passes gradcheck stacked, bidirectional and ragged."""

import contextlib

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL, PARITY_TOL, assert_close, requires_torch, torch
from rnnkit.errors import ConfigError
from rnnkit.module import bernoulli
from rnnkit.recurrent import GRU, LSTM, RHN, RNN, IndRNN, Jordan, MinGRU, MinLSTM, MogrifierLSTM
from rnnkit.recurrent import noise as noise_module
from rnnkit.recurrent.noise import Noise

ALL_RATES = {"dropout_input": 0.3, "dropout_recurrent": 0.4, "zoneout": 0.3, "weight_drop": 0.5}
B, T, I, H = 3, 6, 4, 5


def fixed_noise(layer, rng, training=True):
    """Masks drawn once, in the caller's row order, handed to the layer by overriding its `sample_noise`."""
    cell = layer.runners[0][0].cell
    rates = layer.regularization
    noise = rates.sample(rng, training, T, B, cell.input_size, cell.state_sizes, cell.weight_hh.data.shape,
                         np.float64)
    layer.sample_noise = lambda *args: noise
    return noise


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def torch_masked_recurrence(kind, p, x, state0, noise, proj=False):
    """The equations of the module docstring, step by step with torch ops: x_t ⊙ m_x, h_{t−1} ⊙ m_h and
    W_hh ⊙ M inside the recurrent matmuls, zoneout s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ s̃_t."""
    m_x = 1.0 if noise.input_mask is None else torch.tensor(noise.input_mask)
    m_h = 1.0 if noise.state_mask is None else torch.tensor(noise.state_mask)
    w_hh = p["weight_hh_l0"] * (1.0 if noise.weight_mask is None else torch.tensor(noise.weight_mask))
    zone = noise.zoneout or (None,) * len(state0)

    def mix(k, t, prev, proposed):
        d = zone[k]
        if d is None:
            return proposed
        d = torch.tensor(d[t] if d.ndim == 3 else d)  # (T, B, S) in training, (B, S) filled with z in evaluation
        return d * prev + (1 - d) * proposed

    state, outs = list(state0), []
    for t in range(x.shape[1]):
        xt = x[:, t] * m_x
        h_in = state[0] * m_h
        gi = xt @ p["weight_ih_l0"].T + p["bias_ih_l0"]
        gh = h_in @ w_hh.T + p["bias_hh_l0"]
        if kind == "rnn":
            proposed = [torch.tanh(gi + gh)]
        elif kind == "lstm":
            i, f, g, o = (gi + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            proposed = [h @ p["weight_hr_l0"].T if proj else h, c]
        else:
            (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, dim=1), gh.chunk(3, dim=1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(i_n + r * hn)
            proposed = [(1 - z) * n + z * state[0]]  # the unmasked h_{t−1} outside the matmul
        state = [mix(k, t, s, q) for k, (s, q) in enumerate(zip(state, proposed))]
        outs.append(state[0])
    return torch.stack(outs, dim=1), state


LAYERS = {"rnn": (RNN, {}), "lstm": (LSTM, {}), "lstm-proj": (LSTM, {"proj_size": 3}), "gru": (GRU, {})}


@requires_torch
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_fixed_masks_equal_a_hand_written_masked_recurrence_in_outputs_and_every_gradient(name, training):
    cls, options = LAYERS[name]
    rng = np.random.default_rng(7)
    layer = cls(I, H, dtype=np.float64, rng=1, **options).regularize(**ALL_RATES)
    layer.train(training)
    noise = fixed_noise(layer, rng, training)
    x = rng.normal(size=(B, T, I))
    state0 = tuple(rng.normal(size=(1, B, s)) for s in layer.state_sizes)
    out, final = layer.forward(x, state0 if len(state0) > 1 else state0[0])
    final = final if isinstance(final, tuple) else (final,)
    dout, dfinal = rng.normal(size=out.shape), tuple(rng.normal(size=f.shape) for f in final)
    dx, dstate0 = layer.backward(dout, dfinal if len(dfinal) > 1 else dfinal[0])
    dstate0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)

    params = {n: _t(p.data) for n, p in layer.named_parameters()}
    tx, ts0 = _t(x), [_t(s[0]) for s in state0]
    kind = name.split("-")[0]
    tout, tfinal = torch_masked_recurrence(kind, params, tx, ts0, noise, proj=bool(options))
    loss = (tout * torch.tensor(dout)).sum() + sum((f * torch.tensor(d[0])).sum() for f, d in zip(tfinal, dfinal))
    loss.backward()
    tol = PARITY_TOL[np.float64]
    assert_close(out, tout.detach().numpy(), tol, "output")
    for k, f in enumerate(final):
        assert_close(f[0], tfinal[k].detach().numpy(), tol, f"final state {k}")
    assert_close(dx, tx.grad.numpy(), tol, "δx")
    for k, d in enumerate(dstate0):
        assert_close(d[0], ts0[k].grad.numpy(), tol, f"δ initial state {k}")
    for n, p in layer.named_parameters():
        assert_close(p.grad, params[n].grad.numpy(), tol, f"δ{n}")


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_in_evaluation_dropout_and_weight_drop_leave_the_plain_layer(cls):
    rng = np.random.default_rng(3)
    plain = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, rng=5)
    noisy = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, rng=5, dropout_input=0.5,
                dropout_recurrent=0.5, weight_drop=0.5)
    plain.eval()
    noisy.eval()
    x = rng.normal(size=(B, T, I))
    np.testing.assert_array_equal(plain.forward(x)[0], noisy.forward(x)[0])
    noisy.train()
    assert not np.allclose(plain.forward(x)[0], noisy.forward(x)[0])


def test_zoneout_with_every_unit_kept_freezes_the_state_and_with_none_kept_is_the_plain_cell():
    rng = np.random.default_rng(4)
    x, h0 = rng.normal(size=(B, T, I)), rng.normal(size=(1, B, H))
    layer = GRU(I, H, dtype=np.float64, rng=2, zoneout=0.5)
    layer.sample_noise = lambda *args: Noise(zoneout=(np.ones((T, B, H)),))
    out, _ = layer.forward(x, h0)
    np.testing.assert_array_equal(out, np.broadcast_to(h0[0][:, None], out.shape))
    layer.sample_noise = lambda *args: Noise(zoneout=(np.zeros((T, B, H)),))
    plain = GRU(I, H, dtype=np.float64, rng=2)
    np.testing.assert_allclose(layer.forward(x, h0)[0], plain.forward(x, h0)[0], rtol=0, atol=1e-15)


def test_lstm_zoneout_takes_separate_rates_for_h_and_c():
    layer = LSTM(I, H, zoneout=(0.05, 0.5))
    assert layer.regularization.zoneout == (0.05, 0.5)
    noise = layer.sample_noise(0, 0, 64, 50)
    rates = [d.mean() for d in noise.zoneout]
    assert abs(rates[0] - 0.05) < 0.01 and abs(rates[1] - 0.5) < 0.02


def test_weight_drop_gradients_reach_only_the_kept_recurrent_weights():
    rng = np.random.default_rng(5)
    layer = LSTM(I, H, dtype=np.float64, rng=3, weight_drop=0.5)
    noise = fixed_noise(layer, rng)
    out, _ = layer.forward(rng.normal(size=(B, T, I)))
    layer.backward(rng.normal(size=out.shape))
    dropped = noise.weight_mask == 0
    assert dropped.any() and (~dropped).any()
    assert np.all(layer.weight_hh_l0.grad[dropped] == 0) and np.all(layer.weight_hh_l0.grad[~dropped] != 0)


def test_masks_are_drawn_once_per_call_and_anew_for_the_next_call():
    layer = RNN(I, H, dropout_recurrent=0.5, dropout_input=0.5, rng=0)
    first, second = layer.sample_noise(0, 0, B, T), layer.sample_noise(0, 0, B, T)
    assert first.state_mask.shape == (B, H) and first.input_mask.shape == (B, I)
    assert not np.array_equal(first.state_mask, second.state_mask)


GRADCHECK_LAYERS = {
    "rnn": (RNN, {}, ALL_RATES), "lstm": (LSTM, {}, ALL_RATES), "lstm-proj-peephole":
    (LSTM, {"proj_size": 3, "peephole": True}, {**ALL_RATES, "zoneout": (0.2, 0.5)}),
    "gru": (GRU, {}, ALL_RATES), "gru-reset-before": (GRU, {"reset_after": False}, {"weight_drop": 0.4, "zoneout": 0.3,
                                                                                    "dropout_input": 0.3}),
    "rhn": (RHN, {"depth": 2}, {"dropout_input": 0.3, "zoneout": 0.3}),
    "mogrifier": (MogrifierLSTM, {"rounds": 3}, {"dropout_input": 0.3, "zoneout": 0.3}),
    "indrnn": (IndRNN, {}, {"dropout_input": 0.3, "zoneout": 0.3}),
    "mingru": (MinGRU, {}, {"dropout_input": 0.3, "zoneout": 0.3}),
    "minlstm": (MinLSTM, {}, {"dropout_input": 0.3, "zoneout": 0.3}),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_LAYERS))
def test_every_cell_with_its_regularisers_passes_gradcheck_stacked_bidirectional_and_ragged(name):
    cls, options, rates = GRADCHECK_LAYERS[name]
    layer = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, rng=0, **options).regularize(**rates)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, I))
    state0 = tuple(rng.normal(size=(4, B, s)) for s in layer.state_sizes)
    err = rnnkit.gradcheck(layer, x, state0 if len(state0) > 1 else state0[0], lengths=np.array([T, 2, 4]))
    assert err < GRADCHECK_TOL, err


def test_a_jordan_network_with_zoneout_and_input_dropout_passes_gradcheck():
    layer = Jordan(I, H, 2, dtype=np.float64, rng=0).regularize(dropout_input=0.3, zoneout=0.3)
    assert rnnkit.gradcheck(layer, np.random.default_rng(2).normal(size=(B, T, I))) < GRADCHECK_TOL


@pytest.mark.parametrize("kernels", ["numpy", "compiled"])
def test_compiled_kernels_and_numpy_agree_under_every_regulariser(kernels):
    from rnnkit import kernels as kernel_choice

    results = []
    for choice in ("numpy", kernels):
        with kernel_choice.using(choice):
            layer = LSTM(I, 8, dtype=np.float64, rng=4).regularize(**ALL_RATES)
            fixed_noise(layer, np.random.default_rng(6))
            x = np.random.default_rng(8).normal(size=(B, T, I))  # B·H = 24: the whole-sequence loop steps aside
            out, _ = layer.forward(x)
            results.append((out, layer.backward(np.ones_like(out))[0], layer.weight_hh_l0.grad.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer, rates, message", [
    (lambda: RHN(I, H), {"dropout_recurrent": 0.2}, "recurrent dropout is not implemented for RHNStep"),
    (lambda: MogrifierLSTM(I, H), {"weight_drop": 0.2}, "weight drop is not implemented for MogrifierStep"),
    (lambda: GRU(I, H, reset_after=False), {"dropout_recurrent": 0.2}, "reset_after=True"),
    (lambda: MinGRU(I, H, mode="scan"), {"zoneout": 0.2}, "mode='sequential'"),
    (lambda: LSTM(I, H), {"zoneout": (0.1, 0.2, 0.3)}, "one rate or one per state component"),
    (lambda: LSTM(I, H), {"dropout_recurrent": 1.0}, "dropout_recurrent"),
    (lambda: LSTM(I, H), {"weight_drop": "0.1"}, "weight_drop"),
])
def test_regularisers_a_layer_cannot_apply_are_one_line_config_errors(layer, rates, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer().regularize(**rates)


@pytest.mark.parametrize("cls, rates", [(GRU, 0.3), (LSTM, (0.2, 0.6))], ids=["gru", "lstm"])
def test_in_evaluation_zoneout_mixes_the_previous_state_and_the_proposal_by_the_rate(cls, rates):
    """s_t = z ⊙ s_{t−1} + (1 − z) ⊙ s̃_t, with s̃_t one step of the plain cell from s_{t−1}, computed by hand."""
    rng = np.random.default_rng(11)
    layer = cls(I, H, dtype=np.float64, rng=2, zoneout=rates).eval()
    plain = cls(I, H, dtype=np.float64, rng=2).eval()
    z = rates if isinstance(rates, tuple) else (rates,)
    x = rng.normal(size=(B, T, I))
    state = tuple(rng.normal(size=(1, B, H)) for _ in z)
    out, final = layer.forward(x, state if len(state) > 1 else state[0])
    expected = []
    for t in range(T):
        _, proposed = plain.forward(x[:, t:t + 1], state if len(state) > 1 else state[0])
        proposed = proposed if isinstance(proposed, tuple) else (proposed,)
        state = tuple(z_k * s + (1 - z_k) * p for z_k, s, p in zip(z, state, proposed))
        expected.append(state[0][0])
    assert_close(out, np.stack(expected, axis=1), PARITY_TOL[np.float64], "outputs")
    for k, f in enumerate(final if isinstance(final, tuple) else (final,)):
        assert_close(f, state[k], PARITY_TOL[np.float64], f"final state {k}")


def test_evaluation_under_no_grad_applies_the_zoneout_expectation_like_the_recorded_forward():
    rng = np.random.default_rng(9)
    layer = LSTM(I, H, num_layers=2, dtype=np.float64, rng=2, zoneout=(0.2, 0.6)).eval()
    x = rng.normal(size=(B, T, I))
    recorded = layer.forward(x)[0]
    with rnnkit.no_grad():
        np.testing.assert_allclose(layer.forward(x)[0], recorded, rtol=0, atol=1e-15)
    plain = LSTM(I, H, num_layers=2, dtype=np.float64, rng=2).eval()
    assert not np.allclose(plain.forward(x)[0], recorded)


@pytest.mark.parametrize("cls", [LSTM, GRU], ids=lambda c: c.__name__)
def test_training_zoneout_under_no_grad_gives_the_outputs_of_the_recorded_forward_ragged_and_bidirectional(
        cls, monkeypatch):
    """Under no_grad the compiled loop keeps one slot of s̃_t, overwritten at every step, instead of its T-step
    history (no backward reads it): the same masks give the same outputs and final states as a recorded call."""
    from rnnkit.recurrent import runner

    slots = []
    monkeypatch.setattr(runner, "loop_zoneout", lambda rates, steps, *rest: slots.append(steps)
                        or noise_module.loop_zoneout(rates, steps, *rest))
    rng = np.random.default_rng(4)
    x, lengths = rng.normal(size=(B, T, I)), np.array([T, 2, 4])
    calls = []
    for grad in (True, False):
        slots.clear()
        layer = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, rng=2, zoneout=0.3)
        with contextlib.nullcontext() if grad else rnnkit.no_grad():
            calls.append(layer.forward(x, lengths=lengths))
        if rnnkit.kernels.active() is not None:  # the compiled loop ran: T slots recorded, 1 under no_grad
            assert slots == [T if grad else 1] * 4
    (out, final), (out_no_grad, final_no_grad) = calls
    np.testing.assert_array_equal(out_no_grad, out)
    for k, f in enumerate(final if isinstance(final, tuple) else (final,)):
        np.testing.assert_array_equal((final_no_grad if isinstance(final, tuple) else (final_no_grad,))[k], f)


def test_a_run_with_every_regulariser_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path, capsys):
    from conftest import run_cli
    from rnnkit.training import checkpoint

    data = tmp_path / "data.txt"
    data.write_text("the quick brown fox jumps over the lazy dog " * 60, encoding="utf-8")

    def run(out, steps, *extra):
        return ["train", "text", "--data", str(data), "--cell", "lstm", "--hidden-size", "8", "--seq-length", "10",
                "--batch-size", "4", "--dropout-input", "0.2", "--dropout-recurrent", "0.3", "--zoneout", "0.1",
                "--zoneout-cell", "0.4", "--weight-drop", "0.3", "--max-steps", str(steps), "--eval-every", "3",
                "--no-progress", "--out", str(out), *extra]
    assert run_cli(run(tmp_path / "whole", 6), capsys)[0] == 0
    assert run_cli(run(tmp_path / "parts", 3), capsys)[0] == 0
    assert run_cli(run(tmp_path / "parts", 6, "--resume"), capsys)[0] == 0
    whole, parts = checkpoint.load(tmp_path / "whole")[1], checkpoint.load(tmp_path / "parts")[1]
    for name in whole:
        np.testing.assert_array_equal(whole[name], parts[name], err_msg=name)


def test_export_and_to_torch_refuse_zoneout_but_not_the_training_only_dropouts(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(ConfigError, match="zoneout"):
        rnnkit.export_onnx(LSTM(I, H, zoneout=0.1), tmp_path / "z.onnx")
    rnnkit.export_onnx(LSTM(I, H, dropout_recurrent=0.3, weight_drop=0.3), tmp_path / "d.onnx")
    assert (tmp_path / "d.onnx").exists()
    if torch is not None:
        with pytest.raises(ValueError, match="zoneout"):
            rnnkit.to_torch(GRU(I, H, zoneout=0.1))


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_bernoulli_masks_are_true_with_probability_p_from_every_bit_generator(bit_generator):
    """MT19937's raw words hold 32 random bits: read as bytes, half of them would be zeros (p = 0.5 drew 0.75)."""
    rng = np.random.Generator(bit_generator(0))
    for p in (0.001, 0.1, 0.5, 0.9):
        draws = bernoulli(rng, p, (400, 500))
        assert draws.dtype == bool and draws.shape == (400, 500)
        assert abs(draws.mean() - p) < 5 * (p * (1 - p) / draws.size) ** 0.5


def test_bernoulli_masks_follow_the_generators_state():
    rng = np.random.default_rng(0)
    assert not bernoulli(rng, 0.0, (1000,)).any()
    assert bernoulli(rng, 0.3, (0, 4)).shape == (0, 4)
    odd = [bernoulli(np.random.default_rng(3), 0.3, (7, 5)) for _ in range(2)]  # 35 draws: half a 64-bit word left
    assert np.array_equal(odd[0], odd[1])


def test_bernoulli_draws_a_probability_decided_below_its_first_byte():
    """p = 0.001 is 0x00418937 / 2^32: every u with a high byte of 0 (one in 256) is decided by its low 24 bits."""
    draws = bernoulli(np.random.default_rng(1), 0.001, (2000, 1000))
    assert abs(draws.mean() - 0.001) < 5 * (0.001 * 0.999 / draws.size) ** 0.5
    assert bernoulli(np.random.default_rng(1), 1.0, (300, 300)).all()
    half_tie = (128 + 0.5) / 256  # high byte 128, low bits half-way: ties are True half the time
    draws = bernoulli(np.random.default_rng(2), half_tie, (4000, 2000))  # ties all False: off by 11 σ
    assert abs(draws.mean() - half_tie) < 5 * (half_tie * (1 - half_tie) / draws.size) ** 0.5
