"""Single-step cells: a hand-written loop of the cell equals the layer, forward and backward; torch parity."""

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, PARITY_TOL, assert_close, requires_torch, torch
from rnnkit import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, gradcheck

PAIRS = {
    "rnn": (RNNCell, RNN, {}),
    "rnn-relu": (RNNCell, RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTMCell, LSTM, {}),
    "gru": (GRUCell, GRU, {}),
    "gru-reset-before": (GRUCell, GRU, {"reset_after": False}),
}


def pack(parts):
    return parts[0] if len(parts) == 1 else tuple(parts)


def parts_of(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("name", PAIRS)
def test_hand_loop_of_the_cell_equals_the_layer(name, rng):
    cell_cls, layer_cls, opts = PAIRS[name]
    cell = cell_cls(3, 4, dtype=np.float64, rng=0, **opts)
    layer = layer_cls(3, 4, dtype=np.float64, rng=1, **opts)
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    x = rng.normal(size=(2, 6, 3))
    y, final = layer.forward(x)
    dy = rng.normal(size=y.shape)
    dx_layer, _ = layer.backward(dy)

    state, outs = None, []
    for t in range(6):
        state = cell.forward(x[:, t], state)
        outs.append(parts_of(state)[0])
    np.testing.assert_allclose(np.stack(outs, axis=1), y, rtol=1e-12)
    for ours, theirs in zip(parts_of(state), parts_of(final)):
        np.testing.assert_allclose(ours, theirs[0], rtol=1e-12)

    dstate = [np.zeros_like(p) for p in parts_of(state)]
    dx = np.zeros_like(x)
    for t in reversed(range(6)):
        dstate[0] = dstate[0] + dy[:, t]
        dx[:, t], dprev = cell.backward(pack(dstate))
        dstate = list(parts_of(dprev))
    np.testing.assert_allclose(dx, dx_layer, rtol=1e-10, atol=1e-13)
    for name_, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(layer, f"{name_}_l0").grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", PAIRS)
def test_cell_gradcheck(name, rng):
    cell_cls, _, opts = PAIRS[name]
    cell = cell_cls(3, 4, rng=0, **opts)
    state = pack([rng.normal(size=(2, s)) for s in cell.cell.state_sizes])
    assert gradcheck(cell, rng.normal(size=(2, 3)), state) < GRADCHECK_TOL


def test_unbatched_step_and_stack_errors(rng):
    cell = LSTMCell(3, 4, dtype=np.float64)
    h, c = cell.forward(rng.normal(size=3))
    assert h.shape == c.shape == (4,)
    dx, (dh, dc) = cell.backward(np.ones(4), np.ones(4))
    assert dx.shape == (3,) and dh.shape == (4,)
    with pytest.raises(RuntimeError, match="no matching forward"):
        cell.backward(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 4\)"):
        cell.forward(rng.normal(size=(2, 3)), (np.zeros((3, 4)), np.zeros((2, 4))))


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["rnn", "rnn-relu", "lstm", "gru"])
def test_cells_match_torch(name, dtype):
    rng = np.random.default_rng(3)
    cell_cls, _, opts = PAIRS[name]
    ours = cell_cls(5, 6, dtype=dtype, rng=rng, **opts)
    for _, p in ours.named_parameters():
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = getattr(torch.nn, cell_cls.__name__)(5, 6, dtype=tdtype, **opts)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.normal(size=(4, 5)).astype(dtype)
    state = [rng.normal(size=(4, 6)).astype(dtype) for _ in ours.cell.state_sizes]
    new = parts_of(ours.forward(x, pack(state)))
    dnew = [rng.normal(size=n.shape).astype(dtype) for n in new]
    dx, dstate = ours.backward(pack(dnew))
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in state]
    tnew = parts_of(theirs(xt, pack(st)))
    sum((a * torch.tensor(d)).sum() for a, d in zip(tnew, dnew)).backward()
    tol = PARITY_TOL[dtype]
    for a, b in zip(new, tnew):
        assert_close(a, b.detach().numpy(), tol, "new state")
    assert_close(dx, xt.grad.numpy(), tol, "dx")
    for a, b in zip(parts_of(dstate), st):
        assert_close(a, b.grad.numpy(), tol, "dstate")
    tgrads = dict(theirs.named_parameters())
    for n, p in ours.named_parameters():
        assert_close(p.grad, tgrads[n].grad.numpy(), tol, n)
