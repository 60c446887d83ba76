"""The compiled step kernels equal the NumPy code they fuse (the oracle), and the selection works as documented."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from conftest import GRADCHECK_TOL
from rnnkit import kernels
from rnnkit.errors import ConfigError
from rnnkit.recurrent import catalog
from rnnkit.recurrent.cell import Cell
from rnnkit.recurrent.layernorm import LayerNormCell
from rnnkit.recurrent.lstm import LSTMStep

numba = pytest.importorskip("numba", reason="numba is not installed: the compiled kernels are not available")

# every variant of every cell of the catalogue: a new cell's kernels are compared without an edit here (the
# layer-normalised cells' are compared in test_layernorm_cells.py, with randomised gains and a float32 tolerance)
CONFIGS = {entry.variant_label(variant): (entry.layer, options)
           for entry in catalog.entries() if not issubclass(entry.cell_class, LayerNormCell)
           for variant, options in entry.variants.items()}
TOL = {np.float32: 1e-6, np.float64: 1e-12}


def run(layer, x, lengths, state0, dy_seed=0):
    """Outputs, final state, input/initial-state gradients and every parameter gradient of one call."""
    layer.zero_grad()
    y, final = layer.forward(x, state0, lengths=lengths)
    dy = np.random.default_rng(dy_seed).normal(size=y.shape).astype(y.dtype)
    dx, ds0 = layer.backward(dy)
    parts = [y, dx] + list(final if isinstance(final, tuple) else (final,))
    parts += list(ds0 if isinstance(ds0, tuple) else (ds0,))
    return parts + [p.grad.copy() for p in layer.parameters()]


def relative_error(a, b) -> float:
    return float(np.abs(a - b).max(initial=0.0) / max(1.0, np.abs(b).max(initial=0.0)))


def cell_classes(base=Cell):
    """Every cell class defined so far (subclasses of ``base``, recursively)."""
    for cls in base.__subclasses__():
        yield cls
        yield from cell_classes(cls)


@pytest.fixture(params=["whole-sequence", "per-step"])
def loop(request, monkeypatch):
    """Run each time loop in one compiled call (every cell class that declares ``whole_sequence``) or step by step
    with the fused step kernels (``whole_sequence`` switched off on all of them)."""
    if request.param == "per-step":
        for cls in list(cell_classes()):
            if cls.__dict__.get("whole_sequence"):
                monkeypatch.setattr(cls, "whole_sequence", False)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compiled_kernels_equal_the_numpy_code_forward_and_backward(name, ragged, dtype, loop):
    cls, options = CONFIGS[name]
    layer = cls(5, 8, num_layers=2, bidirectional=True, dtype=dtype, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7, 5)).astype(dtype)
    lengths = np.array([7, 3, 5, 1]) if ragged else None
    state0 = tuple(rng.normal(size=(4, 4, s)).astype(dtype) for s in layer.state_sizes)
    state0 = state0[0] if len(state0) == 1 else state0
    with kernels.using("numpy"):
        expected = run(layer, x, lengths, state0)
    with kernels.using("compiled"):
        got = run(layer, x, lengths, state0)
    worst = max(relative_error(g, e) for g, e in zip(got, expected))
    assert worst <= TOL[dtype], f"{name}: kernels differ from NumPy by {worst:.2e}"


def test_the_per_step_loop_runs_no_configuration_in_one_compiled_call(loop):
    """The fixture switches every cell class off its whole-sequence loop, not only the LSTM's."""
    runs_in_one_call = set()
    with kernels.using("compiled"):
        for name, (cls, options) in CONFIGS.items():
            layer = cls(5, 8, num_layers=2, bidirectional=True, dtype=np.float64, rng=0, **options)
            if any(runner.runs_whole_sequence(4) for row in layer.runners for runner in row):
                runs_in_one_call.add(name)
    if loop == "per-step":
        assert runs_in_one_call == set()
    else:  # one configuration of each family with a whole-sequence kernel
        assert {"lstm", "gru-reset-after", "rnn-tanh", "indrnn-relu", "mingru", "minlstm"} <= runs_in_one_call


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole-proj", "gru-reset-before", "rnn-tanh", "rhn-uncoupled",
                                  "mogrifier-low-rank"])
def test_compiled_kernels_pass_gradcheck(name, loop):
    cls, options = CONFIGS[name]
    layer = cls(3, 4, dtype=np.float64, rng=0, **options)
    x = np.random.default_rng(2).normal(size=(2, 4, 3))
    with kernels.using("compiled"):
        assert rnnkit.gradcheck(layer, x, lengths=np.array([4, 2])) < GRADCHECK_TOL


@pytest.mark.parametrize("name", ["lstm", "gru-reset-after", "rnn-tanh"])
def test_compiled_kernels_equal_numpy_in_elmans_no_bptt_training(name, loop):
    cls, options = CONFIGS[name]
    layer = cls(3, 4, bidirectional=True, dtype=np.float64, rng=0, **options)
    layer.detach_state = True
    x, lengths = np.random.default_rng(3).normal(size=(3, 5, 3)), np.array([5, 2, 4])
    with kernels.using("numpy"):
        expected = run(layer, x, lengths, None)
    with kernels.using("compiled"):
        got = run(layer, x, lengths, None)
    assert max(relative_error(g, e) for g, e in zip(got, expected)) <= TOL[np.float64]


def test_every_cell_of_the_catalogue_takes_the_whole_sequence_loop_with_compiled_kernels_only():
    cells = [entry.layer(3, 8, **options).cells[0]
             for entry in catalog.entries() for options in entry.variants.values()]
    cells += [rnnkit.RNN(3, 8, nonlinearity="sigmoid").cells[0],  # the lectures' conventions
              rnnkit.GRU(3, 8, reset_after=False, update_gate="lecture").cells[0]]
    with kernels.using("compiled"):
        assert [type(c).__name__ for c in cells if not c.runs_whole_sequence(64)] == []

        class OwnSteps(LSTMStep):  # a subclass with steps of its own does not inherit the compiled loop
            def step(self, ws, t, xp, prev, new):
                super().step(ws, t, xp, prev, new)

        assert not OwnSteps(3, 8).runs_whole_sequence(4)
    with kernels.using("numpy"):
        assert not any(cell.runs_whole_sequence(4) for cell in cells)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_jordan_kernels_equal_the_numpy_code(activation, dtype, loop):
    layer = rnnkit.Jordan(5, 8, 3, output_activation=activation, state_decay=0.3, dtype=dtype, rng=0)
    rng = np.random.default_rng(4)
    x, lengths = rng.normal(size=(4, 6, 5)).astype(dtype), np.array([6, 2, 5, 4])
    with kernels.using("numpy"):
        expected = run(layer, x, lengths, None)
    with kernels.using("compiled"):
        got = run(layer, x, lengths, None)
    assert max(relative_error(g, e) for g, e in zip(got, expected)) <= TOL[dtype]


def test_kernel_choice_is_made_per_call_and_restored():
    before = kernels.selected()
    with kernels.using("numpy"):
        assert kernels.active() is None and kernels.selected() == "numpy"
    assert kernels.selected() == before
    with pytest.raises(ConfigError, match="kernels must be one of compiled, numpy"):
        kernels.use("fortran")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_environment_variable_selects_numpy():
    done = _python("import rnnkit; print(rnnkit.kernels.selected(), rnnkit.kernels.describe())",
                   RNNKIT_KERNELS="numpy")
    assert done.returncode == 0 and done.stdout.split() == ["numpy", "numpy"]


def test_without_numba_rnnkit_says_so_once_and_uses_numpy():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np, rnnkit\n"
            "layer = rnnkit.LSTM(3, 4)\n"
            "for _ in range(3): layer.forward(np.zeros((1, 2, 3), np.float32))\n"
            "print(rnnkit.kernels.describe())")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "numpy (numba unavailable)"
    notices = [line for line in done.stderr.splitlines() if "compiled kernels unavailable" in line]
    assert len(notices) == 1 and "pip install numba" in notices[0]


def test_a_kernel_without_a_python_entry_runs_inside_compiled_code_and_refuses_a_call_from_python():
    """σ' is one of the kernels only other kernels call (`rnnkit.kernels.jit.INNER`): numba compiles it without the
    wrapper that takes Python arguments, so a call from Python gets rnnkit's error instead of a jump to no code."""
    from rnnkit.errors import UsageError
    from rnnkit.kernels import jit

    @numba.njit
    def through_a_kernel(y):
        return jit.dsigmoid(y)

    assert through_a_kernel(0.25) == 0.25 * 0.75
    with pytest.raises(UsageError, match=r"^rnnkit\.kernels\.jit\.dsigmoid is called from compiled kernels only"):
        jit.dsigmoid(0.25)


def test_the_kernels_exp_is_within_1_01_ulp_in_float32_and_is_libms_in_float64():
    """`rnnkit.kernels.jit.exp` over float32's range where e^x is finite: within 1.01 ulp of e^x where e^x is a normal
    float32 (measured: the bound of the polynomial and its rounding), within one subnormal spacing below that, 0
    from x = −104 (e^x under half the smallest subnormal). float64 is libm's ``exp``, bit for bit."""
    from rnnkit.kernels import jit

    @numba.njit
    def exp_each(x, out):
        for j in range(x.shape[0]):
            out[j] = jit.exp(x[j])

    edges = [-110, -104, -103.9, -87.4, 0, 88.72]
    x = np.concatenate([np.linspace(-110, 88.72, 2_000_001), edges]).astype(np.float32)
    got, exact = np.empty_like(x), np.exp(x.astype(np.float64))
    exp_each(x, got)
    info = np.finfo(np.float32)
    normal = exact >= info.tiny
    ulps = np.abs(got[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.01, f"{ulps.max():.3f} ulp at x = {x[normal][ulps.argmax()]}"
    assert np.abs(got[~normal] - exact[~normal]).max() <= info.smallest_subnormal
    assert (got[x <= -104] == 0).all()
    x64, got64 = np.linspace(-700, 700, 100_001), np.empty(100_001)
    exp_each(x64, got64)
    assert got64.tolist() == [math.exp(v) for v in x64.tolist()]


def test_the_kernels_log_is_within_one_ulp_in_float32_and_is_libms_in_float64():
    """`rnnkit.kernels.jit.log` over every positive finite float32 (subnormals too, and densely around 1, where log x
    is small): within 1 ulp of log x, and exactly 0 at x = 1 (measured: 0.82 ulp at most). float64 is libm's ``log``,
    bit for bit."""
    from rnnkit.kernels import jit

    @numba.njit
    def log_each(x, out):
        for j in range(x.shape[0]):
            out[j] = jit.log(x[j])

    info = np.finfo(np.float32)
    x = np.concatenate([np.geomspace(info.smallest_subnormal, info.max, 1_000_001), np.linspace(0.5, 2, 1_000_001),
                        [1.0, info.tiny, info.max]]).astype(np.float32)
    got, exact = np.empty_like(x), np.log(x.astype(np.float64))
    log_each(x, got)
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert ulps[exact != 0].max() <= 1.0, f"{ulps.max():.3f} ulp at x = {x[ulps.argmax()]}"
    assert (got[x == 1] == 0).all()
    x64, got64 = np.geomspace(1e-300, 1e300, 100_001), np.empty(100_001)
    log_each(x64, got64)
    assert got64.tolist() == [math.log(v) for v in x64.tolist()]
