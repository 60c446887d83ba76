"""Independently recurrent network (Li et al. 2018): `IndRNNStep` math and the `IndRNN` layer.

Each unit sees only its own previous value, through one recurrent weight: the recurrent matrix of an Elman RNN
becomes a vector u, and a step is pointwise (no recurrent matmul). There is no ``torch.nn`` counterpart; the
parameter names follow PyTorch's scheme and the common PyTorch ports of the paper (``weight_hh`` holds u).
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import ConfigError
from ..module import Parameter, as_rng
from .catalog import CellEntry
from .cell import Cell, SingleState, WithoutRecurrentMasks, Workspace, dtanh, input_projection
from .compiled_loop import CompiledSequenceLoop
from .layer import RecurrentLayer
from .products import matmul

NONLINEARITIES = ("relu", "tanh")


def check_recurrent_max(value) -> float | None:
    """``recurrent_max`` as a float: None (no bound) or a finite number > 0; else a one-line `ConfigError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"recurrent_max must be None or a finite number > 0, got {value!r}")
    return float(value)


class IndRNNStep(SingleState, WithoutRecurrentMasks, CompiledSequenceLoop, Cell):
    r"""One IndRNN step (Li et al. 2018, eq. 2): every unit has a single recurrent weight.

    Forward (``xp`` = x_t W_ihᵀ + b_ih is the runner's projection; ⊙ elementwise; u = ``weight_hh``):

        a_t = x_t W_ihᵀ + b_ih + u ⊙ h_{t-1}
        h_t = φ(a_t),   φ = relu (the paper's) or tanh

    Backward, δh_t = ∂L/∂h_t (from the output at t and from step t+1):

        δa_t     = δh_t ⊙ φ'(a_t),   φ' = [h_t > 0] (relu) or 1 − h_t² (tanh)
        δh_{t-1} = δa_t ⊙ u
        after the loop (whole-sequence reductions):
        δW_ih += Σ_t δa_tᵀ x_t,   δu += Σ_t Σ_rows δa_t ⊙ h_{t-1},   δb_ih += Σ_t Σ_rows δa_t

    Parameters: ``weight_ih`` (H, I) and ``bias_ih`` (H) ~ U(−1/√H, 1/√H) as PyTorch's other layers;
    ``weight_hh`` = u, a *vector* (H,) ~ U(0, 1) (the paper's initialisation, as in its reference code), clipped to
    [−γ, γ] when ``recurrent_max`` = γ is set. One bias, as in the paper (a second one would only add to it).

    ``recurrent_max`` γ: the paper's bound |u| ≤ γ that keeps a unit's gradient from exploding over T steps
    (γ = 2^{1/T} lets it grow by at most 2 over the sequence with relu). The forward never clips (the gradient
    stays the gradient of the function computed); `constrain` clips u in place, and the trainer calls it after
    every optimizer step.

    Workspace: ``u`` (the recurrent vector) and ``kernels``; φ' comes from h_t, kept by the runner. With compiled
    kernels the whole time loop runs in one compiled call (`runs_whole_sequence`): the one loop skeleton
    (`rnnkit.kernels.sequence_loop`) around the pointwise step of `rnnkit.kernels.indrnn`.
    """

    num_gates = 1
    state_names = ("h",)
    gate_names = ()

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="relu", recurrent_max=None,
                 dtype=np.float32, rng=None):
        if nonlinearity not in NONLINEARITIES:
            raise ConfigError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        super().__init__()
        rng = as_rng(rng)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.recurrent_size = hidden_size
        self.nonlinearity, self.recurrent_max = nonlinearity, check_recurrent_max(recurrent_max)
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(rng.uniform(-bound, bound, (hidden_size, input_size)).astype(dtype))
        self.weight_hh = Parameter(rng.uniform(0.0, 1.0, hidden_size).astype(dtype))
        self.bias_ih = Parameter(rng.uniform(-bound, bound, hidden_size).astype(dtype)) if bias else None
        self.bias_hh = None
        self.constrain()

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, **options):
        return hidden_size * (input_size + 1 + (1 if bias else 0))

    @property
    def gate_width(self):
        return self.hidden_size

    def gate_activations(self, ws):
        return {}

    def project(self, x, ws=None):
        """A = X W_ihᵀ + b_ih for all steps (one GEMM); u ⊙ h_{t−1} is added per step."""
        return input_projection(x, self.weight_ih.data, self.bias_ih.data if self.bias else None)

    def constrain(self) -> None:
        """Clip u = ``weight_hh`` to [−γ, γ] in place (γ = ``recurrent_max``; nothing without one)."""
        if self.recurrent_max is not None:
            np.clip(self.weight_hh.data, -self.recurrent_max, self.recurrent_max, out=self.weight_hh.data)

    def allocate(self, steps, batch, ragged=False):
        return Workspace(u=self.weight_hh.data, kernels=kernels.active())

    # -- the whole loop in one compiled call --------------------------------------------------------------------
    #: run the whole time loop in one compiled call when compiled kernels are active (the step has no GEMM; measured
    #: for a training step at T = 100: 3× faster than per-step calls at B·H = 64, 1.04–1.15× at B·H = 4096 … 16384)
    whole_sequence = True

    def runs_whole_sequence(self, batch):
        return self.whole_sequence and kernels.active() is not None

    def compiled_loop(self, ws):
        from ..kernels import indrnn as fused  # numba is loaded only with compiled kernels active

        return fused.indrnn_sequence_forward, (ws.u, self.nonlinearity == "relu")

    def compiled_loop_backward(self, ws):
        from ..kernels import indrnn as fused

        return fused.indrnn_sequence_backward, (ws.u, self.nonlinearity == "relu")

    # -- one step -----------------------------------------------------------------------------------------
    def step(self, ws, t, xp, prev, new):
        (h_prev,), (h,) = prev, new
        if ws.kernels is not None:
            return ws.kernels.indrnn_forward(h_prev, ws.u, xp, self.nonlinearity == "relu", h)
        np.multiply(h_prev, ws.u, out=h)  # a = xp + u ⊙ h_{t-1}
        h += xp
        if self.nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dh,), (h,) = dstate, new
        if ws.kernels is not None:
            return ws.kernels.indrnn_backward(dh, h, ws.u, self.nonlinearity == "relu", dxp)
        if self.nonlinearity == "tanh":  # δa = δh ⊙ φ'(a)
            dtanh(h, out=dxp)
            dxp *= dh
        else:
            np.multiply(dh, h > 0, out=dxp)
        np.multiply(dxp, ws.u, out=dh)  # δh_{t-1} = δa ⊙ u

    def accumulate(self, ws, x, dxp, prev, new):
        """δW_ih += δAᵀ X,  δu += Σ δA ⊙ H_prev,  δb_ih += Σ δA (sums over all T·B rows); returns δX = δA W_ih."""
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        self.weight_hh.grad += np.einsum("nh,nh->h", dxp, prev[0])
        if self.bias:
            self.bias_ih.grad += dxp.sum(axis=0)
        return matmul(dxp, self.weight_ih.data)


class IndRNN(RecurrentLayer):
    r"""Multi-layer IndRNN (Li et al. 2018): h_t = φ(x_t W_ihᵀ + b_ih + u ⊙ h_{t-1}), one recurrent weight per unit.

    ``IndRNN(input_size, hidden_size, num_layers=1, nonlinearity='relu', recurrent_max=None, bias=True,
    dropout=0.0, bidirectional=False, stateful=False, dtype=float32)``

    Parameters per layer k (suffix ``_reverse`` for the backward direction): ``weight_ih_l{k}`` (H, H_in or D·H),
    ``weight_hh_l{k}`` (H,) — the recurrent weights u, a vector —, ``bias_ih_l{k}`` (H) (one bias, the paper's).
    u ~ U(0, 1); the others ~ U(−1/√H, 1/√H).

    ``recurrent_max`` γ bounds |u| ≤ γ (the paper suggests γ = 2^{1/T} for relu over T steps): u is clipped when
    the layer is built and by `constrain()`, which `rnnkit.training.Trainer` calls after every optimizer step
    (call it yourself after each update in a loop of your own). Stacking deep IndRNNs as the paper does (with
    batch normalisation between layers) is up to the model; here layers stack as in every rnnkit layer.

    ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H), h_n (D·L, B, H)); ``backward(d_output,
    d_h_n=None)`` → (δx, δh0).

    Equivalent loop (one layer, one direction)::

        for t in range(T):
            h = np.maximum(x[:, t] @ weight_ih_l0.T + bias_ih_l0 + weight_hh_l0 * h, 0)
            output[:, t] = h
    """

    cell_class = IndRNNStep
    catalog = CellEntry("indrnn", options=("nonlinearity", "recurrent_max"), defaults={"nonlinearity": "relu"},
                        variants={"relu": {}, "tanh": {"nonlinearity": "tanh"}})

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="relu", recurrent_max=None, bias=True,
                 dropout=0.0, bidirectional=False, stateful=False, dtype=np.float32, rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state, nonlinearity=nonlinearity, recurrent_max=recurrent_max)
        self.nonlinearity, self.recurrent_max = nonlinearity, check_recurrent_max(recurrent_max)

    def constrain(self) -> None:
        """Clip every recurrent vector u to [−recurrent_max, recurrent_max] in place (after an optimizer step)."""
        for cell in self.cells:
            cell.constrain()

    def extra_repr(self) -> str:
        extra = f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "relu" else ""
        return super().extra_repr() + extra + (f", recurrent_max={self.recurrent_max}" if self.recurrent_max else "")
