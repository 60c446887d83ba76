"""minGRU and minLSTM: gradients, the equations by hand and in torch autograd, and the parallel scan == the loop."""

import json

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, requires_torch, run_cli, torch
from rnnkit import IndRNN, MinGRU, MinLSTM, export_onnx, gradcheck, kernels, no_grad, to_torch
from rnnkit.errors import ConfigError
from rnnkit.recurrent.scan import linear_scan
from test_indrnn import compare_with_torch, random_state

LAYERS = {"mingru": MinGRU, "minlstm": MinLSTM}
MODES = ("sequential", "scan")
CONFIGS = {
    "one-layer": {},
    "two-layers-bidirectional": {"num_layers": 2, "bidirectional": True},
    "no-bias": {"bias": False},
}


def sig(a):
    return 1 / (1 + np.exp(-a))


def make(name, mode="sequential", **options):
    return LAYERS[name](3, 4, mode=mode, dtype=np.float64, rng=0, **options)


def run(layer, x, h0, lengths, dy, dh_n):
    """Output, final state, δx, δh0 and every parameter gradient of one call."""
    layer.zero_grad()
    y, h_n = layer.forward(x, h0, lengths=lengths)
    dx, dh0 = layer.backward(dy, dh_n)
    return [y, h_n, dx, dh0] + [p.grad.copy() for p in layer.parameters()]


def scan_minus_sequential(layer, x, h0, lengths, rng):
    """The largest difference between the two modes over every output and gradient of one call."""
    y, h_n = layer.forward(x, h0, lengths=lengths)
    layer.backward(np.zeros_like(y))
    dy, dh_n = rng.normal(size=y.shape), rng.normal(size=h_n.shape)
    layer.mode = "sequential"
    expected = run(layer, x, h0, lengths, dy, dh_n)
    layer.mode = "scan"
    got = run(layer, x, h0, lengths, dy, dh_n)
    return max(float(np.abs(g - e).max() / max(1.0, np.abs(e).max())) for g, e in zip(got, expected))


# -- gradients ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_with_initial_state(name, config, mode, rng):
    layer = make(name, mode, **CONFIGS[config])
    assert gradcheck(layer, rng.normal(size=(2, 5, 3)), random_state(layer, 2, rng)) < GRADCHECK_TOL


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_with_lengths_stacked_and_bidirectional(name, mode, rng):
    layer = make(name, mode, num_layers=2, bidirectional=True)
    x = rng.normal(size=(3, 5, 3))
    assert gradcheck(layer, x, random_state(layer, 3, rng), lengths=np.array([2, 5, 1])) < GRADCHECK_TOL


@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_stateful_second_chunk_in_scan_mode(name, rng):
    layer = make(name, "scan", stateful=True)
    layer.forward(rng.normal(size=(2, 3, 3)))
    assert gradcheck(layer, rng.normal(size=(2, 4, 3))) < GRADCHECK_TOL


# -- the two modes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", LAYERS)
def test_scan_equals_the_sequential_loop_forward_and_backward(name, config, rng):
    layer = make(name, **CONFIGS[config])
    x = rng.normal(size=(4, 7, 3))
    h0 = random_state(layer, 4, rng)
    for lengths in (None, np.array([7, 3, 5, 1])):
        assert scan_minus_sequential(layer, x, h0, lengths, rng) <= 1e-10


@pytest.mark.parametrize("name", LAYERS)
def test_scan_equals_the_loop_over_long_sequences_with_saturated_gates(name, rng):
    layer = make(name, bidirectional=True)
    for p in layer.parameters():
        p.data *= 6  # gates near 0 and 1: decays down to e^-20 and sums of e^+2000 in log space
    x = rng.normal(size=(3, 400, 3))
    lengths = np.array([400, 123, 1])
    assert scan_minus_sequential(layer, x, random_state(layer, 3, rng), lengths, rng) <= 1e-10


@pytest.mark.parametrize("reverse", [False, True])
def test_linear_scan_solves_the_recurrence_for_signed_values_without_overflow(reverse, rng):
    steps = 1500
    log_a = -rng.uniform(0, 3, size=(steps, 2, 5))  # a* reaches −2200: e^{−a*} alone would overflow
    b, h0 = rng.normal(size=(steps, 2, 5)), rng.normal(size=(2, 5))
    h, expected = h0, np.empty_like(b)
    for t in (reversed(range(steps)) if reverse else range(steps)):
        h = expected[t] = np.exp(log_a[t]) * h + b[t]
    got = linear_scan(log_a, b, h0, reverse)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)  # ~ ε |a*| max|h|


@pytest.mark.parametrize("detach", [False, True], ids=["bptt", "no-bptt"])
@pytest.mark.parametrize("name", LAYERS)
def test_detached_state_and_recorded_state_gradients_are_the_same_in_both_modes(name, detach, rng):
    layer = make(name, num_layers=2, bidirectional=True)
    layer.detach_state, layer.record_state_grads = detach, True
    x, lengths = rng.normal(size=(3, 6, 3)), np.array([6, 2, 4])
    h0 = random_state(layer, 3, rng)
    assert scan_minus_sequential(layer, x, h0, lengths, rng) <= 1e-12
    assert layer.detach_state == detach and layer.record_state_grads, "switching mode keeps the runners' options"
    norms = {}
    for mode in MODES:
        layer.mode = mode
        layer.forward(x, h0, lengths=lengths)
        layer.backward(np.ones((3, 6, 8)), np.ones((4, 3, 4)))
        norms[mode] = [layer.trace(k, d).state_grad_norms for k in range(2) for d in range(2)]
    np.testing.assert_allclose(norms["scan"], norms["sequential"], rtol=1e-12)


@pytest.mark.parametrize("name", LAYERS)
def test_traces_and_inference_without_gradients_agree_between_the_modes(name, rng):
    layer = make(name, bidirectional=True)
    x, lengths = rng.normal(size=(3, 6, 3)), np.array([6, 2, 4])
    views, outputs = {}, {}
    for mode in MODES:
        layer.mode = mode
        layer.forward(x, lengths=lengths)
        views[mode] = layer.trace(0, 1)
        layer.backward(np.zeros((3, 6, 8)))
        with no_grad():
            outputs[mode] = layer.forward(x, lengths=lengths)[0]
    assert set(views["scan"].gates) == set(layer.cells[0].gate_names)
    for gate, value in views["scan"].gates.items():
        for b, n in enumerate(lengths):
            np.testing.assert_allclose(value[b, :n], views["sequential"].gates[gate][b, :n], rtol=1e-13)
    np.testing.assert_allclose(outputs["scan"], outputs["sequential"], atol=1e-13)
    assert layer.pending_backwards == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("detach", [False, True], ids=["bptt", "no-bptt"])
@pytest.mark.parametrize("name", LAYERS)
def test_the_compiled_sequential_loop_equals_the_numpy_steps(name, detach, dtype):
    pytest.importorskip("numba")
    layer = LAYERS[name](5, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0)
    layer.detach_state = detach
    rng = np.random.default_rng(1)
    x, h0 = rng.normal(size=(4, 7, 5)).astype(dtype), rng.normal(size=(4, 4, 8)).astype(dtype)
    dy, dh_n = rng.normal(size=(4, 7, 16)).astype(dtype), rng.normal(size=(4, 4, 8)).astype(dtype)
    for lengths in (None, np.array([7, 3, 5, 1])):
        with kernels.using("numpy"):
            expected = run(layer, x, h0, lengths, dy, dh_n)
        with kernels.using("compiled"):
            assert layer.cells[0].runs_whole_sequence(4)
            got = run(layer, x, h0, lengths, dy, dh_n)
        worst = max(float(np.abs(g - e).max() / max(1.0, np.abs(e).max())) for g, e in zip(got, expected))
        assert worst <= {np.float32: 1e-6, np.float64: 1e-12}[dtype], worst


def test_the_compiled_minlstm_loop_stays_finite_and_accurate_where_both_gates_underflow():
    """k_f, k_i near −150 (bias −150, weights ×20): σ(k_f) and σ(k_i) underflow to 0 in float32, and f / (f + i) is
    far from ½. The kernel's scaled exponents (`rnnkit.kernels.minimal._normalised_gates`) equal NumPy's logs in
    float64, and in float32 stay within 1e-5 of float64 on the same numbers, about the rounding of k ≈ 150 in
    float32 (150 · 2⁻²⁴ ≈ 9e-6; measured 3.4e-6). The NumPy float32 steps, through logs near −150, are 3e-5 off."""
    pytest.importorskip("numba")
    layers = {dtype: MinLSTM(5, 8, dtype=dtype, rng=0) for dtype in (np.float32, np.float64)}
    layers[np.float32].weight_ih_l0.data *= 20
    layers[np.float32].bias_ih_l0.data[:16] = -150  # the f and i blocks
    for wide, narrow in zip(layers[np.float64].parameters(), layers[np.float32].parameters()):
        wide.data[...] = narrow.data
    rng = np.random.default_rng(2)
    data = [rng.normal(size=shape).astype(np.float32) for shape in ((3, 6, 5), (1, 3, 8), (3, 6, 8), (1, 3, 8))]
    results = {}
    for dtype, implementation in ((np.float64, "numpy"), (np.float64, "compiled"), (np.float32, "compiled")):
        with kernels.using(implementation):
            results[dtype, implementation] = run(layers[dtype], *data[:2], None, *data[2:])
    expected = results[np.float64, "numpy"]
    for (dtype, _), got in results.items():
        assert all(np.isfinite(g).all() for g in got)
        worst = max(float(np.abs(g - e).max() / max(1.0, np.abs(e).max())) for g, e in zip(got, expected))
        assert worst <= {np.float32: 1e-5, np.float64: 1e-12}[dtype], (dtype, worst)


# -- the equations written out ------------------------------------------------------------------------------------
def hand_mingru(layer, x, h0, dy, dh_n):
    """minGRU forward and BPTT by hand: z = σ(k_z), h̃ = k_h, h = (1 − z) h + z h̃."""
    w, b = layer.weight_ih_l0.data, layer.bias_ih_l0.data
    k = x @ w.T + b
    z, h_tilde = sig(k[..., :4]), k[..., 4:]
    hs = [h0]
    for t in range(x.shape[1]):
        hs.append((1 - z[:, t]) * hs[-1] + z[:, t] * h_tilde[:, t])
    dk, dh = np.zeros_like(k), dh_n.copy()
    for t in reversed(range(x.shape[1])):
        dh = dh + dy[:, t]
        dk[:, t, :4] = dh * (h_tilde[:, t] - hs[t]) * z[:, t] * (1 - z[:, t])
        dk[:, t, 4:] = dh * z[:, t]
        dh = dh * (1 - z[:, t])
    return np.stack(hs[1:], 1), dk @ w, dh, np.einsum("btg,bti->gi", dk, x), dk.sum(axis=(0, 1))


def hand_minlstm(layer, x, h0, dy, dh_n):
    """minLSTM forward and BPTT by hand: f' = f / (f + i), i' = i / (f + i), h = f' h + i' h̃."""
    w, b = layer.weight_ih_l0.data, layer.bias_ih_l0.data
    k = x @ w.T + b
    f, i, h_tilde = sig(k[..., :4]), sig(k[..., 4:8]), k[..., 8:]
    fn, i_n = f / (f + i), i / (f + i)
    hs = [h0]
    for t in range(x.shape[1]):
        hs.append(fn[:, t] * hs[-1] + i_n[:, t] * h_tilde[:, t])
    dk, dh = np.zeros_like(k), dh_n.copy()
    for t in reversed(range(x.shape[1])):
        dh = dh + dy[:, t]
        d_fn, d_in = dh * hs[t], dh * h_tilde[:, t]
        s = f[:, t] + i[:, t]
        d_f = (d_fn * i[:, t] - d_in * i[:, t]) / s**2  # ∂f'/∂f = i/s², ∂i'/∂f = −i/s²
        d_i = (d_in * f[:, t] - d_fn * f[:, t]) / s**2
        dk[:, t, :4] = d_f * f[:, t] * (1 - f[:, t])
        dk[:, t, 4:8] = d_i * i[:, t] * (1 - i[:, t])
        dk[:, t, 8:] = dh * i_n[:, t]
        dh = dh * fn[:, t]
    return np.stack(hs[1:], 1), dk @ w, dh, np.einsum("btg,bti->gi", dk, x), dk.sum(axis=(0, 1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, hand", [("mingru", hand_mingru), ("minlstm", hand_minlstm)])
def test_equals_the_loop_and_its_backward_written_out(name, hand, mode, rng):
    layer = make(name, mode)
    x, h0 = rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 4))
    dy, dh_n = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 4))
    y, h_n = layer.forward(x, h0[None])
    dx, dh0 = layer.backward(dy, dh_n[None])
    ys, d_x, d_h0, d_w, d_b = hand(layer, x, h0, dy, dh_n)
    for got, want in ((y, ys), (h_n[0], ys[:, -1]), (dx, d_x), (dh0[0], d_h0), (layer.weight_ih_l0.grad, d_w),
                      (layer.bias_ih_l0.grad, d_b)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def torch_mingru_step(p, x, h):
    k = x @ p["weight_ih"].T + (p["bias_ih"] if "bias_ih" in p else 0)
    z, h_tilde = torch.sigmoid(k[:4]), k[4:]
    return (1 - z) * h + z * h_tilde


def torch_minlstm_step(p, x, h):
    k = x @ p["weight_ih"].T + (p["bias_ih"] if "bias_ih" in p else 0)
    f, i, h_tilde = torch.sigmoid(k[:4]), torch.sigmoid(k[4:8]), k[8:]
    return f / (f + i) * h + i / (f + i) * h_tilde


@requires_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name, step", [("mingru", torch_mingru_step), ("minlstm", torch_minlstm_step)])
def test_outputs_and_every_gradient_equal_torch_autograd_of_the_equations(name, step, config, mode, rng):
    layer = make(name, mode, **CONFIGS[config])
    for kernel in ("numpy", "compiled") if mode == "sequential" else ("numpy",):
        with kernels.using(kernel):
            for lengths in (None, np.array([4, 6, 2])):
                compare_with_torch(step, layer, rng, lengths)


# -- the layer's contract -----------------------------------------------------------------------------------------
def test_parameters_are_the_fused_input_weights_and_one_bias():
    for cls, gates in ((MinGRU, 2), (MinLSTM, 3)):
        layer = cls(3, 4, num_layers=2, bidirectional=True)
        shapes = {n: p.shape for n, p in layer.named_parameters()}
        assert shapes == {"weight_ih_l0": (gates * 4, 3), "bias_ih_l0": (gates * 4,),
                          "weight_ih_l0_reverse": (gates * 4, 3), "bias_ih_l0_reverse": (gates * 4,),
                          "weight_ih_l1": (gates * 4, 8), "bias_ih_l1": (gates * 4,),
                          "weight_ih_l1_reverse": (gates * 4, 8), "bias_ih_l1_reverse": (gates * 4,)}
        assert cls.parameter_count(3, 4, 2, True) == layer.num_parameters()
        y, h = layer.forward(np.zeros((5, 7, 3), np.float32))
        assert y.shape == (5, 7, 8) and h.shape == (4, 5, 4) and y.dtype == h.dtype == np.float32


@pytest.mark.parametrize("name", LAYERS)
def test_the_state_inside_the_last_sequence_is_the_same_in_both_modes(name, rng):
    layer = make(name, num_layers=2)
    x = rng.normal(size=(2, 6, 3))
    states = {}
    for mode in MODES:
        layer.mode = mode
        layer.forward(x)
        states[mode] = layer.state_at(4)
        layer.discard_saved()
    _, h4 = layer.forward(x[:, :4])
    np.testing.assert_allclose(states["scan"], states["sequential"], atol=1e-14)
    np.testing.assert_allclose(states["scan"], h4, atol=1e-14)


@pytest.mark.parametrize("layer", [MinGRU(3, 4), MinLSTM(3, 4, mode="scan"), IndRNN(3, 4)],
                         ids=lambda layer: type(layer).__name__)
def test_torch_and_onnx_conversion_refuse_the_new_layers_in_one_line(layer, tmp_path):
    """The refusal comes before torch or onnx is imported: the same with or without them installed."""
    name = type(layer).__name__
    with pytest.raises(ConfigError, match=f"to_torch supports RNN, LSTM, GRU.*got {name}") as torch_error:
        to_torch(layer)
    with pytest.raises(ConfigError, match=f"ONNX export supports RNN, LSTM and GRU layers, got {name}") as onnx_error:
        export_onnx(layer, tmp_path / "unused.onnx")
    assert "\n" not in str(torch_error.value) and "\n" not in str(onnx_error.value)
    assert not (tmp_path / "unused.onnx").exists()


def test_an_unknown_mode_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"mode must be one of \('sequential', 'scan'\), got 'parallel'"):
        MinGRU(3, 4, mode="parallel")


@pytest.mark.parametrize("argv, message", [
    (["--cell", "lstm", "--mode", "scan"], "--mode applies to --cell mingru or minlstm, not to --cell lstm"),
    (["--cell", "mingru", "--recurrent-max", "2"], "--recurrent-max applies to --cell indrnn, not to --cell mingru"),
    (["--cell", "indrnn", "--recurrent-max", "0"], "'--recurrent-max': 0.0 is not in the range x>0"),
])
def test_options_of_the_new_cells_are_refused_elsewhere_in_one_line(argv, message, tmp_path, capsys):
    code, _, err = run_cli(["train", "adding", *argv, "--max-steps", "1", "--out", str(tmp_path / "r"),
                            "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("cell, extra", [("mingru", ["--mode", "scan"]), ("minlstm", [])])
def test_rnnkit_train_text_with_each_cell(cell, extra, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "text", "--cell", cell, *extra, "--data", str(corpus), "--hidden-size", "8",
                            "--seq-length", "10", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2",
                            "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["cell"] == cell and meta["model"]["mode"] == (extra[1] if extra else "sequential")
    assert run_cli(["sample", str(out), "-n", "5", "--seed", "0"], capsys)[0] == 0


def test_switching_a_regularised_min_layer_to_the_scan_is_a_config_error_not_a_type_error():
    layer = MinGRU(3, 4)
    layer.regularize(zoneout=0.2)
    with pytest.raises(ConfigError, match="mode='scan'"):
        layer.mode = "scan"
    assert layer.mode == "sequential" and layer.forward(np.ones((2, 5, 3)))[0].shape == (2, 5, 4)


def test_the_float32_scan_agrees_with_the_sequential_loop_over_a_thousand_steps():
    x = np.random.default_rng(0).normal(size=(2, 1000, 3)).astype(np.float32)
    for cls in (MinGRU, MinLSTM):
        sequential, scan = cls(3, 4, rng=0), cls(3, 4, rng=0, mode="scan")
        np.testing.assert_allclose(scan.forward(x)[0], sequential.forward(x)[0], rtol=0, atol=2e-6)
