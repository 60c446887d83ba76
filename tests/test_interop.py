"""from_torch / to_torch: conversions are exact state-dict copies, and a torch-trained model runs identically."""

import subprocess
import sys

import pytest

from conftest import assert_close, requires_torch, torch
from rnnkit import GRU, LSTM, Jordan, from_torch, to_torch


def test_importing_rnnkit_never_imports_torch():
    code = "import sys, rnnkit; rnnkit.RNN(2, 3); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@requires_torch
@pytest.mark.parametrize("make", [
    lambda: torch.nn.RNN(3, 4, num_layers=2, bidirectional=True, nonlinearity="relu", batch_first=True),
    lambda: torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True, batch_first=True),
    lambda: torch.nn.GRU(3, 4, num_layers=3, dropout=0.2, dtype=torch.float64),
    lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu"),
    lambda: torch.nn.LSTMCell(3, 4, dtype=torch.float64),
    lambda: torch.nn.GRUCell(3, 4, bias=False),
    lambda: torch.nn.Linear(3, 4),
    lambda: torch.nn.Embedding(7, 3, padding_idx=0),
], ids=["rnn", "lstm", "gru", "rnncell", "lstmcell", "grucell", "linear", "embedding"])
def test_round_trip_reproduces_the_state_dict_exactly(make):
    module = make()
    back = to_torch(from_torch(module))
    assert type(back) is type(module)
    original, returned = module.state_dict(), back.state_dict()
    assert list(original) == list(returned)
    for name, value in original.items():
        assert value.dtype == returned[name].dtype
        assert torch.equal(value, returned[name]), name


@requires_torch
def test_a_model_trained_in_torch_gives_the_same_outputs():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 8, batch_first=True)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.05)
    x = torch.rand(64, 10, 2)
    target = x[:, :, 0].sum(dim=1, keepdim=True)
    for _ in range(30):
        opt.zero_grad()
        loss = ((head(lstm(x)[0][:, -1]) - target) ** 2).mean()
        loss.backward()
        opt.step()
    ours, our_head = from_torch(lstm), from_torch(head)
    y, (h, c) = ours.forward(x.numpy())
    ty, (th, tc) = lstm(x)
    assert_close(y, ty.detach().numpy(), 1e-5)
    assert_close(c, tc.detach().numpy(), 1e-5)
    assert_close(our_head.forward(y[:, -1]), head(ty[:, -1]).detach().numpy(), 1e-5)


@requires_torch
@pytest.mark.parametrize("layer, message", [
    (LSTM(3, 4, peephole=True), "peephole"),
    (GRU(3, 4, reset_after=False), "reset_after"),
    (Jordan(3, 4, 2), "supports"),
])
def test_layers_without_a_torch_counterpart_are_refused(layer, message):
    with pytest.raises(ValueError, match=message):
        to_torch(layer)


@requires_torch
def test_unsupported_torch_module():
    with pytest.raises(ValueError, match="Conv1d"):
        from_torch(torch.nn.Conv1d(2, 2, 3))
