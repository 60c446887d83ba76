"""Cells defined by their equations (rnnkit.define): equal to the hand-written cells in outputs and every gradient,
gradcheck, the layer options, the generated code, and one-line errors for bad definitions."""

from functools import cache

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, assert_close
from rnnkit import GRU, LSTM, RNN, IndRNN, MinGRU, define, gradcheck, kernels
from rnnkit.errors import ConfigError

EXACT = 1e-12
#: the smallest shapes that still exercise every path: a ragged batch (rows of different lengths, one shorter than
#: the sequence), two layers (the second reads the first's two directions), both directions
BATCH, STEPS, INPUT, HIDDEN = 3, 4, 3, 3
LENGTHS = np.array([4, 2, 3])
LAYOUT = {"num_layers": 2, "bidirectional": True}

#: each definition's keyword arguments of `define.cell` (built, parsed and derived on first use: `definition`)
SPECS = {
    "rnn_tanh": dict(gates="n", states="h", equations="h = tanh(a_n)"),
    "rnn_relu": dict(gates="n", states="h", equations="h = relu(a_n)"),
    "lstm_peephole": dict(gates="i f g o", states="h c", params="w_ci w_cf w_co", equations="""
        i = σ(a_i + w_ci⊙c₋₁);  f = σ(a_f + w_cf⊙c₋₁);  g = tanh(a_g)
        c = f⊙c₋₁ + i⊙g
        o = σ(a_o + w_co⊙c)
        h = o⊙tanh(c)"""),
    "gru_reset_after": dict(gates="r z n", states="h", equations="""
        r = σ(a_r);  z = σ(a_z);  n = tanh(ax_n + r⊙ah_n)
        h = (1 − z)⊙n + z⊙h₋₁"""),
    "indrnn": dict(gates="n", states="h", recurrent="", params="u", equations="h = relu(a_n + u⊙h₋₁)"),
    "mingru": dict(gates="z g", states="h", recurrent="", equations="""
        z = σ(a_z)
        h = (1 − z)⊙h₋₁ + z⊙a_g"""),
    "mingru_exp": dict(gates="z g", states="h", recurrent="", equations="""
        z = 1 / (1 + exp(−a_z))
        h = (1 − z)⊙h₋₁ + z⊙a_g"""),
    "mingru_log": dict(gates="z g", states="h", recurrent="", equations="""
        z = σ(log(exp(a_z)))  # SymPy keeps log(exp(u)) for a u that may be complex, and simplifies exp(log(u))
        h = (1 − z)⊙h₋₁ + z⊙a_g"""),
}


@cache
def definition(name: str):
    return define.cell(name, **SPECS[name])


#: each definition's hand-written layer, and the defined parameter name of each hand-written one that differs
HAND_WRITTEN = {
    "rnn_tanh": (lambda **kw: RNN(**kw), {}),
    "rnn_relu": (lambda **kw: RNN(nonlinearity="relu", **kw), {}),
    "lstm_peephole": (lambda **kw: LSTM(peephole=True, **kw), {"weight_ci": "w_ci", "weight_cf": "w_cf",
                                                                 "weight_co": "w_co"}),
    "gru_reset_after": (lambda **kw: GRU(**kw), {}),
    "indrnn": (lambda **kw: IndRNN(**kw), {"weight_hh": "u"}),
    "mingru": (lambda **kw: MinGRU(**kw), {}),
    "mingru_exp": (lambda **kw: MinGRU(**kw), {}),
    "mingru_log": (lambda **kw: MinGRU(**kw), {}),
}


def defined_name(name: str, renames: dict) -> str:
    """weight_ci_l1_reverse → w_ci_l1_reverse (the hand-written parameter's name in the defined layer)."""
    for old, new in renames.items():
        if name.startswith(old + "_l"):
            return new + name[len(old):]
    return name


def pair(name, **options):
    """(hand-written layer, defined layer) in float64 with the same weights."""
    make, renames = HAND_WRITTEN[name]
    hand = make(input_size=INPUT, hidden_size=HIDDEN, dtype=np.float64, rng=1, **options)
    mine = define.DefinedRNN(INPUT, HIDDEN, definition(name), dtype=np.float64, rng=2, **options)
    state = {defined_name(k, renames): v for k, v in hand.state_dict().items()}
    mine.load_state_dict(state)
    return hand, mine


def run(layer, x, state0, dy, dfinal, lengths):
    out, final = layer.forward(x, state0, lengths=lengths)
    dx, dstate0 = layer.backward(dy, dfinal)
    grads = {n: p.grad.copy() for n, p in layer.named_parameters()}
    return out, final, dx, dstate0, grads


def random_state(layer, batch, rng):
    rows = layer.num_directions * layer.num_layers
    parts = tuple(rng.normal(size=(rows, batch, s)) for s in layer.state_sizes)
    return parts[0] if len(parts) == 1 else parts


@pytest.mark.parametrize("implementation", ["numpy", "compiled"])
@pytest.mark.parametrize("name", SPECS)
def test_defined_cell_equals_hand_written_cell_in_outputs_and_every_gradient(name, implementation):
    """Stacked, bidirectional and ragged at once: a one-layer, one-direction layer is its first layer's forward
    direction, and a full batch its longest row."""
    rng = np.random.default_rng(0)
    with kernels.using(implementation):
        hand, mine = pair(name, **LAYOUT)
        x = rng.normal(size=(BATCH, STEPS, INPUT))
        state0, dfinal = random_state(hand, BATCH, rng), random_state(hand, BATCH, rng)
        dy = rng.normal(size=(BATCH, STEPS, hand.output_size))
        expected = run(hand, x, state0, dy, dfinal, LENGTHS)
        got = run(mine, x, state0, dy, dfinal, LENGTHS)
    _, renames = HAND_WRITTEN[name]
    for what, a, b in zip(("output", "final state", "dx", "dstate0"), got[:4], expected[:4]):
        for k, (pa, pb) in enumerate(zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,))):
            assert_close(pa, pb, EXACT, f"{what}[{k}]")
    assert len(got[4]) == len(expected[4])
    for pname, grad in expected[4].items():
        assert_close(got[4][defined_name(pname, renames)], grad, EXACT, f"grad {pname}")


@pytest.mark.parametrize("name", SPECS)
def test_gradcheck_of_every_defined_cell_is_below_tolerance(name):
    rng = np.random.default_rng(3)
    layer = define.DefinedRNN(INPUT, HIDDEN, definition(name), **LAYOUT, dtype=np.float64, rng=0)
    x = rng.normal(size=(2, 3, INPUT))
    assert gradcheck(layer, x, random_state(layer, 2, rng), lengths=np.array([3, 2])) < GRADCHECK_TOL


@pytest.mark.parametrize("name", ["lstm_peephole", "mingru_exp", "mingru_log"])
def test_compiled_kernel_equals_generated_numpy_step_in_float32(name):
    """The compiled kernels' float32 σ, tanh and e^x (`rnnkit.kernels.jit`) against NumPy's in the generated step."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(BATCH, STEPS, INPUT)).astype(np.float32)
    results = []
    for implementation in ("numpy", "compiled"):
        with kernels.using(implementation):
            layer = define.DefinedRNN(INPUT, HIDDEN, definition(name), rng=5)
            out, final = layer.forward(x)
            dx, _ = layer.backward(np.ones_like(out))
            states = final if isinstance(final, tuple) else (final,)
            results.append([out, *states, dx] + [p.grad.copy() for p in layer.parameters()])
    for a, b in zip(*results):
        assert_close(a, b, 1e-5)


def test_defined_cell_runs_with_input_dropout_zoneout_and_stateful_carry():
    rng = np.random.default_rng(6)
    layer = define.DefinedRNN(INPUT, HIDDEN, definition("lstm_peephole"), dtype=np.float64, rng=0, stateful=True,
                              dropout_input=0.3, zoneout=0.2)
    x = rng.normal(size=(2, STEPS, INPUT))
    out1, _ = layer.forward(x)
    carried = layer.carried_state
    layer.backward(np.ones_like(out1))
    layer.eval()
    out2, _ = layer.forward(x)
    assert np.isfinite(out1).all() and np.isfinite(out2).all()
    assert carried is not None and carried[0].shape == (1, 2, HIDDEN)
    layer.train()
    layer.reset_state()
    assert gradcheck(layer.regularize(0.0, 0.0, 0.0, 0.0), x) < GRADCHECK_TOL


def test_zoneout_on_a_defined_lstm_equals_zoneout_on_the_hand_written_lstm():
    rng = np.random.default_rng(7)
    hand, mine = pair("lstm_peephole")
    hand.regularize(zoneout=0.3)
    mine.regularize(zoneout=0.3)
    hand.rng, mine.rng = np.random.default_rng(9), np.random.default_rng(9)
    x = rng.normal(size=(2, STEPS, INPUT))
    out_a, _ = hand.forward(x)
    out_b, _ = mine.forward(x)
    dy = rng.normal(size=out_a.shape)
    assert_close(out_b, out_a, EXACT, "output")
    assert_close(mine.backward(dy)[0], hand.backward(dy)[0], EXACT, "dx")


def test_backward_is_printed_through_forward_outputs_in_the_cells_symbols():
    text = define.backward_text(definition("lstm_peephole"))
    assert "δa_i = δi⊙i⊙(1 − i)" in text
    assert "δa_g = δg⊙(1 − g²)" in text
    assert "δc₋₁ = δa_f⊙w_cf + δa_i⊙w_ci + δc⊙f" in text
    latex = define.backward_text(definition("lstm_peephole"), latex=True)
    assert r"\delta a_{i} = \delta i \odot i \odot \left(1 - i\right)" in latex
    assert "δa_i = δi⊙i⊙(1 − i)" in define.cell_class(definition("lstm_peephole")).__doc__


def test_relu_derivative_is_written_as_a_step_of_its_output():
    assert "δa_n = δh_t⊙[h > 0]" in define.backward_text(definition("rnn_relu"))


def test_generated_numpy_step_is_readable_python_with_no_loops():
    source = define.numpy_source(definition("gru_reset_after"))
    assert "def forward(" in source and "def backward(" in source and "for " not in source
    compile(source, "generated", "exec")


BAD = {
    "unknown symbol": ({"equations": "h = tanh(a_n + q)"}, "unknown symbol 'q'"),
    "unsupported function": ({"equations": "h = sin(a_n)"}, "unsupported function 'sin'"),
    "state never updated": ({"states": "h c", "equations": "h = tanh(a_n)"}, "state 'c' is never updated"),
    "gate never used": ({"gates": "n m", "equations": "h = tanh(a_n)"}, "gate 'm' is never used"),
    "parameter never used": ({"params": "u", "equations": "h = tanh(a_n)"}, "parameter 'u' is never used"),
    "no eval of attributes": ({"equations": "h = tanh(a_n).__class__"}, "unsupported syntax"),
    "no calls of methods": ({"equations": "h = np.tanh(a_n)"}, "unsupported function 'np.tanh'"),
    "state read before assigned": ({"equations": "h = tanh(a_n + h)"}, "state 'h' is read before it is assigned"),
    "assigned twice": ({"equations": "h = tanh(a_n); h = a_n"}, "'h' is assigned twice"),
    "both whole and parts": ({"equations": "h = tanh(a_n + ah_n)"}, "read both whole"),
    "not an equation": ({"equations": "tanh(a_n)"}, "expected one equation"),
    "unused intermediate": ({"equations": "k = a_n; h = tanh(a_n)"}, "'k' is computed but never used"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_definition_is_a_one_line_config_error_naming_the_problem(case):
    fields, message = BAD[case]
    options = {"gates": "n", "states": "h", **fields}
    with pytest.raises(ConfigError) as info:
        define.cell("bad", **options)
    assert message in str(info.value) and "\n" not in str(info.value)
