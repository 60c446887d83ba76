"""`rnnkit.RNN` against `torch.nn.RNN`: all weights and biases random, outputs, states and every gradient."""

import numpy as np
import pytest

from conftest import PARITY_TOL, assert_close, requires_torch, torch
from rnnkit import RNN

pytestmark = requires_torch

CASES = [  # (batch, steps, input, hidden, layers, bidirectional, nonlinearity, ragged)
    (1, 1, 1, 1, 1, False, "tanh", False),
    (3, 7, 4, 5, 1, False, "relu", False),
    (4, 6, 3, 8, 2, True, "tanh", False),
    (2, 9, 5, 3, 3, True, "relu", False),
    (5, 8, 2, 6, 3, False, "tanh", True),
    (4, 7, 3, 4, 2, True, "tanh", True),
]


def run_torch(module, x, h0, dy, dh, lengths):
    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h0, requires_grad=True)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                      enforce_sorted=False)
    y, hn = module(inp, ht)
    if lengths is not None:
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
    ((y * torch.tensor(dy)).sum() + (hn * torch.tensor(dh)).sum()).backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return y.detach().numpy(), hn.detach().numpy(), xt.grad.numpy(), ht.grad.numpy(), grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_rnn_matches_torch(case, dtype):
    batch, steps, inp, hidden, layers, bidir, nonlin, ragged = case
    rng = np.random.default_rng(sum(case[:5]))
    ours = RNN(inp, hidden, num_layers=layers, bidirectional=bidir, nonlinearity=nonlin, dtype=dtype, rng=rng)
    theirs = torch.nn.RNN(inp, hidden, num_layers=layers, bidirectional=bidir, nonlinearity=nonlin,
                          batch_first=True, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    for _, p in ours.named_parameters():  # random biases too: init draws all of them from U(±1/√H)
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    theirs.load_state_dict({n: torch.tensor(v) for n, v in ours.state_dict().items()})
    d = ours.num_directions * layers
    x = rng.normal(size=(batch, steps, inp)).astype(dtype)
    h0 = rng.normal(size=(d, batch, hidden)).astype(dtype)
    lengths = rng.integers(1, steps + 1, size=batch) if ragged else None
    if ragged:
        lengths[0] = steps
    y, hn = ours.forward(x, h0, lengths=lengths)
    dy = rng.normal(size=y.shape).astype(dtype)
    dh = rng.normal(size=hn.shape).astype(dtype)
    dx, dh0 = ours.backward(dy, dh)
    ty, thn, tdx, tdh0, tgrads = run_torch(theirs, x, h0, dy, dh, lengths)
    tol = PARITY_TOL[dtype]
    assert_close(y, ty, tol, "output")
    assert_close(hn, thn, tol, "h_n")
    assert_close(dx, tdx, tol, "dx")
    assert_close(dh0, tdh0, tol, "dh0")
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
