"""RNN, LSTM and GRU against torch.nn: all weights and biases random, ragged batches through
pack_padded_sequence; outputs, final states, input/state gradients and every parameter gradient."""

import numpy as np
import pytest

from conftest import PARITY_TOL, assert_close, requires_torch, torch
from rnnkit import GRU, LSTM, RNN

pytestmark = requires_torch

# (batch, steps, input, hidden, layers, bidirectional, ragged, extra options)
CASES = {
    "rnn": [
        (1, 1, 1, 1, 1, False, False, {}),
        (3, 7, 4, 5, 1, False, False, {"nonlinearity": "relu"}),
        (4, 6, 3, 8, 2, True, False, {}),
        (2, 9, 5, 3, 3, True, False, {"nonlinearity": "relu"}),
        (5, 8, 2, 6, 3, False, True, {}),
        (4, 7, 3, 4, 2, True, True, {"nonlinearity": "relu"}),
    ],
    "lstm": [
        (1, 1, 1, 1, 1, False, False, {}),
        (3, 7, 4, 5, 1, False, False, {}),
        (4, 6, 3, 8, 2, True, False, {}),
        (2, 9, 5, 6, 3, True, True, {}),
        (3, 5, 4, 7, 2, False, False, {"proj_size": 3}),
        (5, 8, 2, 6, 3, True, True, {"proj_size": 4}),
    ],
    "gru": [
        (1, 1, 1, 1, 1, False, False, {}),
        (3, 7, 4, 5, 1, False, False, {}),
        (4, 6, 3, 8, 2, True, False, {}),
        (2, 9, 5, 3, 3, True, False, {}),
        (5, 8, 2, 6, 3, False, True, {}),
        (4, 7, 3, 4, 2, True, True, {}),
    ],
}
OURS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
THEIRS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run_torch(module, x, state0, dy, dstate, lengths):
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state0)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                      enforce_sorted=False)
    y, final = module(inp, st if len(st) > 1 else st[0])
    if lengths is not None:
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
    final = as_tuple(final)
    loss = (y * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(final, dstate))
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return (y.detach().numpy(), tuple(f.detach().numpy() for f in final), xt.grad.numpy(),
            tuple(s.grad.numpy() for s in st), grads)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, case", [(k, c) for k, cases in CASES.items() for c in cases], ids=str)
def test_matches_torch(kind, case, dtype):
    batch, steps, inp, hidden, layers, bidir, ragged, extra = case
    rng = np.random.default_rng(sum(case[:5]))
    ours = OURS[kind](inp, hidden, num_layers=layers, bidirectional=bidir, dtype=dtype, rng=rng, **extra)
    theirs = getattr(torch.nn, THEIRS[kind])(inp, hidden, num_layers=layers, bidirectional=bidir, batch_first=True,
                                             dtype=torch.float64 if dtype == np.float64 else torch.float32, **extra)
    for _, p in ours.named_parameters():  # every weight and bias random, wider than the default init
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    theirs.load_state_dict({n: torch.tensor(v) for n, v in ours.state_dict().items()})
    rows = ours.num_directions * layers
    x = rng.normal(size=(batch, steps, inp)).astype(dtype)
    state0 = tuple(rng.normal(size=(rows, batch, s)).astype(dtype) for s in ours.state_sizes)
    lengths = None
    if ragged:
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[0] = steps
    y, final = ours.forward(x, state0 if len(state0) > 1 else state0[0], lengths=lengths)
    final = as_tuple(final)
    dy = rng.normal(size=y.shape).astype(dtype)
    dstate = tuple(rng.normal(size=f.shape).astype(dtype) for f in final)
    dx, dstate0 = ours.backward(dy, dstate if len(dstate) > 1 else dstate[0])
    ty, tfinal, tdx, tdstate0, tgrads = run_torch(theirs, x, state0, dy, dstate, lengths)
    tol = PARITY_TOL[dtype]
    assert_close(y, ty, tol, "output")
    for ours_s, theirs_s in zip(final, tfinal):
        assert_close(ours_s, theirs_s, tol, "final state")
    assert_close(dx, tdx, tol, "dx")
    for ours_d, theirs_d in zip(as_tuple(dstate0), tdstate0):
        assert_close(ours_d, theirs_d, tol, "initial state gradient")
    assert list(tgrads) == [n for n, _ in ours.named_parameters()]
    for name, p in ours.named_parameters():
        assert_close(p.grad, tgrads[name], tol, name)


def test_state_dicts_are_interchangeable():
    theirs = torch.nn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    ours = RNN(3, 4, num_layers=2, bidirectional=True)
    ours.load_state_dict({n: v.detach().numpy() for n, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    y, h = ours.forward(x)
    ty, th = theirs(torch.tensor(x))
    assert_close(y, ty.detach().numpy(), 1e-5)
    assert_close(h, th.detach().numpy(), 1e-5)
