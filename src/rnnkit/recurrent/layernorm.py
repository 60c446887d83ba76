"""Layer normalisation for recurrent cells (Ba, Kiros & Hinton 2016): the row-wise normalisation and its backward,
and `LayerNormCell`, the base of `LayerNormLSTMStep` and `LayerNormGRUStep`.

For a row v of width K (the K features of one batch row at one step):

    μ = (1/K) Σ_j v_j,   σ² = (1/K) Σ_j (v_j − μ)²   (biased, as ``torch.nn.LayerNorm``),   s = 1/√(σ² + ε)
    v̂ = (v − μ) s,       LN(v; γ, β) = γ ⊙ v̂ + β                                            ε = 1e-5

Backward, given δy for y = LN(v; γ, β) (⟨·⟩ the mean over the row's K features):

    δv̂ = δy ⊙ γ,   δv = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩),   δγ = Σ_rows δy ⊙ v̂,   δβ = Σ_rows δy

A cell keeps v̂ and s of each normalisation (the cache), never v, μ or σ.

`LayerNormCell` owns the input side, which is whole-sequence work outside the time loop: ``project`` computes P_x = X
W_ihᵀ for all T·B rows, normalises each row (keeping X̂ and s_x in the call's workspace) and returns XP = γ_x ⊙ X̂ + β_x
+ b; ``add_input_grads`` is its backward in ``accumulate`` (δγ_x, δβ_x, δP_x through the normalisation, δW_ih = δP_xᵀ X,
δX = δP_x W_ih — the last three, and δW_hh below, made behind the backward loop where ``sums_behind`` gives a
`rnnkit.kernels.behind.Behind`, and the γ's and β's too where the cell names them, `row_sums_behind`: both cells). The
recurrent side is per step (it needs h_{t−1}): a step keeps ĥ and s_h in ``ws.h_hat`` / ``ws.h_inv_std`` and its
backward writes δP_h into ``ws.dp_h``; ``add_recurrent_grads`` then adds δγ_h, δβ_h and δW_hh = Σ δP_hᵀ h_{t−1} as
whole-sequence reductions.

Ragged batches: the runner zeroes δXP (and `cell.per_step` its arrays) in rows past a sequence's end, and
every gradient here is a product with those, so padded rows contribute exactly zero, although their normalised
values (LN of a row of zeros is β, not 0) are not zero.
"""

from __future__ import annotations

import math

import numpy as np

from ..module import Parameter, as_rng, check_bool, is_grad_enabled
from .cell import Workspace, for_backward, per_step, transposed
from .gated import GatedCell
from .products import matmul

EPS = 1e-5


def layer_norm(v: np.ndarray, gamma: np.ndarray, beta: np.ndarray, hat: np.ndarray, inv_std: np.ndarray,
               out: np.ndarray, kernels=None) -> np.ndarray:
    """LN over the last axis: ``hat`` ← v̂ = (v − μ) s, ``inv_std`` (rows, 1) ← s, ``out`` ← γ ⊙ v̂ + β (``out`` may
    be ``v``); returns ``out``. ``kernels``: the compiled kernels (one pass per row) or None for this NumPy code."""
    if kernels is not None:
        kernels.layer_norm_rows(v, gamma, beta, hat, inv_std, out)
        return out
    np.subtract(v, v.mean(axis=-1, keepdims=True), out=hat)
    variance = np.mean(np.square(hat), axis=-1, keepdims=True)
    np.divide(1.0, np.sqrt(variance + EPS), out=inv_std)
    hat *= inv_std
    np.multiply(hat, gamma, out=out)
    out += beta
    return out


def layer_norm_backward(dy: np.ndarray, gamma: np.ndarray, hat: np.ndarray, inv_std: np.ndarray,
                        out: np.ndarray, kernels=None) -> np.ndarray:
    """δv = s (δv̂ − ⟨δv̂⟩ − v̂ ⟨δv̂ ⊙ v̂⟩) with δv̂ = δy ⊙ γ, over the last axis, into ``out`` (may be ``dy``)."""
    if kernels is not None:
        kernels.layer_norm_rows_backward(dy, gamma, hat, inv_std, out)
        return out
    d_hat = dy * gamma
    mean_d = d_hat.mean(axis=-1, keepdims=True)
    mean_dh = np.mean(d_hat * hat, axis=-1, keepdims=True)
    np.multiply(hat, mean_dh, out=out)
    np.subtract(d_hat, out, out=out)
    out -= mean_d
    out *= inv_std
    return out


class LayerNormCell(GatedCell):
    """A cell with layer-normalised input and recurrent projections (γ = 1, β = 0 initially): the parameters
    ``layernorm_x_weight``/``layernorm_x_bias`` (γ_x, β_x) and ``layernorm_h_weight``/``layernorm_h_bias``
    (γ_h, β_h), each of width G; the input side (whole sequence) and the recurrent side's whole-sequence sums.
    Subclasses give ``input_bias`` (the bias added to the projection) and the step."""

    #: whether the cell has ``bias_hh`` beside ``bias_ih`` (GRU: b_hn sits inside r ⊙ (…))
    hidden_bias = True
    forward_only = (*GatedCell.forward_only, "product")

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, rng=None):
        rng = as_rng(rng)
        super().__init__(input_size, hidden_size, bias=False, dtype=dtype, rng=rng)
        self.bias = check_bool("bias", bias)
        g, bound = self.gate_width, 1.0 / math.sqrt(hidden_size)
        if bias:  # U(−1/√H, 1/√H) as PyTorch's biases
            self.bias_ih = Parameter(rng.uniform(-bound, bound, g).astype(dtype))
            self.bias_hh = Parameter(rng.uniform(-bound, bound, g).astype(dtype)) if self.hidden_bias else None
        self.layernorm_x_weight, self.layernorm_x_bias = self.gain_and_shift(g, dtype)
        self.layernorm_h_weight, self.layernorm_h_bias = self.gain_and_shift(g, dtype)

    @staticmethod
    def gain_and_shift(width: int, dtype) -> tuple[Parameter, Parameter]:
        """γ = 1 and β = 0 of one normalisation, as ``torch.nn.LayerNorm``."""
        return Parameter(np.ones(width, dtype)), Parameter(np.zeros(width, dtype))

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, **options):
        g = cls.num_gates * hidden_size
        return g * (input_size + hidden_size) + 4 * g + ((2 if cls.hidden_bias else 1) * g if bias else 0)

    def input_bias(self) -> np.ndarray | None:  # pragma: no cover - abstract
        """The bias added to the normalised projection (None without bias)."""
        raise NotImplementedError

    def allocate(self, steps, batch, ragged=False):
        """Adds ``gates`` (T, B, G) the activated gates — or, for the compiled whole-sequence loop, ``product``
        (B, G), one step's recurrent product, the gates going over the projection (`sequence_forward`) —,
        ``h_hat`` (T, B, G) ĥ, ``h_inv_std`` (T, B, 1) s_h (`history_steps` of them), ``dp_h`` (T, B, G) δP_h
        (written by the backward); ``project`` adds ``x_hat`` (T·B, G) X̂ and ``x_inv_std`` (T·B, 1) s_x."""
        ws = super().allocate(steps, batch, ragged)
        g, dt, kept = self.gate_width, self.dtype, self.history_steps(steps, batch)
        whole = self.runs_whole_sequence(batch)
        ws.gates = None if whole else per_step(kept, batch, g, dt, ragged)
        ws.product = np.empty((batch, g), dt) if whole else None
        ws.h_hat = per_step(kept, batch, g, dt, ragged)
        ws.h_inv_std = per_step(kept, batch, 1, dt, ragged)
        ws.dp_h = for_backward((steps, batch, g), dt, ragged)
        return ws

    def history_steps(self, steps: int, batch: int) -> int:
        """The steps the forward's per-step histories (ĥ, s_h and each cell's own) hold: every step's, where a
        backward may read them; one, overwritten at every step (`rnnkit.kernels.sequence_loop.history_slot`), in a
        compiled whole-sequence call under `rnnkit.no_grad`, where writing all T of them (the gates then among them)
        cost LN-LSTM inference at B = 16, H = 256 about 0.7 ms of 12.5."""
        return 1 if not is_grad_enabled() and self.runs_whole_sequence(batch) else steps

    def sequence_forward(self, ws, xp, states, counts, reverse, zoneout, ahead=None):
        """The compiled loop writes the activated gates over the projection ``xp`` (each step's product goes into a
        (B, G) buffer, ``ws.product``), so ``xp`` becomes the call's gate history: `allocate` makes no ``ws.gates``
        for it, one (T, B, G) array less to write and to hold during the forward (docs/performance-history.md, twenty-
        fourth part: the LN-LSTM's training forward at B = 16, H = 256 had spent 1.0 – 1.3 ms on its histories)."""
        ws.gates = xp
        super().sequence_forward(ws, xp, states, counts, reverse, zoneout, ahead)

    # -- the input side: whole sequence -----------------------------------------------------------------
    def projection_terms(self):
        return self.weight_ih.data, self.input_bias(), (self.layernorm_x_weight.data, self.layernorm_x_bias.data)

    def project(self, x: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        """XP = LN(X W_ihᵀ; γ_x, β_x) + b for all T·B rows (`projection_terms`); X̂ and s_x go into ``ws``."""
        weight, b, (gamma, beta) = self.projection_terms()
        xp = matmul(x, transposed(weight))
        ws = Workspace() if ws is None else ws
        ws.x_hat, ws.x_inv_std = np.empty_like(xp), np.empty((xp.shape[0], 1), xp.dtype)
        layer_norm(xp, gamma, beta, ws.x_hat, ws.x_inv_std, out=xp, kernels=getattr(ws, "kernels", None))
        if b is not None:
            xp += b
        return xp

    def add_input_grads(self, ws: Workspace, x: np.ndarray, dxp: np.ndarray, dxp_sum: np.ndarray,
                        behind=None) -> np.ndarray:
        """δγ_x += Σ δa ⊙ X̂,  δβ_x += Σ δa (``dxp_sum``, the caller's, which the bias takes too),  δP_x = LN backward
        of δa,  δW_ih += δP_xᵀ X;  returns δX = δP_x W_ih. (δa = δXP, the gradient of the pre-activation that the
        input side adds to.) With ``behind`` (`sums_behind`, its loop done) the last three are its, and δγ_x too
        where it made the cell's row sums (`row_sums_behind`)."""
        if behind is None or not behind.row_sums:
            self.layernorm_x_weight.grad += np.einsum("ng,ng->g", dxp, ws.x_hat)
        self.layernorm_x_bias.grad += dxp_sum
        if behind is not None:
            return behind.dx
        dp_x = layer_norm_backward(dxp, self.layernorm_x_weight.data, ws.x_hat, ws.x_inv_std, np.empty_like(dxp),
                                   kernels=ws.kernels)
        matmul(dp_x.T, x, out=self.weight_ih.grad, accumulate=True)
        return matmul(dp_x, self.weight_ih.data)

    # -- the recurrent side: sums over the sequence of what the steps stored -------------------------------
    def add_recurrent_grads(self, ws: Workspace, dq: np.ndarray, dq_sum: np.ndarray, h_prev: np.ndarray,
                            behind=None) -> None:
        """δγ_h += Σ δq ⊙ ĥ,  δβ_h += Σ δq (``dq_sum``, the caller's),  δW_hh += Σ δP_hᵀ h_{t−1} (``behind``'s,
        where given, and δγ_h too where it made the cell's row sums); δq (T·B, G) is the gradient of
        LN(h_{t−1} W_hhᵀ; γ_h, β_h), δP_h the backward's ``ws.dp_h``."""
        rows, g = dq.shape
        if behind is None or not behind.row_sums:
            self.layernorm_h_weight.grad += np.einsum("ng,ng->g", dq, ws.h_hat.reshape(rows, g))
        self.layernorm_h_bias.grad += dq_sum
        if behind is None:
            matmul(ws.dp_h.reshape(rows, g).T, h_prev, out=self.weight_hh.grad, accumulate=True)

    def sums_behind(self, ws: Workspace, x: np.ndarray, h_prev: np.ndarray, reverse: bool):
        """`GatedCell.sums_behind` for the layer-normalised cells, whose ``accumulate`` takes it: δW_hh sums the
        normalised recurrent product's δ that the loop writes (``ws.dp_h``), and the input side's chunks go through
        LN's backward first (δP_x); the sums over the normalisations' γ and β, and the biases', where the cell names
        them (`row_sums_behind`), else in ``accumulate``."""
        from ..kernels.behind import Behind

        grads = (self.weight_ih.grad, self.weight_hh.grad, None, None)  # the biases' sums: `row_sums_behind`
        dxp = self.sequence_gate_grads(ws, *x.shape[:2])
        return Behind(dxp, x, h_prev, self.weight_ih.data, grads, reverse, d_rec=ws.dp_h,
                      norm=(self.layernorm_x_weight.data, ws.x_hat, ws.x_inv_std),
                      sums=self.row_sums_behind(ws, dxp.reshape(-1, dxp.shape[-1])))

    def makes_sums_behind(self) -> bool:
        """`Cell.makes_sums_behind`: yes, its ``accumulate`` takes them (`sums_behind`)."""
        return True

    def row_sums_behind(self, ws: Workspace, dxp: np.ndarray) -> tuple | None:
        """The sums over rows that `sums_behind`'s tasks make for ``accumulate`` (``sums`` of
        `rnnkit.kernels.behind.Behind`: products and totals), ``dxp`` the loop's δa (T·B, G); None (this default):
        ``accumulate`` makes them after the loop."""
        return None
