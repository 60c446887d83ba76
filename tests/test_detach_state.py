"""`detach_state`: Elman's (1990) training, where every step reads the previous state as a constant input.

Specification: the forward pass is unchanged; the gradient equals PyTorch's for a step loop that feeds
``h.detach()`` (and ``c.detach()``) into each step; no gradient reaches the initial state; ragged batches give,
row by row, the gradient of each sequence alone.
"""

import numpy as np
import pytest

from conftest import PARITY_TOL, assert_close, requires_torch, torch
from rnnkit import GRU, LSTM, RNN
from rnnkit.models.sequence import ModelConfig, SequenceModel

OURS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
TORCH_CELLS = {"rnn": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}


def make(kind, inp, hidden, rng, dtype=np.float64, bidirectional=False):
    layer = OURS[kind](inp, hidden, bidirectional=bidirectional, dtype=dtype, rng=rng)
    for _, p in layer.named_parameters():
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


def detached_torch_loop(kind, layer, x, dy, suffix, reverse):
    """One direction of ``layer`` as a torch cell loop with the state detached before every step."""
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    cell = getattr(torch.nn, TORCH_CELLS[kind])(x.shape[2], layer.hidden_size, dtype=dtype)
    cell.load_state_dict({name: torch.tensor(getattr(layer, name + "_l0" + suffix).data)
                          for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    xt = torch.tensor(x, requires_grad=True)
    h = torch.zeros(x.shape[0], layer.hidden_size, dtype=dtype)
    state = (h, h.clone()) if kind == "lstm" else h
    outputs = {}
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        detached = tuple(s.detach() for s in state) if kind == "lstm" else state.detach()
        state = cell(xt[:, t], detached)
        outputs[t] = state[0] if kind == "lstm" else state
    y = torch.stack([outputs[t] for t in range(x.shape[1])], dim=1)
    (y * torch.tensor(dy)).sum().backward()
    grads = {name + "_l0" + suffix: p.grad.numpy() for name, p in cell.named_parameters()}
    return y.detach().numpy(), xt.grad.numpy(), grads


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind, batch, steps, inp, hidden", [("rnn", 3, 7, 4, 5), ("lstm", 2, 6, 3, 4),
                                                            ("gru", 4, 5, 2, 3)])
def test_gradient_equals_torch_with_detached_state(kind, batch, steps, inp, hidden, bidirectional, dtype):
    rng = np.random.default_rng(steps * 10 + hidden)
    layer = make(kind, inp, hidden, rng, dtype, bidirectional)
    layer.detach_state = True
    x = rng.normal(size=(batch, steps, inp)).astype(dtype)
    y, _ = layer.forward(x)
    dy = rng.normal(size=y.shape).astype(dtype)
    layer.zero_grad()
    dx, _ = layer.backward(dy)
    tol = PARITY_TOL[dtype]
    expected_dx = np.zeros_like(x, dtype=np.float64)
    for direction, suffix in enumerate(["", "_reverse"][:layer.num_directions]):
        part = slice(direction * hidden, (direction + 1) * hidden)
        y_t, dx_t, grads = detached_torch_loop(kind, layer, x, dy[:, :, part], suffix, reverse=bool(direction))
        assert_close(y[:, :, part], y_t, tol, f"output {suffix}")
        expected_dx += dx_t
        for name, g in grads.items():
            assert_close(getattr(layer, name).grad, g, tol, name)
    assert_close(dx, expected_dx, tol, "input gradient")


@pytest.mark.parametrize("kind", sorted(OURS))
def test_forward_unchanged_and_no_gradient_reaches_the_initial_state(kind, rng):
    layer = make(kind, 3, 4, rng)
    x = rng.normal(size=(2, 6, 3))
    state0 = tuple(rng.normal(size=(1, 2, s)) for s in layer.state_sizes)
    state0 = state0 if kind == "lstm" else state0[0]
    y_full, _ = layer.forward(x, state0)
    layer.detach_state = True
    y_detached, _ = layer.forward(x, state0)
    np.testing.assert_array_equal(y_detached, y_full)
    _, dstate0 = layer.backward(np.ones_like(y_detached))
    for part in (dstate0 if kind == "lstm" else (dstate0,)):
        np.testing.assert_array_equal(part, 0.0)


@pytest.mark.parametrize("kind", sorted(OURS))
def test_ragged_batch_gives_each_sequence_its_own_gradient(kind, rng):
    layer = make(kind, 3, 4, rng)
    layer.detach_state = True
    x = rng.normal(size=(3, 7, 3))
    lengths = np.array([4, 7, 2])
    dy = rng.normal(size=(3, 7, 4))
    layer.zero_grad()
    layer.forward(x, lengths=lengths)
    dx, _ = layer.backward(dy)
    batched = {n: p.grad.copy() for n, p in layer.named_parameters()}
    alone = {n: np.zeros_like(p.data) for n, p in layer.named_parameters()}
    for b, n in enumerate(lengths):
        layer.zero_grad()
        layer.forward(x[b:b + 1, :n])
        dx_b, _ = layer.backward(dy[b:b + 1, :n])
        np.testing.assert_allclose(dx[b, :n], dx_b[0], atol=1e-12)
        np.testing.assert_array_equal(dx[b, n:], 0.0)
        for name, p in layer.named_parameters():
            alone[name] += p.grad
    for name in batched:
        np.testing.assert_allclose(batched[name], alone[name], atol=1e-12, err_msg=name)


def test_model_config_sets_it_and_full_bptt_differs(rng):
    config = ModelConfig(3, 2, cell="rnn", hidden_size=4, dtype="float64", detach_state=True)
    model = SequenceModel(config, rng=np.random.default_rng(0))
    assert model.rnn.detach_state
    x = rng.normal(size=(2, 5, 3))
    grads = []
    for detach in (True, False):
        model.rnn.detach_state = detach
        model.zero_grad()
        out, _ = model.forward(x)
        model.backward(np.ones_like(out))
        grads.append(model.rnn.weight_hh_l0.grad.copy())
    assert not np.allclose(grads[0], grads[1])  # full BPTT also carries errors back through time
    assert ModelConfig.from_dict(config.to_dict()).detach_state
