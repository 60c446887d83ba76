"""Layer-normalised LSTM and GRU: gradient checks, the equations transcribed with torch autograd, ragged batches,
compiled kernels against the NumPy code, and training from the command line."""

import json

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, PARITY_TOL, assert_close, run_cli, validation_losses
from rnnkit import LayerNormGRU, LayerNormLSTM, gradcheck, kernels

LAYERS = {"lnlstm": LayerNormLSTM, "lngru": LayerNormGRU}
CONFIGS = {
    "one-layer": {},
    "two-layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
}


def randomized(layer, seed=7):
    """The layer with every parameter moved off its initial value (γ ≠ 1, β ≠ 0, biases random), in place."""
    rng = np.random.default_rng(seed)
    for name, p in layer.named_parameters():
        if "layernorm" in name and "weight" in name:
            p.data[...] = 1.0 + 0.5 * rng.standard_normal(p.data.shape)
        else:
            p.data[...] = p.data + 0.5 * rng.standard_normal(p.data.shape)
    return layer


def random_state(layer, batch, rng, dtype=np.float64):
    rows = layer.num_directions * layer.num_layers
    parts = tuple(rng.normal(size=(rows, batch, size)).astype(dtype) for size in layer.state_sizes)
    return parts if len(parts) > 1 else parts[0]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


# -- gradient checks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("cell", LAYERS)
def test_gradcheck_of_inputs_initial_state_and_every_parameter(cell, config, rng):
    layer = randomized(LAYERS[cell](3, 4, dtype=np.float64, rng=0, **CONFIGS[config]))
    x = rng.normal(size=(2, 4, 3))
    worst, errors = gradcheck(layer, x, random_state(layer, 2, rng), report=True)
    assert worst < GRADCHECK_TOL, max(errors, key=errors.get)
    assert len(errors) == len(list(layer.named_parameters())) + 1 + len(layer.state_sizes)


@pytest.mark.parametrize("implementation", ["numpy", "compiled"])
@pytest.mark.parametrize("cell", LAYERS)
def test_gradcheck_of_a_ragged_bidirectional_stack(cell, implementation, rng):
    layer = randomized(LAYERS[cell](3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=0))
    x = rng.normal(size=(3, 4, 3))
    with kernels.using(implementation):
        worst = gradcheck(layer, x, random_state(layer, 3, rng), lengths=np.array([2, 4, 1]))
    assert worst < GRADCHECK_TOL


# -- the equations with torch autograd --------------------------------------------------------------------------
def torch_lnlstm_direction(x, p, sfx, state, reverse):
    """a = LN(x W_ihᵀ; γ_x, β_x) + LN(h W_hhᵀ; γ_h, β_h) + b; c' = f c + i g; h' = o tanh(LN(c'; γ_c, β_c))."""
    import torch
    from torch.nn.functional import layer_norm

    h, c = state
    hs = h.shape[-1]
    xp = layer_norm(x @ p["weight_ih" + sfx].T, (4 * hs,), p["layernorm_x_weight" + sfx],
                    p["layernorm_x_bias" + sfx], eps=1e-5) + p["bias_ih" + sfx]
    out = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        a = xp[:, t] + layer_norm(h @ p["weight_hh" + sfx].T, (4 * hs,), p["layernorm_h_weight" + sfx],
                                  p["layernorm_h_bias" + sfx], eps=1e-5)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c = f * c + i * g
        h = o * torch.tanh(layer_norm(c, (hs,), p["layernorm_c_weight" + sfx], p["layernorm_c_bias" + sfx],
                                      eps=1e-5))
        out[t] = h
    return torch.stack(out, 1), (h, c)


def torch_lngru_direction(x, p, sfx, state, reverse):
    """r, z = σ(LN_x(x W_ihᵀ) + b_i + LN_h(h W_hhᵀ) + b_h); n = tanh(LN_x(·)_n + b_in + r (LN_h(·)_n + b_hn));
    h' = (1 − z) n + z h."""
    import torch
    from torch.nn.functional import layer_norm

    (h,) = state
    hs = h.shape[-1]
    xn = layer_norm(x @ p["weight_ih" + sfx].T, (3 * hs,), p["layernorm_x_weight" + sfx],
                    p["layernorm_x_bias" + sfx], eps=1e-5)
    b_i, b_h = p["bias_ih" + sfx], p["bias_hh" + sfx]
    out = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        hn = layer_norm(h @ p["weight_hh" + sfx].T, (3 * hs,), p["layernorm_h_weight" + sfx],
                        p["layernorm_h_bias" + sfx], eps=1e-5)
        r = torch.sigmoid(xn[:, t, :hs] + b_i[:hs] + hn[:, :hs] + b_h[:hs])
        z = torch.sigmoid(xn[:, t, hs:2 * hs] + b_i[hs:2 * hs] + hn[:, hs:2 * hs] + b_h[hs:2 * hs])
        n = torch.tanh(xn[:, t, 2 * hs:] + b_i[2 * hs:] + r * (hn[:, 2 * hs:] + b_h[2 * hs:]))
        h = (1 - z) * n + z * h
        out[t] = h
    return torch.stack(out, 1), (h,)


TORCH_DIRECTIONS = {"lnlstm": torch_lnlstm_direction, "lngru": torch_lngru_direction}


def torch_layer(cell, layer, x, p, state0):
    """The stacked, bidirectional layer written out: output (B, T, D·H) and final state components (D·L, B, H)."""
    import torch

    finals, inp = [], x
    for k in range(layer.num_layers):
        outs = []
        for d in range(layer.num_directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            s0 = tuple(s[k * layer.num_directions + d] for s in state0)
            out, final = TORCH_DIRECTIONS[cell](inp, p, sfx, s0, reverse=bool(d))
            outs.append(out)
            finals.append(final)
        inp = torch.cat(outs, dim=2)
    return inp, tuple(torch.stack([f[j] for f in finals]) for j in range(len(state0)))


def torch_ragged(cell, layer, x, p, state0, lengths):
    """Each sequence alone (cut to its length), outputs zero-padded: what a ragged batch must equal."""
    import torch

    outs, finals = [], []
    for b, n in enumerate(lengths):
        out, final = torch_layer(cell, layer, x[b:b + 1, :n], p, tuple(s[:, b:b + 1] for s in state0))
        outs.append(torch.nn.functional.pad(out, (0, 0, 0, x.shape[1] - n)))
        finals.append(final)
    return torch.cat(outs), tuple(torch.cat([f[j] for f in finals], dim=1) for j in range(len(state0)))


@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("cell", LAYERS)
def test_outputs_states_and_all_gradients_equal_the_equations_in_torch_autograd(cell, dtype, ragged):
    torch = pytest.importorskip("torch")
    layer = randomized(LAYERS[cell](5, 6, num_layers=2, bidirectional=True, dtype=dtype, rng=0))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 7, 5)).astype(dtype)
    lengths = np.array([4, 7, 2]) if ragged else np.array([7, 7, 7])
    state0 = as_tuple(random_state(layer, 3, rng, dtype))
    y, final = layer.forward(x, state0 if len(state0) > 1 else state0[0], lengths=lengths if ragged else None)
    dy = rng.normal(size=y.shape).astype(dtype)
    dfinal = tuple(rng.normal(size=s.shape).astype(dtype) for s in state0)
    layer.zero_grad()
    dx, dstate0 = layer.backward(dy, dfinal if len(dfinal) > 1 else dfinal[0])

    p = {n: torch.tensor(v.data, requires_grad=True) for n, v in layer.named_parameters()}
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state0)
    yt, finalt = torch_ragged(cell, layer, xt, p, st, lengths)
    loss = (yt * torch.from_numpy(dy)).sum() + sum((f * torch.from_numpy(d)).sum() for f, d in zip(finalt, dfinal))
    loss.backward()
    tol = PARITY_TOL[dtype]
    assert_close(y, yt.detach().numpy(), tol, "output")
    for ours, theirs, name in zip(as_tuple(final), finalt, ("h_n", "c_n")):
        assert_close(ours, theirs.detach().numpy(), tol, name)
    assert_close(dx, xt.grad.numpy(), tol, "δx")
    for ours, theirs, name in zip(as_tuple(dstate0), st, ("δh0", "δc0")):
        assert_close(ours, theirs.grad.numpy(), tol, name)
    for name, param in layer.named_parameters():
        assert_close(param.grad, p[name].grad.numpy(), tol, name)


# -- ragged batches, parameters, compiled kernels ------------------------------------------------------------------
@pytest.mark.parametrize("cell", LAYERS)
def test_ragged_batch_equals_each_sequence_alone_whatever_the_padding_holds(cell, rng):
    layer = randomized(LAYERS[cell](3, 5, num_layers=2, bidirectional=True, dtype=np.float64, rng=0))
    x, lengths = rng.normal(size=(3, 6, 3)), np.array([2, 6, 4])  # the padding holds random numbers, not zeros
    state0 = as_tuple(random_state(layer, 3, rng))
    dy = rng.normal(size=(3, 6, 10))
    for b, n in enumerate(lengths):
        dy[b, n:] = 0
    y, _ = layer.forward(x, state0 if len(state0) > 1 else state0[0], lengths=lengths)
    layer.zero_grad()
    dx, _ = layer.backward(dy)
    batch_grads = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    for b, n in enumerate(lengths):
        alone = tuple(s[:, b:b + 1] for s in state0)
        y_b, _ = layer.forward(x[b:b + 1, :n], alone if len(alone) > 1 else alone[0])
        dx_b, _ = layer.backward(dy[b:b + 1, :n])
        np.testing.assert_allclose(y[b, :n], y_b[0], atol=1e-12)
        np.testing.assert_allclose(dx[b, :n], dx_b[0], atol=1e-12)
        assert not y[b, n:].any() and not dx[b, n:].any()
    for p, g in zip(layer.parameters(), batch_grads):
        np.testing.assert_allclose(g, p.grad, atol=1e-12)


@pytest.mark.parametrize("cell", LAYERS)
def test_stepping_the_cell_by_hand_through_the_protocol_equals_the_layer(cell, rng, monkeypatch):
    layer = randomized(LAYERS[cell](3, 4, dtype=np.float64, rng=0))
    step, x = layer.cells[0], rng.normal(size=(2, 5, 3))
    y, _ = layer.forward(x)
    # by hand is the per-step protocol (a whole-sequence call's workspace has no gate history of its own: the
    # compiled loop writes the gates over the projection)
    monkeypatch.setattr(type(step), "whole_sequence", False)
    ws = step.allocate(5, 2)  # the workspace comes first: project keeps the input side's x̂ and 1/σ in it
    xp = step.project(x.transpose(1, 0, 2).reshape(10, 3), ws).reshape(5, 2, -1)
    state = tuple(np.zeros((2, s)) for s in step.state_sizes)
    for t in range(5):
        new = tuple(np.empty_like(s) for s in state)
        step.step(ws, t, xp[t], state, new)
        state = new
        np.testing.assert_allclose(y[:, t], state[0], rtol=1e-13, atol=1e-13)


def test_parameters_are_named_and_shaped_as_documented():
    lstm, gru = LayerNormLSTM(3, 4, bidirectional=True), LayerNormGRU(3, 4)
    lstm_names = {n: p.data.shape for n, p in lstm.named_parameters()}
    assert list(lstm_names)[:9] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "layernorm_x_weight_l0",
                                    "layernorm_x_bias_l0", "layernorm_h_weight_l0", "layernorm_h_bias_l0",
                                    "layernorm_c_weight_l0", "layernorm_c_bias_l0"]
    assert lstm_names["weight_hh_l0_reverse"] == (16, 4) and lstm_names["layernorm_c_bias_l0_reverse"] == (4,)
    assert lstm_names["layernorm_h_weight_l0"] == (16,) and "bias_hh_l0" not in lstm_names
    gru_names = {n: p.data.shape for n, p in gru.named_parameters()}
    assert gru_names == {"weight_ih_l0": (12, 3), "weight_hh_l0": (12, 4), "bias_ih_l0": (12,), "bias_hh_l0": (12,),
                         "layernorm_x_weight_l0": (12,), "layernorm_x_bias_l0": (12,),
                         "layernorm_h_weight_l0": (12,), "layernorm_h_bias_l0": (12,)}
    assert all((p.data == 1).all() for n, p in gru.named_parameters() if n.startswith("layernorm_h_weight"))
    assert all(layer.num_parameters() == type(layer).parameter_count(3, 4, bidirectional=layer.bidirectional)
               for layer in (lstm, gru))


def test_forget_bias_sets_the_one_bias_of_the_forget_gate():
    bias = LayerNormLSTM(3, 4, forget_bias=1.0).bias_ih_l0.data
    assert (bias[4:8] == 1.0).all() and not (bias[:4] == 1.0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("cell", LAYERS)
def test_compiled_kernels_equal_the_numpy_code_forward_and_backward(cell, ragged, dtype):
    pytest.importorskip("numba")
    layer = randomized(LAYERS[cell](5, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 5)).astype(dtype)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    state0 = random_state(layer, 4, rng, dtype)
    dy = rng.normal(size=(4, 7, 16)).astype(dtype)
    results = {}
    for implementation in ("numpy", "compiled"):
        with kernels.using(implementation):
            layer.zero_grad()
            y, final = layer.forward(x, state0, lengths=lengths)
            dx, ds0 = layer.backward(dy)
            results[implementation] = [y, dx, *as_tuple(final), *as_tuple(ds0)] + [p.grad.copy()
                                                                                    for p in layer.parameters()]
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    for got, expected in zip(results["compiled"], results["numpy"]):
        assert_close(got, expected, tol, f"{cell} compiled")



@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("cell", LAYERS)
def test_inference_keeps_one_step_of_history_and_computes_what_training_does(cell, ragged):
    """Under ``no_grad`` a compiled whole-sequence call overwrites one step of its histories (ĥ, s_h, the gates, …)
    instead of writing T of them, and gives the outputs of a call that keeps them all."""
    pytest.importorskip("numba")
    from rnnkit import no_grad

    layer = randomized(LAYERS[cell](5, 8, num_layers=2, bidirectional=True, rng=0))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7, 5)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    step = layer.cells[0]
    with kernels.using("compiled"):
        y_kept, final_kept = layer.forward(x, lengths=lengths)
        with no_grad():
            assert step.history_steps(7, 4) == 1
            y, final = layer.forward(x, lengths=lengths)
    assert step.history_steps(7, 4) == 7
    with kernels.using("numpy"), no_grad():
        assert step.history_steps(7, 4) == 7
    for got, expected in zip([y, *as_tuple(final)], [y_kept, *as_tuple(final_kept)]):
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("cell", LAYERS)
def test_a_compiled_call_writes_its_gates_over_the_projection_and_keeps_one_step_of_k(cell):
    """The compiled loop's workspace has no gate history of its own (the loop names the projection so: its gates go
    over it) and one step's product buffer; the LN-LSTM's backward takes k = tanh(u) again from ĉ (one step of k)."""
    pytest.importorskip("numba")
    step = LAYERS[cell](3, 4, rng=0).cells[0]
    with kernels.using("compiled"):
        ws = step.allocate(5, 2)
    assert ws.gates is None and ws.product.shape == (2, step.gate_width)
    assert cell != "lnlstm" or ws.tanh_u.shape == (2, 4)
    with kernels.using("numpy"):
        ws = step.allocate(5, 2)
    assert ws.gates.shape == (5, 2, step.gate_width) and ws.product is None
    assert cell != "lnlstm" or ws.tanh_u.shape == (5, 2, 4)


# -- the command line -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", LAYERS)
def test_rnnkit_train_text_trains_a_layer_normalised_cell(tmp_path, capsys, cell):
    """The command trains the cell (the validation loss falls), stores it in the checkpoint and samples from it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(np.random.default_rng(0).choice(["to be ", "or not ", "that is "], 300)))
    out = tmp_path / "run"
    argv = ["train", "text", "--cell", cell, "--data", str(corpus), "--hidden-size", "8", "--seq-length", "10",
            "--batch-size", "4", "--max-steps", "30", "--eval-every", "5", "--lr", "1e-2", "--out", str(out),
            "--no-progress"]
    forget_bias = ["--forget-bias", "1"]
    if cell == "lngru":  # the forget bias is an LSTM's
        code, _, err = run_cli(argv + forget_bias, capsys)
        assert code == 2 and "--forget-bias applies to --cell" in err
    code, _, err = run_cli(argv + (forget_bias if cell == "lnlstm" else []), capsys)
    assert code == 0, err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["cell"] == cell and meta["progress"]["step"] == 30
    losses = validation_losses(out)
    assert len(losses) == 6 and min(losses[1:]) < losses[0], losses
    assert meta["model"]["forget_bias"] == (1.0 if cell == "lnlstm" else None)
    assert run_cli(["sample", str(out), "-n", "5", "--seed", "0"], capsys)[0] == 0
