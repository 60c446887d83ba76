"""Recurrent Highway Network (Zilly et al. 2017): L highway micro-cells per time step."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..activations import sigmoid
from ..errors import ConfigError
from ..module import MAX_COUNT, check_bool, check_float, check_int
from .catalog import CellEntry
from .cell import Workspace, dsigmoid, dtanh, for_backward
from .gated import GatedCell
from .layer import RecurrentLayer
from .products import matmul


class RHNStep(GatedCell):
    r"""One RHN time step of ``depth`` L micro-cells; gates fused per depth as [h, τ] (coupled) or [h, τ, c].

    Notation: t is time; τ is the transform gate, c the carry gate. With s^0 = s_{t-1} (the previous step's last
    micro-state) and l = 1..L:

        a^l = s^{l-1} R_lᵀ + b_l  (+ x_t W_ihᵀ + b_ih for l = 1 only: the input enters the first micro-cell)
        h^l = tanh(a^l_h),   τ^l = σ(a^l_τ),   c^l = 1 − τ^l (coupled) or σ(a^l_c)
        s^l = h^l ⊙ τ^l + s^{l-1} ⊙ c^l,        s_t = s^L (the output and the state)

    Parameters: ``weight_ih`` (G, I), ``bias_ih`` (G) for the first micro-cell; ``weight_hh`` (L·G, H) and
    ``bias_hh`` (L·G) hold R_l and b_l stacked by depth (G = 2H coupled, 3H otherwise).

    Backward through the micro-cells, from δs^L = δs_t:

        δh = δs^l ⊙ τ,   δτ = δs^l ⊙ (h − s^{l-1}) coupled, δs^l ⊙ h otherwise,   δc = δs^l ⊙ s^{l-1}
        δa_h = δh ⊙ (1 − h²),   δa_τ = δτ ⊙ τ (1 − τ),   δa_c = δc ⊙ c (1 − c)
        δs^{l-1} = δs^l ⊙ c + δa^l R_l,     δs_{t-1} = δs^0
        after the loop, per depth: δR_l += Σ_t δa^lᵀ s^{l-1},  δb_l += Σ_t δa^l;  δW_ih += Σ_t δa^1ᵀ x_t

    Workspace: ``gates`` (L, T, B, G) activated gates per depth, ``inputs`` (L, T, B, H) the micro-state inputs
    s^{l-1}, ``dgates`` (L, T, B, G) δa^l (depth 1's is the runner's δxp), ``r_t`` (L, H, G) the contiguous R_lᵀ,
    ``biases`` (L, G) the b_l (zeros without bias), ``scratch`` (B, H), ``kernels``. With compiled kernels the
    whole time loop is one compiled call (`rnnkit.kernels.rhn`), the step above and its backward in numba.
    """

    #: the carry gate is 1 − τ (this class) or a gate of its own (`UncoupledRHNStep`)
    coupled = True
    num_gates = 2
    forward_only = ("r_t",)
    gate_names = ("h", "transform")
    fold_hidden_bias = False  # b_hh holds the micro-cells' biases b_l, added per depth inside the step

    def __init__(self, input_size, hidden_size, bias=True, depth=1, coupled=True, transform_bias=-2.0,
                 dtype=np.float32, rng=None):
        """``coupled``: accepted from the layer's options; it must be the class's (`rhn_step_class` picks it)."""
        depth, coupled = check_int("depth", depth, 1, MAX_COUNT), check_bool("coupled", coupled)
        transform_bias = check_float("transform_bias", transform_bias)
        if coupled != self.coupled:
            raise ConfigError(f"{type(self).__name__} has coupled={self.coupled}, got coupled={coupled} "
                              "(rhn_step_class(coupled) is the class for it)")
        super().__init__(input_size, hidden_size, bias=bias, hidden_rows=depth * self.num_gates * hidden_size,
                         dtype=dtype, rng=rng)
        self.depth = depth
        if bias:  # the transform gate starts mostly closed, s^l ≈ s^{l-1}; x adds no second bias to it
            self.bias_hh.data.reshape(depth, self.num_gates, hidden_size)[:, 1] = transform_bias
            self.bias_ih.data[hidden_size:2 * hidden_size] = 0.0

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, depth=1, coupled=True, **options):
        g = rhn_step_class(coupled).num_gates * hidden_size
        return g * input_size + depth * g * hidden_size + ((g + depth * g) if bias else 0)

    def allocate(self, steps, batch, ragged=False):
        make = np.zeros if ragged else np.empty
        g, hs, depth = self.gate_width, self.hidden_size, self.depth
        w = self.recurrent_weights()
        biases = self.bias_hh.data.reshape(depth, g) if self.bias else np.zeros((depth, g), self.dtype)
        return Workspace(gates=make((depth, steps, batch, g), self.dtype),
                         inputs=make((depth, steps, batch, hs), self.dtype),
                         dgates=for_backward((depth, steps, batch, g), self.dtype, ragged),
                         r_t=np.ascontiguousarray(w.transpose(0, 2, 1)), biases=biases,
                         scratch=np.empty((batch, hs), self.dtype), kernels=kernels.active())

    # -- the whole loop in one compiled call --------------------------------------------------------------------
    whole_sequence = True

    def compiled_loop(self, ws):
        from ..kernels import rhn as fused  # numba is loaded only with compiled kernels active
        from ..kernels.blas import loop_weights

        return fused.rhn_sequence_forward, (loop_weights(ws.r_t), ws.biases, ws.gates, ws.inputs, self.coupled)

    def compiled_loop_backward(self, ws):
        from ..kernels import rhn as fused
        from ..kernels.blas import loop_weights

        return fused.rhn_sequence_backward, (loop_weights(self.recurrent_weights()), ws.gates, ws.inputs, ws.dgates,
                                             self.coupled)

    def gate_activations(self, ws):
        h = self.hidden_size
        return {f"{name}{l + 1}": ws.gates[l, ..., k * h:(k + 1) * h]
                for l in range(self.depth) for k, name in enumerate(self.gate_names)}

    def loop_work(self, steps, batch):
        return self.depth * super().loop_work(steps, batch)  # one product per micro-cell

    def recurrent_weights(self, grad: bool = False) -> np.ndarray:
        """R_l stacked by depth, (L, G, H): a view of ``weight_hh`` (of its gradient with ``grad``)."""
        array = self.weight_hh.grad if grad else self.weight_hh.data
        return array.reshape(self.depth, self.gate_width, self.hidden_size)

    def step(self, ws, t, xp, prev, new):
        n = xp.shape[0]
        s = prev[0]
        for l in range(self.depth):
            a, s_in = ws.gates[l, t, :n], ws.inputs[l, t, :n]
            s_in[...] = s
            np.matmul(s, ws.r_t[l], out=a)  # a^l = s^{l-1} R_lᵀ + b_l (+ x W_ihᵀ + b_ih)
            out = new[0] if l == self.depth - 1 else ws.inputs[l + 1, t, :n]
            if ws.kernels is not None:
                ws.kernels.rhn_forward(a, ws.biases[l], xp, l == 0, s_in, self.coupled, out)
            else:
                self._micro_cell_forward(a, ws.biases[l], xp if l == 0 else None, s_in, out, ws.scratch[:n])
            s = out

    def _micro_cell_forward(self, a, b_l, xp, s_in, out, tmp):
        """NumPy: activate a^l in place and write s^l into ``out`` (`rnnkit.kernels.rhn.rhn_forward`)."""
        hs = self.hidden_size
        a += b_l
        if xp is not None:
            a += xp
        h, tau = a[:, :hs], a[:, hs:2 * hs]
        np.tanh(h, out=h)
        sigmoid(a[:, hs:], out=a[:, hs:])  # τ (and c when uncoupled)
        if self.coupled:  # s^l = s^{l-1} + τ ⊙ (h − s^{l-1})
            np.subtract(h, s_in, out=out)
            out *= tau
            out += s_in
        else:  # s^l = h ⊙ τ + s^{l-1} ⊙ c
            np.multiply(h, tau, out=out)
            out += np.multiply(s_in, a[:, 2 * hs:], out=tmp)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        n = dxp.shape[0]
        ds = dstate[0]
        for l in reversed(range(self.depth)):
            a, s_in = ws.gates[l, t, :n], ws.inputs[l, t, :n]
            da = dxp if l == 0 else ws.dgates[l, t, :n]
            if ws.kernels is not None:
                ws.kernels.rhn_backward(ds, a, s_in, self.coupled, da)
            else:
                self._micro_cell_backward(ds, a, s_in, da, ws.scratch[:n])
            ds += da @ self.recurrent_weights()[l]  # δs^{l-1} = δs^l ⊙ c + δa^l R_l

    def _micro_cell_backward(self, ds, a, s_in, da, tmp):
        """NumPy: δa^l into ``da``; δs^l ← δs^l ⊙ c, the carry's direct part (`rnnkit.kernels.rhn.rhn_backward`)."""
        hs = self.hidden_size
        h, tau = a[:, :hs], a[:, hs:2 * hs]
        da_h, da_tau = da[:, :hs], da[:, hs:2 * hs]
        # δa_h = δs ⊙ τ ⊙ (1 − h²)
        np.multiply(ds, tau, out=da_h)
        da_h *= dtanh(h, out=tmp)
        # δa_τ = δs ⊙ (h − s^{l-1}) ⊙ τ(1 − τ)  [coupled]  or  δs ⊙ h ⊙ τ(1 − τ)
        if self.coupled:
            np.subtract(h, s_in, out=da_tau)
            da_tau *= ds
        else:
            np.multiply(ds, h, out=da_tau)
        da_tau *= dsigmoid(tau, out=tmp)
        if self.coupled:
            np.subtract(1.0, tau, out=tmp)  # the carry: δs^{l-1} direct part δs ⊙ (1 − τ)
        else:  # δa_c = δs ⊙ s^{l-1} ⊙ c(1 − c);  direct part δs ⊙ c
            c, da_c = a[:, 2 * hs:], da[:, 2 * hs:]
            np.multiply(ds, s_in, out=da_c)
            da_c *= dsigmoid(c, out=tmp)
            tmp[...] = c
        ds *= tmp

    def accumulate(self, ws, x, dxp, prev, new):
        depth, steps, batch, g = ws.gates.shape
        rows = steps * batch
        ws.dgates[0] = dxp.reshape(steps, batch, g)
        grad = self.recurrent_weights(grad=True)
        for l in range(depth):  # δR_l += Σ_t δa^lᵀ s^{l-1},  δb_l += Σ_t δa^l
            da = ws.dgates[l].reshape(rows, g)
            grad[l] += da.T @ ws.inputs[l].reshape(rows, -1)
            if self.bias:
                self.bias_hh.grad[l * g:(l + 1) * g] += da.sum(axis=0)
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        if self.bias:
            self.bias_ih.grad += dxp.sum(axis=0)
        return matmul(dxp, self.weight_ih.data)


class UncoupledRHNStep(RHNStep):
    """`RHNStep` with a carry gate of its own: c^l = σ(a^l_c), gates fused per depth as [h, τ, c]."""

    coupled = False
    num_gates = 3
    gate_names = ("h", "transform", "carry")
    whole_sequence = True  # the same loop, compiled with coupled=False


def rhn_step_class(coupled: bool) -> type[RHNStep]:
    """The step class of an RHN with a coupled (c = 1 − τ) or an own carry gate."""
    return RHNStep if coupled else UncoupledRHNStep


class RHN(RecurrentLayer):
    r"""Recurrent Highway Network: ``RHN(input_size, hidden_size, depth=1, coupled=True, transform_bias=-2.0,
    num_layers=1, bias=True, dropout=0.0, bidirectional=False, stateful=False, dtype=float32)``.

    Per layer k: ``weight_ih_l{k}`` (G, H_in), ``bias_ih_l{k}`` (G), ``weight_hh_l{k}`` (depth·G, H),
    ``bias_hh_l{k}`` (depth·G), G = 2H (coupled carry gate c = 1 − t) or 3H. See `RHNStep` for the equations.
    ``forward(x, s0=None, lengths=None)`` → (output (B, T, D·H), s_n (D·L, B, H)).
    """

    cell_class = RHNStep
    catalog = CellEntry("rhn", options=("depth", "coupled", "transform_bias"),
                        variants={"coupled": {"depth": 2}, "uncoupled": {"depth": 2, "coupled": False},
                                  "no-bias": {"depth": 3, "bias": False}})

    def __init__(self, input_size, hidden_size, depth=1, coupled=True, transform_bias=-2.0, num_layers=1, bias=True,
                 dropout=0.0, bidirectional=False, stateful=False, dtype=np.float32, rng=None, return_state=True):
        self.cell_class = rhn_step_class(check_bool("coupled", coupled))  # this layer's variant
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state,
                         depth=depth,
                         coupled=coupled, transform_bias=transform_bias)
        self.depth, self.coupled = depth, coupled
