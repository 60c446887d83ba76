"""The lecture decks' conventions (issue 27's walls 1–7): each test names the wall it keeps down."""

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL, PARITY_TOL, requires_torch, torch
from rnnkit import (
    GRU,
    RNN,
    BCELoss,
    BCEWithLogitsLoss,
    Elman,
    Highway,
    Jordan,
    LSTMNet,
    MSELoss,
    TimeSeries,
    gradcheck,
    kernels,
)
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.sequences import pad_sequences


# -- wall 1: the Elman composite keeps its state; unknown options are refused ----------------------------------
def test_elman_memorize_starts_the_next_forward_from_the_last_hidden_state(rng):
    net = Elman(3, 4, 2, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 6, 3))
    whole, _ = net.forward(x)
    net.memorize = True
    first, _ = net.forward(x[:, :3])
    second, _ = net.forward(x[:, 3:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-12)
    assert net.stateful and net.rnn.stateful


def test_elman_takes_the_recurrent_layers_options():
    net = Elman(3, 4, 2, num_layers=2, bidirectional=True, stateful=True, dropout=0.1)
    y, h_n = net.forward(np.zeros((2, 5, 3)))
    assert y.shape == (2, 5, 2) and h_n.shape == (4, 2, 4) and net.memorize
    net.detach_state = True
    assert net.rnn.detach_state


@pytest.mark.parametrize("name", ["memorise", "statefull", "Stateful"])
def test_setting_a_name_that_is_not_an_option_is_an_error(name):
    with pytest.raises(ConfigError, match=f"no option '{name}'"):
        setattr(Elman(3, 4, 2), name, True)


def test_options_and_private_names_can_still_be_set():
    net = LSTMNet(3, 4, 2)
    net.memorize, net.return_sequences, net._note = True, False, "private"
    assert net.stateful and not net.return_sequences


def test_elman_outputs_are_zero_past_each_sequences_end(rng):
    net = Elman(3, 4, 2, dtype=np.float64, rng=0)
    x, lengths = rng.normal(size=(3, 5, 3)), np.array([5, 2, 4])
    y, _ = net.forward(x, lengths=lengths)
    assert np.all(y[1, 2:] == 0) and np.all(y[2, 4:] == 0) and np.all(y[1, :2] != 0)
    assert gradcheck(net, x, lengths=lengths) < GRADCHECK_TOL


def test_elman_return_sequences_false_gives_each_sequences_last_output(rng):
    net = Elman(3, 4, 2, dtype=np.float64, rng=0)
    x, lengths = rng.normal(size=(3, 5, 3)), np.array([5, 2, 4])
    full, _ = net.forward(x, lengths=lengths)
    net.return_sequences = False
    last, _ = net.forward(x, lengths=lengths)
    np.testing.assert_array_equal(last, full[np.arange(3), lengths - 1])
    assert gradcheck(net, x, lengths=lengths) < GRADCHECK_TOL


def test_lstm_net_is_an_lstm_with_a_trainable_output_layer(rng):
    net = LSTMNet(3, 4, 5, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 6, 3))
    y, (h_n, c_n) = net.forward(x)
    h, _ = net.rnn.forward(x)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-(h @ net.W_hy + net.b_y))), rtol=1e-12)
    assert y.shape == (2, 6, 5) and gradcheck(net, x) < GRADCHECK_TOL


# -- wall 2: the lecture's GRU (z takes the candidate; reset before the matmul) ---------------------------------
def _lecture_gru_in_torch(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
    """Deck 001's GRU, transcribed with torch autograd: h_t = (1 − z) ⊙ h_{t−1} + z ⊙ o_t."""
    hs, outs = h.shape[-1], []
    for t in range(x.shape[1]):
        xp, hp = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = torch.sigmoid(xp[:, :hs] + hp[:, :hs])
        z = torch.sigmoid(xp[:, hs:2 * hs] + hp[:, hs:2 * hs])
        inner = r * hp[:, 2 * hs:] if reset_after else (r * h) @ w_hh[2 * hs:].T + b_hh[2 * hs:]
        o = torch.tanh(xp[:, 2 * hs:] + inner)
        h = (1 - z) * h + z * o
        outs.append(h)
    return torch.stack(outs, 1)


@requires_torch
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("kernel_choice", ["numpy", "compiled"])
def test_gru_update_gate_lecture_equals_a_torch_transcription_of_the_lecture(rng, reset_after, kernel_choice):
    if kernel_choice == "compiled" and kernels.active() is None:
        pytest.skip("no compiled kernels here")
    with kernels.using(kernel_choice):
        gru = GRU(3, 4, reset_after=reset_after, update_gate="lecture", dtype=np.float64, rng=0)
        x, h0 = rng.normal(size=(2, 6, 3)), rng.normal(size=(1, 2, 4))
        y, _ = gru.forward(x, h0)
        dy = rng.normal(size=y.shape)
        gru.backward(dy)
    tx, th = torch.tensor(x, requires_grad=True), torch.tensor(h0[0])
    params = [torch.tensor(p.data, requires_grad=True) for _, p in gru.named_parameters()]
    ty = _lecture_gru_in_torch(tx, th, *params, reset_after)
    (ty * torch.tensor(dy)).sum().backward()
    tol = PARITY_TOL[np.float64]
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=tol)
    for (name, p), tp in zip(gru.named_parameters(), params):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), atol=tol, err_msg=name)


def test_gru_update_gate_lecture_passes_gradcheck_stacked_and_ragged(rng):
    gru = GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False, update_gate="lecture", dtype=np.float64,
              rng=0)
    assert gradcheck(gru, rng.normal(size=(3, 5, 3)), lengths=np.array([5, 2, 4])) < GRADCHECK_TOL


def test_gru_default_update_gate_is_pytorchs():
    assert GRU(3, 4).update_gate == "pytorch"
    with pytest.raises(ConfigError, match="update_gate"):
        GRU(3, 4, update_gate="keras")


# -- wall 3: the exercise interface — see tests/test_exercise_interface.py ----------------------------------------


# -- wall 4: the lectures' losses ---------------------------------------------------------------------------------
def test_mse_half_sum_is_the_lectures_e_and_its_gradient_is_y_minus_d():
    y, d = np.array([[0.2, 0.9], [0.5, 0.1]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    loss = MSELoss(reduction="sum", half=True)
    assert loss(y, d) == pytest.approx(0.5 * (0.04 + 0.01 + 0.25 + 0.01))
    np.testing.assert_allclose(loss.backward(), y - d)


def test_bce_on_probabilities_summed_over_time_is_the_ner_decks_l():
    """Deck 004: L = Σ_t L⟨t⟩, L⟨t⟩ = −y log ŷ − (1 − y) log(1 − ŷ)."""
    y_hat, y = np.array([[0.9, 0.2, 0.7]]), np.array([[1, 0, 1]])
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.7))
    loss = BCELoss(reduction="sum")
    assert loss(y_hat, y) == pytest.approx(expected, rel=1e-12)
    if torch is None:
        pytest.skip("torch is not installed (the sum over time is checked above)")
    torch_loss = torch.nn.functional.binary_cross_entropy(torch.tensor(y_hat), torch.tensor(y, dtype=torch.float64),
                                                          reduction="sum")
    assert loss(y_hat, y) == pytest.approx(torch_loss.item(), rel=1e-12)


def test_bce_on_probabilities_refuses_values_outside_zero_one():
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        BCELoss()(np.array([1.5]), np.array([1.0]))


def test_fit_refuses_a_sigmoid_output_with_bce_on_logits(rng):
    x, y = rng.normal(size=(4, 3, 2)), (rng.random((4, 3, 1)) > 0.5).astype(float)
    with pytest.raises(ConfigError, match="applied twice"):
        rnnkit.fit(Elman(2, 3, 1), x, y, loss="bce", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="applied twice"):
        rnnkit.fit(rnnkit.Sequential(rnnkit.Linear(2, 1), rnnkit.Sigmoid()), x, y, loss="bce", epochs=1,
                   progress=False)
    assert isinstance(rnnkit.fit(Elman(2, 3, 1, output_activation="identity"), x, y, loss="bce", epochs=1,
                                 progress=False), list)
    assert np.isfinite(BCEWithLogitsLoss()(np.zeros((1, 1)), np.ones((1, 1))))


# -- wall 5: Highway with a linear transform ---------------------------------------------------------------------
def test_highway_identity_is_the_lectures_linear_form(rng):
    hw = Highway(3, activation="identity", dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 3))
    w_h, w_t, b_h, b_t = hw.weight.data[:3], hw.weight.data[3:], hw.bias.data[:3], hw.bias.data[3:]
    t = 1 / (1 + np.exp(-(x @ w_t.T + b_t)))
    np.testing.assert_allclose(hw.forward(x), (x @ w_h.T + b_h) * t + x * (1 - t), rtol=1e-12)
    assert gradcheck(hw, x) < GRADCHECK_TOL


# -- wall 6: TimeSeries in and out; pad_sequences refuses it ------------------------------------------------------
def test_a_time_series_goes_in_and_comes_out_of_the_composites(rng):
    net = Elman(3, 4, 2, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 5, 3))
    series = TimeSeries(x[:, t] for t in range(5))
    y_series, _ = net.forward(series)
    y, _ = net.forward(x)
    assert isinstance(y_series, TimeSeries) and len(y_series) == 5
    np.testing.assert_array_equal(y_series.stack(), y)
    dx, _ = net.backward(np.ones_like(y))  # the last forward's (the array's)
    dx_series, _ = net.backward(TimeSeries.of(np.ones_like(y)))
    assert isinstance(dx_series, TimeSeries) and dx_series[0].shape == (2, 3)
    np.testing.assert_array_equal(dx_series.stack(), dx)


def test_pad_sequences_refuses_a_time_ordered_list_in_one_line():
    with pytest.raises(ShapeError, match="TimeSeries") as info:
        pad_sequences(TimeSeries([np.zeros((2, 3))] * 4))
    assert "\n" not in str(info.value)


# -- wall 7: the smaller gaps ------------------------------------------------------------------------------------
def test_rnn_sigmoid_hidden_activation(rng):
    rnn = RNN(3, 4, nonlinearity="sigmoid", dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 5, 3))
    out, _ = rnn.forward(x)
    h = np.zeros((2, 4))
    for t in range(5):
        a = x[:, t] @ rnn.weight_ih_l0.data.T + rnn.bias_ih_l0.data + h @ rnn.weight_hh_l0.data.T + rnn.bias_hh_l0.data
        h = 1 / (1 + np.exp(-a))
        np.testing.assert_allclose(out[:, t], h, rtol=1e-12)
    assert gradcheck(rnn, x) < GRADCHECK_TOL


def test_jordan_softmax_output_sums_to_one_and_passes_gradcheck(rng):
    net = Jordan(3, 4, 3, output_activation="softmax", dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 5, 3))
    y, _ = net.forward(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    assert gradcheck(net, x) < GRADCHECK_TOL


def test_fit_trains_array_data_continuously_carrying_the_state(rng):
    x = rng.normal(size=(2, 4, 1))
    y = np.roll(x, 1, axis=1)
    net = Elman(1, 3, 1, output_activation="identity", dtype=np.float64, rng=0)
    history = rnnkit.fit(net, x, y, loss="mse", epochs=2, batch_size=2, shuffle=False, reset_state="never",
                         progress=False)
    assert history and np.isfinite(history[-1]["train_loss"])
    with pytest.raises(ConfigError, match="shuffle=False"):
        rnnkit.fit(net, x, y, loss="mse", epochs=1, reset_state="never", progress=False)
