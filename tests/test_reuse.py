"""Reuse and inference semantics of the layer contract: weight sharing, saved calls, no_grad, traces."""

import copy
import tracemalloc
import weakref

import numpy as np
import pytest

import rnnkit
from conftest import PARITY_TOL, assert_close, requires_torch, torch
from rnnkit import GRU, LSTM, RHN, RNN, Embedding, Jordan, Linear, LSTMCell, MogrifierLSTM, Sequential, Tanh
from rnnkit.crf import CRF
from rnnkit.errors import UsageError
from rnnkit.recurrent import Workspace

LAYERS = {
    "rnn": lambda: RNN(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=0),
    "lstm": lambda: LSTM(3, 4, proj_size=2, peephole=True, dtype=np.float64, rng=0),
    "gru": lambda: GRU(3, 4, reset_after=False, bidirectional=True, dtype=np.float64, rng=0),
    "jordan": lambda: Jordan(3, 4, 2, dtype=np.float64, rng=0),
    "rhn": lambda: RHN(3, 4, depth=2, coupled=False, dtype=np.float64, rng=0),
    "mogrifier": lambda: MogrifierLSTM(3, 4, rounds=3, rank=2, dtype=np.float64, rng=0),
}


def test_linear_called_twice_then_backward_twice_accumulates_both_calls(rng):
    lin = Linear(3, 2, bias=False, dtype=np.float64, rng=0)
    a, b, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    lin.forward(a)
    lin.forward(b)
    lin.backward(g)
    lin.backward(g)
    assert_close(lin.weight.grad, g.T @ (a + b), 1e-12, "δW of two calls")


@requires_torch
def test_shared_linear_in_a_chain_has_torchs_weight_sharing_gradients(rng):
    ours, act = Linear(4, 4, dtype=np.float64, rng=0), Tanh()
    theirs = torch.nn.Linear(4, 4).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.normal(size=(3, 4))
    y = ours.forward(act.forward(ours.forward(x)))  # y = L(tanh(L(x))), one L
    dy = rng.normal(size=y.shape)
    dx = ours.backward(act.backward(ours.backward(dy)))

    xt = torch.tensor(x, requires_grad=True)
    theirs(torch.tanh(theirs(xt))).backward(torch.tensor(dy))
    assert_close(dx, xt.grad.numpy(), PARITY_TOL[np.float64], "δx")
    for name, p in theirs.named_parameters():
        assert_close(dict(ours.named_parameters())[name].grad, p.grad.numpy(), PARITY_TOL[np.float64], name)


@requires_torch
@pytest.mark.parametrize("ragged", [False, True])
def test_lstm_applied_twice_has_torchs_weight_sharing_gradients(rng, ragged):
    ours = LSTM(4, 4, num_layers=2, dtype=np.float64, rng=0)
    theirs = torch.nn.LSTM(4, 4, num_layers=2, batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.normal(size=(3, 5, 4))
    lengths = np.array([5, 3, 4]) if ragged else None
    y1, s1 = ours.forward(x, lengths=lengths)
    y2, _ = ours.forward(y1, s1, lengths=lengths)
    dy1, dy2 = rng.normal(size=y1.shape), rng.normal(size=y2.shape)
    if ragged:
        for b, n in enumerate(lengths):
            dy1[b, n:] = dy2[b, n:] = 0
    dy1_from_2, ds1 = ours.backward(dy2)
    dx, _ = ours.backward(dy1 + dy1_from_2, ds1)

    def torch_run(inp, state=None):
        if not ragged:
            return theirs(inp, state)
        packed = torch.nn.utils.rnn.pack_padded_sequence(inp, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, st = theirs(packed, state)
        return torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)[0], st

    xt = torch.tensor(x, requires_grad=True)
    t1, st1 = torch_run(xt)
    t2, _ = torch_run(t1, st1)
    ((t1 * torch.tensor(dy1)).sum() + (t2 * torch.tensor(dy2)).sum()).backward()
    assert_close(y2, t2.detach().numpy(), PARITY_TOL[np.float64], "output of the second call")
    assert_close(dx, xt.grad.numpy(), PARITY_TOL[np.float64], "δx")
    for name, p in theirs.named_parameters():
        assert_close(dict(ours.named_parameters())[name].grad, p.grad.numpy(), PARITY_TOL[np.float64], name)


@pytest.mark.parametrize("make", [
    lambda: Linear(3, 2), lambda: Tanh(), lambda: Embedding(5, 3), lambda: Sequential(Linear(3, 3), Tanh()),
    lambda: LSTM(3, 4), lambda: LSTMCell(3, 4), lambda: CRF(3), lambda: rnnkit.Highway(3), lambda: rnnkit.Dropout(0.5),
], ids=["linear", "tanh", "embedding", "sequential", "lstm", "lstm-cell", "crf", "highway", "dropout"])
def test_backward_without_a_matching_forward_is_a_one_line_usage_error(make):
    module = make()
    with pytest.raises(UsageError, match=r"backward\(\) has no matching forward\(\)") as info:
        module.backward(np.zeros((2, 3), np.float32))
    assert "\n" not in str(info.value)


def test_a_second_backward_after_one_forward_is_refused(rng):
    layer = GRU(3, 4, rng=0)
    y, _ = layer.forward(rng.normal(size=(2, 5, 3)).astype(np.float32))
    layer.backward(np.ones_like(y))
    with pytest.raises(UsageError):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_no_grad_saves_nothing_and_gives_the_same_outputs(name, rng):
    layer = LAYERS[name]()
    x, lengths = rng.normal(size=(3, 6, 3)), np.array([6, 2, 4])
    expected, expected_final = layer.forward(x, lengths=lengths)
    layer.discard_saved()
    with rnnkit.no_grad():
        out, final = layer.forward(x, lengths=lengths)
    assert all(m.pending_backwards == 0 for m in layer.modules())
    assert_close(out, expected, 1e-15, "output")
    for got, want in zip(final if isinstance(final, tuple) else (final,),
                         expected_final if isinstance(expected_final, tuple) else (expected_final,)):
        assert_close(got, want, 1e-15, "final state")


@pytest.mark.parametrize(("shape", "bidirectional"), [((2, 5, 3), False), ((2, 5, 3), True), ((1, 5, 3), False),
                                                      ((2, 1, 3), False), ((5, 3), False)])
def test_an_output_is_a_view_without_gradients_and_a_copy_the_backward_does_not_read_with_them(shape, bidirectional,
                                                                                              rng):
    """As torch's batch-first output: without gradients a view of the time-major result (no copy); with them an
    array of its own — at B = 1 and T = 1 too, where the view is C-contiguous already, and unbatched — so that
    writing into it leaves the history the backward reads untouched."""
    layer = LSTM(3, 4, bidirectional=bidirectional, dtype=np.float64, rng=0)
    x = rng.normal(size=shape)
    dy = rng.normal(size=(*shape[:-1], 4 * (1 + bidirectional)))
    with rnnkit.no_grad():
        viewed, _ = layer.forward(x)
    assert not viewed.flags.owndata
    out, _ = layer.forward(x)
    assert_close(viewed, out, 0.0, "output")
    expected = copy.deepcopy(layer)
    expected.forward(x)
    out[...] = np.nan
    assert_close(layer.backward(dy)[0], expected.backward(dy)[0], 0.0, "δx after writing into the output")
    for (name, got), want in zip(layer.named_parameters(), expected.parameters(), strict=True):
        assert_close(got.grad, want.grad, 0.0, f"δ{name} after writing into the output")  # δW_hh reads h_{t−1}


def test_forward_without_backward_under_no_grad_does_not_grow_memory(rng):
    model = Sequential(Linear(8, 16, rng=0), Tanh(), Linear(16, 8, rng=0))
    rnn = LSTM(8, 16, rng=0)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    with rnnkit.no_grad():
        for _ in range(200):  # warm-up: caches of NumPy and the allocator settle
            rnn.forward(model.forward(x))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):
            rnn.forward(model.forward(x))
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 10,000 inference calls"
    assert all(m.pending_backwards == 0 for m in [*model.modules(), rnn])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_cells_keep_no_per_call_arrays(name, rng):
    layer = LAYERS[name]()
    y, _ = layer.forward(rng.normal(size=(2, 4, 3)))
    layer.backward(np.ones_like(y))
    params = {id(p.data) for p in layer.parameters()}
    for cell in layer.cells:
        for attr, value in vars(cell).items():
            assert not isinstance(value, (np.ndarray, Workspace)) or id(value) in params, f"{name}: cell.{attr}"


def test_step_cell_calls_interleave_with_one_runner(rng):
    cell = LSTMCell(3, 4, dtype=np.float64, rng=0)
    x1, x2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    s1 = cell.forward(x1)
    s2 = cell.forward(x2, s1)
    assert cell.pending_backwards == 2
    dx2, ds1 = cell.backward((np.ones((2, 4)), np.zeros((2, 4))))
    dx1, _ = cell.backward(ds1)
    assert cell.pending_backwards == 0 and dx1.shape == dx2.shape == (2, 3)
    assert s2[0].shape == (2, 4)


def test_trace_shows_states_and_gates_in_the_callers_row_order(rng):
    layer = LSTM(3, 4, dtype=np.float64, rng=0)
    x, lengths = rng.normal(size=(3, 5, 3)), np.array([2, 5, 3])
    y, _ = layer.forward(x, lengths=lengths)
    view = layer.trace()
    assert sorted(view.gates) == ["f", "g", "i", "o"] and sorted(view.states) == ["c", "h"]
    for b, n in enumerate(lengths):
        assert_close(view.states["h"][b, :n], y[b, :n], 1e-15, f"row {b}")
    i, f, g, o = (view.gates[k] for k in "ifgo")
    c = view.states["c"]
    assert_close(c[:, 1:2], (f * np.concatenate([np.zeros((3, 1, 4)), c[:, :-1]], 1) + i * g)[:, 1:2], 1e-12, "c")
    assert_close(view.states["h"][1], o[1] * np.tanh(c[1]), 1e-12, "h = o ⊙ tanh(c)")
    with pytest.raises(ValueError):
        view.states["h"][0, 0, 0] = 1.0  # read-only


def test_trace_records_state_gradient_norms_on_request(rng):
    layer = RNN(3, 4, dtype=np.float64, rng=0)
    layer.record_state_grads = True
    y, _ = layer.forward(rng.normal(size=(2, 6, 3)))
    dy = np.zeros_like(y)
    dy[:, -1] = 1.0
    layer.backward(dy)
    norms = layer.trace().state_grad_norms
    assert norms.shape == (6,) and norms[-1] == pytest.approx(np.sqrt(4))  # ‖δh_T‖ = ‖(1, 1, 1, 1)‖
    assert (norms[:-1] > 0).all()


def test_trace_after_no_grad_forward_is_a_usage_error(rng):
    layer = GRU(3, 4, rng=0)
    with rnnkit.no_grad():
        layer.forward(rng.normal(size=(2, 5, 3)).astype(np.float32))
    with pytest.raises(UsageError, match="no recorded forward"):
        layer.trace()


def test_gradcheck_takes_a_plain_function_with_its_backward(rng):
    lin, act = Linear(3, 2, rng=0), Tanh()

    def forward(x):
        return act.forward(lin.forward(x))

    def backward(dy):
        return lin.backward(act.backward(dy))

    assert rnnkit.gradcheck(forward, rng.normal(size=(4, 3)), backward=backward, params=lin) < 1e-6
    assert lin.weight.data.dtype == np.float32 and not lin.weight.grad.any()  # restored afterwards


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_a_training_call_frees_what_its_backward_does_not_read_before_its_peak(name, monkeypatch):
    """Peak memory: the forward drops its cells' forward-only arrays (transposed weights, product buffers) when its
    loop ends; the backward frees δ(output) once its time loops have read it, before the weight sums and δx; and
    δa, written over a compiled loop's gate history, is not kept with the trace after the backward."""
    from rnnkit import kernels
    from rnnkit.recurrent.runner import Recurrence

    layer = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[name](3, 32, num_layers=2, rng=0)
    alive = {}
    through_time, weights = Recurrence.backward_through_time, Recurrence.backward_weights

    def spy_loop(runner, trace, dy, dfinal=None):
        alive[id(runner)] = weakref.ref(dy.base if dy.base is not None else dy)
        return through_time(runner, trace, dy, dfinal)

    def spy_weights(runner, trace, dxp):
        assert alive[id(runner)]() is None, "δ(output) is still alive during the weight sums"
        return weights(runner, trace, dxp)

    monkeypatch.setattr(Recurrence, "backward_through_time", spy_loop)
    monkeypatch.setattr(Recurrence, "backward_weights", spy_weights)
    with kernels.using("compiled"):
        y, _ = layer.forward(np.ones((4, 6, 3), np.float32))
        traces = [row[0] for row in layer._last_call().traces]
        for trace, cell in zip(traces, layer.cells):
            assert all(getattr(trace.ws, field, None) is None for field in cell.forward_only)
        layer.backward(np.ones_like(y))
    assert len(alive) == 2
    for trace in traces:
        assert not trace.ws.gates_overwritten or trace.ws.gates is None
    final = layer.state_at(6)  # the states stay readable
    assert (final[0] if isinstance(final, tuple) else final).shape == (2, 4, 32)
