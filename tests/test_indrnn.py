"""IndRNN: gradients, the equations by hand and in torch autograd, compiled kernels, and the |u| ≤ γ constraint."""

import json

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL, PARITY_TOL, assert_close, requires_torch, run_cli, torch
from rnnkit import IndRNN, Linear, Sequential, gradcheck, kernels
from rnnkit.errors import ConfigError
from rnnkit.recurrent import IndRNNStep
from rnnkit.training.checkpoint import load_model


def indrnn64(*args, **kwargs):
    return IndRNN(*args, dtype=np.float64, rng=0, **kwargs)


def random_state(layer, batch, rng):
    return rng.normal(size=(layer.num_directions * layer.num_layers, batch, layer.hidden_size))


CONFIGS = {
    "relu": {},
    "tanh": {"nonlinearity": "tanh"},
    "two-layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "two-layers-bidirectional-tanh": {"num_layers": 2, "bidirectional": True, "nonlinearity": "tanh"},
    "no-bias": {"bias": False},
    "recurrent-max": {"recurrent_max": 0.5},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_gradcheck_with_initial_state(name, rng):
    layer = indrnn64(3, 4, **CONFIGS[name])
    assert gradcheck(layer, rng.normal(size=(2, 5, 3)), random_state(layer, 2, rng)) < GRADCHECK_TOL


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck_with_lengths_stacked(bidirectional, rng):
    layer = indrnn64(3, 4, num_layers=2, bidirectional=bidirectional)
    x = rng.normal(size=(3, 5, 3))
    assert gradcheck(layer, x, random_state(layer, 3, rng), lengths=np.array([2, 5, 1])) < GRADCHECK_TOL


def test_gradcheck_stateful_second_chunk(rng):
    layer = indrnn64(3, 4, stateful=True)
    layer.forward(rng.normal(size=(2, 3, 3)))
    assert gradcheck(layer, rng.normal(size=(2, 4, 3))) < GRADCHECK_TOL


def test_parameters_have_pytorch_names_and_u_is_a_vector():
    layer = IndRNN(3, 4, num_layers=2, bidirectional=True)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (4, 3), "weight_hh_l0": (4,), "bias_ih_l0": (4,),
        "weight_ih_l0_reverse": (4, 3), "weight_hh_l0_reverse": (4,), "bias_ih_l0_reverse": (4,),
        "weight_ih_l1": (4, 8), "weight_hh_l1": (4,), "bias_ih_l1": (4,),
        "weight_ih_l1_reverse": (4, 8), "weight_hh_l1_reverse": (4,), "bias_ih_l1_reverse": (4,),
    }
    assert IndRNN.parameter_count(3, 4, 2, True) == layer.num_parameters()
    y, h = layer.forward(np.zeros((5, 7, 3), np.float32))
    assert y.shape == (5, 7, 8) and h.shape == (4, 5, 4) and y.dtype == np.float32


def test_recurrent_weights_start_in_zero_one_and_the_others_within_one_over_sqrt_hidden():
    layer = IndRNN(10, 64, rng=0)
    u = layer.weight_hh_l0.data
    assert u.min() >= 0 and u.max() <= 1 and u.max() > 0.9
    bound = 1 / np.sqrt(64)
    assert np.abs(layer.weight_ih_l0.data).max() <= bound and np.abs(layer.bias_ih_l0.data).max() <= bound


def test_equals_the_loop_and_its_backward_written_out(rng):
    layer = indrnn64(3, 4)
    x, h0 = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 4))
    dy, dh_n = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 4))
    y, h_n = layer.forward(x, h0[None])
    dx, dh0 = layer.backward(dy, dh_n[None])
    w, u, b = layer.weight_ih_l0.data, layer.weight_hh_l0.data, layer.bias_ih_l0.data
    hs = [h0]
    for t in range(6):  # h_t = relu(x_t W_ihᵀ + b_ih + u ⊙ h_{t-1})
        hs.append(np.maximum(x[:, t] @ w.T + b + u * hs[-1], 0))
        np.testing.assert_allclose(y[:, t], hs[-1], rtol=1e-13)
    np.testing.assert_allclose(h_n[0], hs[-1], rtol=1e-13)
    d_w, d_u, d_b, d_x, d_h = np.zeros_like(w), np.zeros_like(u), np.zeros_like(b), np.zeros_like(x), dh_n.copy()
    for t in reversed(range(6)):
        d_h = d_h + dy[:, t]
        d_a = d_h * (hs[t + 1] > 0)
        d_w += d_a.T @ x[:, t]
        d_u += (d_a * hs[t]).sum(axis=0)
        d_b += d_a.sum(axis=0)
        d_x[:, t] = d_a @ w
        d_h = d_a * u
    for got, want in ((dx, d_x), (dh0[0], d_h), (layer.weight_ih_l0.grad, d_w), (layer.weight_hh_l0.grad, d_u),
                      (layer.bias_ih_l0.grad, d_b)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


# -- torch autograd of the equations: the oracle for outputs and every gradient ----------------------------------
def torch_layer(step, params, x, h0, lengths, num_layers, directions):
    """(output (B, T, D·H), h_n) of a stacked, bidirectional layer in torch: each row alone over its own length,
    the reverse direction from its last valid step; ``step(p, x_t, h)`` with p the parameters without suffix."""
    batch, steps = x.shape[:2]
    rows, finals = [x[b, :lengths[b]] for b in range(batch)], {}
    for layer in range(num_layers):
        new_rows = []
        for b, row in enumerate(rows):
            outs = []
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                p = {n[:-len(suffix)]: v for n, v in params.items() if n.endswith(suffix)}
                h, ys = h0[layer * directions + d, b], [None] * len(row)
                for t in (reversed(range(len(row))) if d else range(len(row))):
                    h = ys[t] = step(p, row[t], h)
                outs.append(torch.stack(ys))
                finals[layer * directions + d, b] = h
            new_rows.append(torch.cat(outs, dim=-1))
        rows = new_rows
    y = torch.stack([torch.nn.functional.pad(r, (0, 0, 0, steps - r.shape[0])) for r in rows])
    h_n = torch.stack([torch.stack([finals[k, b] for b in range(batch)]) for k in range(num_layers * directions)])
    return y, h_n


def torch_oracle(step, layer, x, h0, lengths, dy, dh_n):
    """Outputs and gradients (x, h0, every parameter by name) of L = Σ dy ⊙ y + Σ dh_n ⊙ h_n by torch autograd."""
    params = {n: torch.tensor(p.data, requires_grad=True) for n, p in layer.named_parameters()}
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    lengths = [x.shape[1]] * x.shape[0] if lengths is None else list(lengths)
    y, h_n = torch_layer(step, params, xt, h0t, lengths, layer.num_layers, layer.num_directions)
    ((y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dh_n)).sum()).backward()
    grads = {n: p.grad.numpy() for n, p in params.items()}
    return y.detach().numpy(), h_n.detach().numpy(), xt.grad.numpy(), h0t.grad.numpy(), grads


def compare_with_torch(step, layer, rng, lengths=None, batch=3, steps=6):
    """The largest relative difference between the layer and the torch transcription, over every output and
    gradient (parameters listed in the layer's order)."""
    x = rng.normal(size=(batch, steps, layer.input_size))
    h0 = random_state(layer, batch, rng)
    y, h_n = layer.forward(x, h0, lengths=lengths)
    dy, dh_n = rng.normal(size=y.shape), rng.normal(size=h_n.shape)
    layer.zero_grad()
    y, h_n = layer.forward(x, h0, lengths=lengths)
    dx, dh0 = layer.backward(dy, dh_n)
    ty, th_n, tdx, tdh0, tgrads = torch_oracle(step, layer, x, h0, lengths, dy, dh_n)
    pairs = [("output", y, ty), ("h_n", h_n, th_n), ("dx", dx, tdx), ("dh0", dh0, tdh0)]
    pairs += [(n, p.grad, tgrads[n]) for n, p in layer.named_parameters()]
    for what, got, want in pairs:
        assert_close(got, want, PARITY_TOL[np.float64], what)
    return max(float(np.abs(g - w).max()) / max(1.0, float(np.abs(w).max())) for _, g, w in pairs)


def torch_indrnn_step(nonlinearity):
    def step(p, x, h):
        a = x @ p["weight_ih"].T + p["weight_hh"] * h
        if "bias_ih" in p:
            a = a + p["bias_ih"]
        return torch.relu(a) if nonlinearity == "relu" else torch.tanh(a)
    return step


@requires_torch
@pytest.mark.parametrize("name", ["relu", "two-layers-bidirectional-tanh", "no-bias"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_outputs_and_every_gradient_equal_torch_autograd_of_the_equations(name, ragged, kernel, rng):
    layer = indrnn64(3, 4, **CONFIGS[name])
    lengths = np.array([4, 6, 2]) if ragged else None
    with kernels.using(kernel):
        compare_with_torch(torch_indrnn_step(layer.nonlinearity), layer, rng, lengths)


# -- compiled kernels ---------------------------------------------------------------------------------------------
def run(layer, x, lengths, state0, dy_seed=0):
    layer.zero_grad()
    y, final = layer.forward(x, state0, lengths=lengths)
    dy = np.random.default_rng(dy_seed).normal(size=y.shape).astype(y.dtype)
    dx, ds0 = layer.backward(dy, np.ones_like(final))
    return [y, final, dx, ds0] + [p.grad.copy() for p in layer.parameters()]


@pytest.mark.parametrize("whole_sequence", [True, False], ids=["whole-sequence", "per-step"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("detach", [False, True], ids=["bptt", "no-bptt"])
def test_compiled_kernels_equal_the_numpy_code(whole_sequence, dtype, nonlinearity, detach, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(IndRNNStep, "whole_sequence", whole_sequence)
    layer = IndRNN(5, 8, num_layers=2, bidirectional=True, nonlinearity=nonlinearity, dtype=dtype, rng=0)
    layer.detach_state = detach
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 5)).astype(dtype)
    state0 = rng.normal(size=(4, 4, 8)).astype(dtype)
    for lengths in (None, np.array([7, 3, 5, 1])):
        with kernels.using("numpy"):
            expected = run(layer, x, lengths, state0)
        with kernels.using("compiled"):
            got = run(layer, x, lengths, state0)
        worst = max(float(np.abs(g - e).max() / max(1.0, np.abs(e).max())) for g, e in zip(got, expected))
        assert worst <= {np.float32: 1e-6, np.float64: 1e-12}[dtype], worst


def test_the_whole_loop_runs_in_one_compiled_call_only_with_compiled_kernels():
    pytest.importorskip("numba")
    cell = IndRNN(3, 4).cells[0]
    with kernels.using("compiled"):
        assert cell.runs_whole_sequence(16)
    with kernels.using("numpy"):
        assert not cell.runs_whole_sequence(16)


# -- the constraint |u| ≤ recurrent_max ---------------------------------------------------------------------------
def test_recurrent_max_clips_u_when_built_and_when_constrained():
    layer = IndRNN(3, 6, num_layers=2, recurrent_max=0.25, rng=0)
    for cell in layer.cells:
        assert np.abs(cell.weight_hh.data).max() == np.float32(0.25)
    layer.weight_hh_l1.data[:] = [-3, -0.1, 0, 0.1, 0.3, 9]
    layer.constrain()
    np.testing.assert_array_equal(layer.weight_hh_l1.data, np.float32([-0.25, -0.1, 0, 0.1, 0.25, 0.25]))
    unbounded = IndRNN(3, 6, rng=0)
    unbounded.weight_hh_l0.data[:] = 5.0
    unbounded.constrain()  # no bound: nothing changes
    assert (unbounded.weight_hh_l0.data == 5.0).all()


@pytest.mark.parametrize("bounded", [True, False])
def test_the_trainer_constrains_u_after_every_update(bounded, rng):
    gamma = 1.02
    layer = IndRNN(2, 8, recurrent_max=gamma if bounded else None, return_state=False, rng=0)
    layer.weight_hh_l0.data[:] = gamma  # at the bound; a large positive target pulls every u upwards
    head = Linear(8, 1, rng=0)
    head.weight.data[:] = 1.0
    x, y = np.abs(rng.normal(size=(16, 10, 2))), np.full((16, 10, 1), 50.0)
    rnnkit.fit(Sequential(layer, head), x.astype(np.float32), y.astype(np.float32), loss="mse", lr=0.05, epochs=2,
               batch_size=8, progress=False)
    u = layer.weight_hh_l0.data
    assert (u == np.float32(gamma)).all() if bounded else u.max() > 1.05


@pytest.mark.parametrize("options, message", [
    ({"nonlinearity": "sigmoid"}, "nonlinearity must be one of"),
    ({"recurrent_max": 0.0}, "recurrent_max must be None or a finite number > 0, got 0.0"),
    ({"recurrent_max": float("nan")}, "recurrent_max must be None or a finite number > 0"),
    ({"recurrent_max": "2"}, "got '2'"),
])
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(ConfigError, match=message):
        IndRNN(3, 4, **options)


def test_rnnkit_train_builds_a_relu_indrnn_and_keeps_u_bounded(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "adding", "--cell", "indrnn", "--recurrent-max", "1.05", "--hidden-size", "8",
                            "--seq-length", "10", "--max-steps", "6", "--eval-every", "3", "--lr", "0.3",
                            "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    meta, model = load_model(out)
    assert meta["model"]["cell"] == "indrnn" and meta["model"]["nonlinearity"] == "relu"
    assert meta["model"]["recurrent_max"] == 1.05
    assert isinstance(model.rnn, IndRNN) and np.abs(model.rnn.weight_hh_l0.data).max() <= np.float32(1.05)
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["progress"]["step"] == 6
