"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs all we needed?"): gates from the input alone.

Neither cell has a recurrent weight: every gate is a function of x_t, and the state update is the diagonal
linear recurrence h_t = a_t ⊙ h_{t-1} + b_t. So a layer runs in one of two modes that compute the same function:

* ``mode="sequential"``: the ordinary runner (`Recurrence`), one pointwise step per time step;
* ``mode="scan"``: `rnnkit.recurrent.scan.ScanRecurrence`, the recurrence solved for all steps at once by a
  log-space scan (no Python loop over time), and its backward by the same scan backwards in time.

Both modes call the cell's ``coefficients`` / ``coefficients_backward`` (any leading axes), so the model's
equations are written once. There is no ``torch.nn`` counterpart; parameters follow PyTorch's fused layout.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..activations import sigmoid
from ..errors import ConfigError
from ..module import Parameter, as_rng
from .catalog import CellEntry
from .cell import Cell, SingleState, WithoutRecurrentMasks, Workspace, gate_blocks, input_projection, per_step
from .compiled_loop import CompiledSequenceLoop
from .layer import RecurrentLayer
from .products import matmul
from .runner import Recurrence
from .scan import ScanRecurrence

MODES = ("sequential", "scan")


def log_sigmoid(k: np.ndarray) -> np.ndarray:
    """log σ(k) = −log(1 + e^{−k}), finite for every finite k."""
    return -np.logaddexp(0.0, -k)


class MinimalStep(SingleState, WithoutRecurrentMasks, CompiledSequenceLoop, Cell):
    r"""Base of the input-gated cells: ``weight_ih`` (G·H, I) and ``bias_ih`` (G·H) only, fused gates.

    Forward of one step (``xp`` = x_t W_ihᵀ + b_ih, the runner's projection):

        (log a_t, a_t, b_t) = coefficients(xp)        the gates, a_t ∈ (0, 1) and b_t
        h_t = a_t ⊙ h_{t-1} + b_t

    Backward, given δh_t:  δa_t = δh_t ⊙ h_{t-1},  δb_t = δh_t,  δxp from ``coefficients_backward``,
    δh_{t-1} = δh_t ⊙ a_t;  after the loop:  δW_ih += Σ_t δxp_tᵀ x_t,  δb_ih += Σ_t δxp_t.

    Workspace: ``gates`` (T, B, G) the activated gates (by ``gate_names``), ``decay`` (T, B, H) a_t; ``kernels``
    (with compiled kernels the sequential mode runs the whole loop in one call, `runs_whole_sequence`: the loop
    skeleton `rnnkit.kernels.sequence_loop` around the steps of `rnnkit.kernels.minimal`). All
    parameters ~ U(−1/√H, 1/√H) (PyTorch's rule for its recurrent layers).
    """

    state_names = ("h",)

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        rng = as_rng(rng)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.recurrent_size = hidden_size
        g, bound = self.num_gates * hidden_size, 1.0 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(rng.uniform(-bound, bound, (g, input_size)).astype(dtype))
        self.bias_ih = Parameter(rng.uniform(-bound, bound, g).astype(dtype)) if bias else None
        self.weight_hh = self.bias_hh = None

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, **options):
        return cls.num_gates * hidden_size * (input_size + (1 if bias else 0))

    @property
    def gate_width(self):
        return self.num_gates * self.hidden_size

    def gate_activations(self, ws):
        return gate_blocks(ws.gates, self.gate_names, self.hidden_size)

    def project(self, x, ws=None):
        """XP = X W_ihᵀ + b_ih, every gate of every step in one GEMM (no gate reads the state)."""
        return input_projection(x, self.weight_ih.data, self.bias_ih.data if self.bias else None)

    def allocate(self, steps, batch, ragged=False):
        return Workspace(gates=per_step(steps, batch, self.gate_width, self.dtype, ragged),
                         decay=per_step(steps, batch, self.hidden_size, self.dtype, ragged),
                         kernels=kernels.active())

    # -- the sequential mode's whole loop in one compiled call -----------------------------------------------
    #: with compiled kernels, the sequential mode runs its whole time loop in one compiled call (the step is
    #: pointwise); the NumPy ``step``/``step_backward`` below are the definition it is tested against
    whole_sequence = True

    def runs_whole_sequence(self, batch):
        return self.whole_sequence and kernels.active() is not None

    def compiled_loop(self, ws):
        from ..kernels import minimal as fused  # numba is loaded only with compiled kernels active

        return fused.min_sequence_forward, (self.num_gates == 3, ws.gates, ws.decay)

    def compiled_loop_backward(self, ws):
        from ..kernels import minimal as fused

        return fused.min_sequence_backward, (self.num_gates == 3, ws.gates, ws.decay)

    # -- the model, for any leading axes (one step, or a whole sequence in scan mode) --------------------------
    def coefficients(self, xp: np.ndarray, gates: np.ndarray):  # pragma: no cover - abstract
        """Write the activated gates into ``gates`` (…, G); return (log a, a, b), each (…, H)."""
        raise NotImplementedError

    def coefficients_backward(self, gates, a, da, db, dxp) -> None:  # pragma: no cover - abstract
        """Write δxp (…, G) from δa, δb (…, H), the gates and a."""
        raise NotImplementedError

    # -- the sequential mode ------------------------------------------------------------------------------
    def step(self, ws, t, xp, prev, new):
        (h_prev,), (h,) = prev, new
        n = xp.shape[0]
        _, a, b = self.coefficients(xp, ws.gates[t, :n])
        ws.decay[t, :n] = a
        np.multiply(a, h_prev, out=h)  # h_t = a_t ⊙ h_{t-1} + b_t
        h += b

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dh,), (h_prev,) = dstate, prev
        n = dxp.shape[0]
        a = ws.decay[t, :n]
        self.coefficients_backward(ws.gates[t, :n], a, dh * h_prev, dh, dxp)  # δa = δh ⊙ h_{t-1}, δb = δh
        dh *= a  # δh_{t-1} = δh_t ⊙ a_t

    def accumulate(self, ws, x, dxp, prev, new):
        """δW_ih += δXPᵀ X,  δb_ih += Σ δXP;  returns δX = δXP W_ih."""
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        if self.bias:
            self.bias_ih.grad += dxp.sum(axis=0)
        return matmul(dxp, self.weight_ih.data)


class MinGRUStep(MinimalStep):
    r"""One minGRU step; ``weight_ih`` rows in the order z, h (update gate, candidate).

    Forward, with k_z, k_h the two H-wide blocks of xp = x_t W_ihᵀ + b_ih:

        z_t = σ(k_z),   h̃_t = k_h
        h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t          a_t = 1 − z_t = σ(−k_z),  log a_t = −softplus(k_z),
                                                       b_t = z_t ⊙ h̃_t
    Backward, from δa, δb (δa = δh_t ⊙ h_{t-1}, δb = δh_t):

        δk_z = (δb ⊙ h̃_t − δa) ⊙ z_t (1 − z_t)   [ = δh_t ⊙ (h̃_t − h_{t-1}) ⊙ z_t (1 − z_t) ]
        δk_h = δb ⊙ z_t
        δh_{t-1} = δh_t ⊙ (1 − z_t)

    ``gates`` holds [z, h̃]. The paper's log-space variant also maps h̃ through g(x) = x + ½ (x ≥ 0), σ(x) (x < 0)
    to keep it positive; this cell keeps the linear h̃ (the paper's main equations), which the signed scan allows.
    """

    num_gates = 2
    gate_names = ("z", "h")

    def coefficients(self, xp, gates):
        hs = self.hidden_size
        k_z, z, h_tilde = xp[..., :hs], gates[..., :hs], gates[..., hs:]
        sigmoid(k_z, out=z)
        h_tilde[...] = xp[..., hs:]
        log_a = -np.logaddexp(0.0, k_z)  # log(1 − z) = −softplus(k_z)
        return log_a, np.exp(log_a), z * h_tilde

    def coefficients_backward(self, gates, a, da, db, dxp):
        hs = self.hidden_size
        z, h_tilde = gates[..., :hs], gates[..., hs:]
        dk_z = dxp[..., :hs]
        np.multiply(db, h_tilde, out=dk_z)
        dk_z -= da
        dk_z *= z
        dk_z *= a  # z (1 − z)
        np.multiply(db, z, out=dxp[..., hs:])


class MinLSTMStep(MinimalStep):
    r"""One minLSTM step; ``weight_ih`` rows in the order f, i, h (forget, input, candidate).

    Forward, with k_f, k_i, k_h the three H-wide blocks of xp = x_t W_ihᵀ + b_ih:

        f_t = σ(k_f),   i_t = σ(k_i),   h̃_t = k_h
        f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)       (log f'_t = log σ(k_f) − log(f_t + i_t))
        h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t                            a_t = f'_t,  b_t = i'_t ⊙ h̃_t

    Backward, from δa, δb (δa = δh_t ⊙ h_{t-1}, δb = δh_t), with i' = 1 − f' and e = δa − δb ⊙ h̃_t:

        δk_f = e ⊙ f' ⊙ i' ⊙ (1 − f_t)      [∂f'/∂f = i'/(f + i),  f(1 − f) from σ']
        δk_i = −e ⊙ f' ⊙ i' ⊙ (1 − i_t)
        δk_h = δb ⊙ i'
        δh_{t-1} = δh_t ⊙ f'_t

    ``gates`` holds [f, i, h̃] (the sigmoids before normalisation); ``decay`` holds f'. Computing f', i' from
    logs keeps them finite where both sigmoids underflow (the compiled kernel computes the same ratios from e^x
    with the exponents scaled to be ≤ 0, `rnnkit.kernels.minimal`).
    """

    num_gates = 3
    gate_names = ("f", "i", "h")

    def coefficients(self, xp, gates):
        hs = self.hidden_size
        k_f, k_i = xp[..., :hs], xp[..., hs:2 * hs]
        sigmoid(xp[..., :2 * hs], out=gates[..., :2 * hs])
        gates[..., 2 * hs:] = xp[..., 2 * hs:]
        log_f, log_i = log_sigmoid(k_f), log_sigmoid(k_i)
        log_sum = np.logaddexp(log_f, log_i)
        log_a = log_f - log_sum
        return log_a, np.exp(log_a), np.exp(log_i - log_sum) * gates[..., 2 * hs:]

    def coefficients_backward(self, gates, a, da, db, dxp):
        hs = self.hidden_size
        f, i, h_tilde = gates[..., :hs], gates[..., hs:2 * hs], gates[..., 2 * hs:]
        i_norm = 1.0 - a
        e = da - db * h_tilde
        e *= a
        e *= i_norm  # (δa − δb ⊙ h̃) f' i'
        np.multiply(e, 1.0 - f, out=dxp[..., :hs])
        np.multiply(e, i - 1.0, out=dxp[..., hs:2 * hs])
        np.multiply(db, i_norm, out=dxp[..., 2 * hs:])


class _MinimalLayer(RecurrentLayer):
    """A stack of input-gated cells run sequentially or by the parallel scan (``mode``); see `MinGRU`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 mode="sequential", stateful=False, dtype=np.float32, rng=None, return_state=True):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state)
        self.mode = mode

    @property
    def mode(self) -> str:
        """``"sequential"`` (a step per time step) or ``"scan"`` (all steps at once); both compute the same."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {value!r}")
        if value == "scan" and getattr(self, "regularization", None) is not None and self.regularization.active:
            raise ConfigError(f"{type(self).__name__}: mode='scan' has no time loop for the recurrent regularisers "
                              "set by regularize(); keep mode='sequential' or clear them first")
        runner_class = ScanRecurrence if value == "scan" else Recurrence
        detach, record = (self.runners[0][0].detach_state, self.runners[0][0].record_state_grads)
        self.runners = [[runner_class(r.cell, r.reverse) for r in row] for row in self.runners]
        self._mode = value
        self.detach_state, self.record_state_grads = detach, record

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", mode={self.mode!r}" if self.mode != "sequential" else "")


class MinGRU(_MinimalLayer):
    r"""Multi-layer minGRU (Feng et al. 2024): h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t, z_t = σ(x_t W_zᵀ + b_z),
    h̃_t = x_t W_hᵀ + b_h — no recurrent weights.

    ``MinGRU(input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
    mode='sequential', stateful=False, dtype=float32)``

    Parameters per layer k (suffix ``_reverse`` for the backward direction): ``weight_ih_l{k}`` (2H, H_in or D·H)
    and ``bias_ih_l{k}`` (2H), rows [z | h], ~ U(−1/√H, 1/√H). ``mode``: ``"sequential"`` (the default: with
    compiled kernels its whole loop is one compiled call, the fastest on a CPU at every size measured, B·H = 16 …
    4096 and T = 100 … 1000; with NumPy kernels the scan wins only at B·H ≲ 128) or ``"scan"`` (the log-space
    parallel scan of `rnnkit.recurrent.scan`, made for parallel hardware; see benchmarks/min_rnn_scan.py). The two
    agree to ~1e-15 in float64 over tens of steps. Layers stack, run in both directions and take ragged
    ``lengths`` as every rnnkit layer.

    ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H), h_n (D·L, B, H)); ``backward(d_output,
    d_h_n=None)`` → (δx, δh0).

    Equivalent loop (one layer, one direction)::

        z, h_tilde = np.split(x @ weight_ih_l0.T + bias_ih_l0, 2, axis=-1)
        for t in range(T):
            h = (1 - sigmoid(z[:, t])) * h + sigmoid(z[:, t]) * h_tilde[:, t]
            output[:, t] = h
    """

    cell_class = MinGRUStep
    catalog = CellEntry("mingru", options=("mode",))


class MinLSTM(_MinimalLayer):
    r"""Multi-layer minLSTM (Feng et al. 2024): h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t with f'_t, i'_t = f_t, i_t / (f_t
    + i_t), f_t = σ(x_t W_fᵀ + b_f), i_t = σ(x_t W_iᵀ + b_i), h̃_t = x_t W_hᵀ + b_h — no recurrent weights.

    ``MinLSTM(input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
    mode='sequential', stateful=False, dtype=float32)``

    Parameters per layer k: ``weight_ih_l{k}`` (3H, H_in or D·H) and ``bias_ih_l{k}`` (3H), rows [f | i | h],
    ~ U(−1/√H, 1/√H). ``mode`` as in `MinGRU`. ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H),
    h_n (D·L, B, H)); ``backward(d_output, d_h_n=None)`` → (δx, δh0).
    """

    cell_class = MinLSTMStep
    catalog = CellEntry("minlstm", options=("mode",))
