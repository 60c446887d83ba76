"""Gated recurrent unit: `GRUStep` math (both reset placements) and the `GRU` layer (= ``torch.nn.GRU``)."""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from ..module import check_bool, check_choice
from .catalog import CellEntry
from .cell import dsigmoid, dtanh, per_step, transpose_for
from .gated import GatedCell
from .layer import RecurrentLayer
from .products import matmul

#: the two conventions of the update gate z: which of h_{t-1} and the candidate n it weights
UPDATE_GATES = ("pytorch", "lecture")


def gru_output(n, z, h_prev, h_new, lecture=False):
    """PyTorch: h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, computed as n + z ⊙ (h_{t-1} − n), into ``h_new``;
    ``lecture``: h_t = (1 − z) ⊙ h_{t-1} + z ⊙ n, computed as h_{t-1} + z ⊙ (n − h_{t-1})."""
    kept, taken = (n, h_prev) if lecture else (h_prev, n)
    np.subtract(kept, taken, out=h_new)
    h_new *= z
    h_new += taken


def backward_z_n(hs, dh, gates, h_prev, dxp, tmp, lecture=False):
    """NumPy, PyTorch's z: δa_n = δh ⊙ (1 − z) ⊙ (1 − n²),  δa_z = δh ⊙ (h_{t-1} − n) ⊙ z(1 − z),  δh ← δh ⊙ z;
    the lecture's z:     δa_n = δh ⊙ z ⊙ (1 − n²),        δa_z = δh ⊙ (n − h_{t-1}) ⊙ z(1 − z),  δh ← δh ⊙ (1 − z)."""
    z, n = gates[:, hs:2 * hs], gates[:, 2 * hs:]
    da_z, da_n = dxp[:, hs:2 * hs], dxp[:, 2 * hs:]
    weight_of_n = z if lecture else np.subtract(1.0, z, out=tmp)  # ∂h_t/∂n
    np.multiply(dh, weight_of_n, out=da_n)
    da_n *= dtanh(n, out=tmp)
    if lecture:  # ∂h_t/∂z = n − h_{t-1}
        np.subtract(n, h_prev, out=da_z)
    else:  # ∂h_t/∂z = h_{t-1} − n
        np.subtract(h_prev, n, out=da_z)
    da_z *= dh
    da_z *= dsigmoid(z, out=tmp)
    dh *= np.subtract(1.0, z, out=tmp) if lecture else z  # ∂h_t/∂h_{t-1} through the mix


def backward_r_after(hs, gates, inner, dxp, dq, tmp):
    """NumPy, reset after: δa_r = δa_n ⊙ inner ⊙ r(1 − r) (inner = the recurrent n-projection + b_hn);
    δq = [δa_r, δa_z, δa_n ⊙ r]."""
    r = gates[:, :hs]
    np.multiply(dxp[:, 2 * hs:], inner, out=dxp[:, :hs])
    dxp[:, :hs] *= dsigmoid(r, out=tmp)
    dq[:, :2 * hs] = dxp[:, :2 * hs]
    np.multiply(dxp[:, 2 * hs:], r, out=dq[:, 2 * hs:])


class GRUStep(GatedCell):
    r"""One GRU step; gates fused in PyTorch's order r, z, n (rows of ``weight_ih``/``weight_hh``).

    ``reset_after=True`` (PyTorch, cuDNN, Keras' default): the reset gate scales the recurrent matmul's result

        r = σ(x W_ih[r]ᵀ + b_ir + h_{t-1} W_hh[r]ᵀ + b_hr)
        z = σ(x W_ih[z]ᵀ + b_iz + h_{t-1} W_hh[z]ᵀ + b_hz)
        n = tanh(x W_ih[n]ᵀ + b_in + r ⊙ (h_{t-1} W_hh[n]ᵀ + b_hn))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    W_ih[g] and W_hh[g] are the H rows of gate g in ``weight_ih`` and ``weight_hh`` (W_hh[r,z]: the first 2H rows);
    b_ig and b_hg those of ``bias_ih`` and ``bias_hh``. (PyTorch's documentation writes the weight blocks W_ig, W_hg;
    here they keep the parameter's name, since an LSTM's W_hr is its projection ``weight_hr``.)

    ``reset_after=False`` (Cho et al. 2014, the lecture form): n = tanh(x W_ih[n]ᵀ + b_in + (r ⊙ h_{t-1}) W_hh[n]ᵀ
    + b_hn), which needs a second recurrent matmul per step (it depends on r).

    ``update_gate`` says which of h_{t-1} and n the gate z weights (deck 001 writes n as o_t, its matrices W_Ro, W_o):

        update_gate="pytorch" (default):  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}     (z keeps the previous state)
        update_gate="lecture":            h_t = (1 − z) ⊙ h_{t-1} + z ⊙ n     (z takes the candidate)

    The lecture's GRU is ``GRU(..., reset_after=False, update_gate="lecture")``. The two forms are the same function
    family (z ↔ 1 − z, i.e. negated z-rows of the weights and biases), not the same function for equal weights.
    The compiled kernels and loop take both forms (``lecture_z``).

    Backward, given δh_t:

        δn = δh_t ⊙ (1 − z),   δz = δh_t ⊙ (h_{t-1} − n),   δa_n = δn ⊙ (1 − n²),   δa_z = δz ⊙ z (1 − z)
        (lecture:  δn = δh_t ⊙ z,   δz = δh_t ⊙ (n − h_{t-1}),   and δh_t ⊙ (1 − z) instead of δh_t ⊙ z below)
        reset after:   δa_r = δa_n ⊙ (h_{t-1} W_hh[n]ᵀ + b_hn) ⊙ r (1 − r)
                       δ(recurrent pre-activation) = [δa_r, δa_z, δa_n ⊙ r] =: δq
                       δh_{t-1} = δh_t ⊙ z + δq W_hh
        reset before:  δ(r ⊙ h) = δa_n W_hh[n],   δa_r = δ(r ⊙ h) ⊙ h_{t-1} ⊙ r (1 − r)
                       δh_{t-1} = δh_t ⊙ z + δ(r ⊙ h) ⊙ r + [δa_r, δa_z] W_hh[r,z]
        after the loop: δW_ih += Σ δaᵀ x with δa = [δa_r, δa_z, δa_n];  δb_ih += Σ δa;
                        reset after:  δW_hh += Σ δqᵀ h_{t-1},  δb_hh += Σ δq
                        reset before: δW_hh[r,z] += Σ δa_{r,z}ᵀ h_{t-1},  δW_hh[n] += Σ δa_nᵀ (r ⊙ h_{t-1}),
                                      δb_hh += Σ δa

    Workspace: ``gates`` (T, B, 3H) the activated [r, z, n] (reset after, in the whole-sequence loop: the
    projection's array, the gates written over it, each step's product h_{t−1} W_hhᵀ in ``product`` (B, 3H));
    ``inner`` (T, B, H) h_{t-1} W_hh[n]ᵀ + b_hn (reset after) or r ⊙ h_{t-1} (reset before); ``scratch``
    (2, B, H); reset after: ``dq`` (B, 3H), δq of the step the backward is at (the sums after the loop rebuild
    δq's n block, δa_n ⊙ r, from δa and the gates), ``b_hn`` and ``w_hh_t``; reset before: ``w_rz_t`` = W_hh[r,z]ᵀ
    and ``w_n_t`` = W_hh[n]ᵀ (contiguous, or views where only the loop's panels read them:
    `GatedCell.transposes_as_views`).
    """

    num_gates = 3
    gate_names = ("r", "z", "n")
    supports_recurrent_masks = True  # recurrent dropout with reset_after only (see `use_masks`)

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, update_gate="pytorch",
                 dtype=np.float32, rng=None):
        reset_after = check_bool("reset_after", reset_after)
        update_gate = check_choice("update_gate", update_gate, UPDATE_GATES)
        super().__init__(input_size, hidden_size, bias=bias, dtype=dtype, rng=rng)
        self.reset_after, self.update_gate = reset_after, update_gate
        self.lecture_z = update_gate == "lecture"

    @property
    def fold_hidden_bias(self) -> bool:
        """b_hn sits inside r ⊙ (...) when the reset comes after the matmul, so only b_hr, b_hz can be folded
        there (`project` then adds them itself)."""
        return not self.reset_after

    def allocate(self, steps, batch, ragged=False):
        ws = super().allocate(steps, batch, ragged)
        h, dt = self.hidden_size, self.dtype
        in_projection = self.reset_after and self.runs_whole_sequence(batch)  # the gates go over xp
        ws.gates = None if in_projection else per_step(steps, batch, 3 * h, dt, ragged)
        ws.product = np.empty((batch, 3 * h), dt) if in_projection else None  # h_{t−1} W_hhᵀ of one step
        ws.inner = per_step(steps, batch, h, dt, ragged)
        ws.scratch = np.empty((2, batch, h), dt)  # no temporaries in the loop
        if self.reset_after:
            ws.dq = np.empty((batch, 3 * h), dt)  # δq of one step (`accumulate` needs no history of it)
            ws.b_hn = self.bias_hh.data[2 * h:] if self.bias else np.zeros(h, dt)
        return ws

    def transpose_recurrent(self, ws):
        """W_hhᵀ; reset before: two recurrent GEMMs per step, each with a Wᵀ of its own (W_hh[r,z]ᵀ, W_hh[n]ᵀ)."""
        h = self.hidden_size
        if self.reset_after:
            super().transpose_recurrent(ws)
        else:
            ws.w_rz_t, ws.w_n_t = transpose_for(ws, ws.w_hh[:2 * h]), transpose_for(ws, ws.w_hh[2 * h:])

    def recurrent_mask_problem(self, recurrent, weight):
        """Recurrent dropout as Keras applies it: h_{t−1} ⊙ m_h in the matmul, the unmasked h_{t−1} in
        z ⊙ h_{t−1}; implemented for ``reset_after=True`` (weight drop for both placements)."""
        if recurrent and not self.reset_after:
            return "recurrent dropout is implemented for reset_after=True (the PyTorch form)"
        return None

    def projection_terms(self):
        """Reset after: b_ih + [b_hr, b_hz, 0] (b_hn stays inside r ⊙ (…), `fold_hidden_bias`)."""
        weight, bias, norm = super().projection_terms()
        if self.bias and self.reset_after:
            h = self.hidden_size
            bias = np.concatenate([bias[:2 * h] + self.bias_hh.data[:2 * h], bias[2 * h:]])
        return weight, bias, norm

    whole_sequence = True
    forward_only = ("w_hh_t", "w_hh_loop", "w_rz_t", "w_n_t", "product")
    #: reset after: a unit's gates need only its columns of h_{t−1} W_hhᵀ (`rnnkit.kernels.team`); the backward
    #: splits whole rows for its pointwise math, then columns for the product
    team_units = ("forward", "backward")
    team_blocks = 3  # r, z, n
    batch_halves = ("inference", "training")

    def team_parts(self, batch, loop):
        return super().team_parts(batch, loop) if self.reset_after else 1

    def sequence_forward(self, ws, xp, states, counts, reverse, zoneout, ahead=None):
        """Reset after: the compiled loop writes the gates over the projection ``xp`` (`allocate` makes no
        ``ws.gates`` for it: one (T, B, 3H) array less in memory), so ``xp`` becomes the call's gate history."""
        if self.reset_after:
            ws.gates = xp
        super().sequence_forward(ws, xp, states, counts, reverse, zoneout, ahead)

    @property
    def grads_over_gates(self):
        """Reset after: the compiled backward writes δa over the gates and keeps r, which the weight sums need,
        in ``inner`` (each step's h_{t−1} W_hh[n]ᵀ + b_hn, read by that step's backward only)."""
        return self.reset_after

    def reset_history(self, ws):
        """r (T, B, H) of the call, wherever the backward left it (`grads_over_gates`)."""
        return ws.inner if ws.gates_overwritten else ws.gates[..., :self.hidden_size]

    def compiled_loop(self, ws):
        from ..kernels import gru as fused  # numba is loaded only with compiled kernels active
        from ..kernels.blas import loop_weight

        if self.reset_after:
            return fused.gru_reset_after_sequence_forward, (self.recurrent_loop_weight(ws), ws.b_hn, ws.product,
                                                            ws.inner, *self.loop_mask(ws), self.lecture_z)
        return fused.gru_reset_before_sequence_forward, (loop_weight(ws.w_rz_t), loop_weight(ws.w_n_t), ws.gates,
                                                         ws.inner, self.lecture_z)

    def compiled_loop_backward(self, ws):
        from ..kernels import gru as fused
        from ..kernels.blas import loop_weight

        if self.reset_after:
            return fused.gru_reset_after_sequence_backward, (self.backward_loop_weight(ws), ws.gates, ws.inner, ws.dq,
                                                             self.loop_mask(ws)[0], ws.scratch[0], self.lecture_z)
        rz = 2 * self.hidden_size
        return fused.gru_reset_before_sequence_backward, (loop_weight(ws.w_hh[:rz]), loop_weight(ws.w_hh[rz:]),
                                                          ws.gates, ws.scratch[1], self.lecture_z)

    def step(self, ws, t, xp, prev, new):
        (h_prev,), (h_new,) = prev, new
        n_rows, hs = xp.shape[0], self.hidden_size
        gates, inner = ws.gates[t, :n_rows], ws.inner[t, :n_rows]
        fused = ws.kernels
        if self.reset_after:
            np.matmul(self.recurrent_input(ws, h_prev), ws.w_hh_t, out=gates)
            if fused is not None:
                return fused.gru_forward_reset_after(gates, xp, ws.b_hn, h_prev, inner, h_new, False, self.lecture_z)
            inner[...] = gates[:, 2 * hs:]  # h_{t-1} W_hh[n]ᵀ + b_hn
            inner += ws.b_hn
            gates[:, :2 * hs] += xp[:, :2 * hs]
            sigmoid(gates[:, :2 * hs], out=gates[:, :2 * hs])
            np.multiply(gates[:, :hs], inner, out=gates[:, 2 * hs:])  # r ⊙ (h_{t-1} W_hh[n]ᵀ + b_hn)
        else:
            np.matmul(h_prev, ws.w_rz_t, out=gates[:, :2 * hs])
            if fused is not None:
                fused.gru_gates_reset_before(gates, xp, h_prev, inner)
            else:
                gates[:, :2 * hs] += xp[:, :2 * hs]
                sigmoid(gates[:, :2 * hs], out=gates[:, :2 * hs])
                np.multiply(gates[:, :hs], h_prev, out=inner)  # r ⊙ h_{t-1}
            np.matmul(inner, ws.w_n_t, out=gates[:, 2 * hs:])
            if fused is not None:
                return fused.gru_output_reset_before(gates, xp, h_prev, h_new, self.lecture_z)
        n, z = gates[:, 2 * hs:], gates[:, hs:2 * hs]
        n += xp[:, 2 * hs:]
        np.tanh(n, out=n)
        gru_output(n, z, h_prev, h_new, self.lecture_z)

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        (dh,), (h_prev,) = dstate, prev
        n_rows, hs, w_hh = dxp.shape[0], self.hidden_size, ws.w_hh
        fused = ws.kernels
        gates, inner = ws.gates[t, :n_rows], ws.inner[t, :n_rows]
        tmp, rec = ws.scratch[0, :n_rows], ws.scratch[1, :n_rows]
        if self.reset_after:  # δh_{t-1} = δh ⊙ z + δq W_hh
            dq = ws.dq[:n_rows]
            if fused is not None:
                fused.gru_backward_reset_after(dh, gates, inner, h_prev, dxp, dq, False, self.lecture_z)
            else:
                backward_z_n(hs, dh, gates, h_prev, dxp, tmp, self.lecture_z)
                backward_r_after(hs, gates, inner, dxp, dq, tmp)
            dh += self.through_recurrent_mask(ws, np.matmul(dq, w_hh, out=rec))
        else:  # δh_{t-1} = δh ⊙ z + δ(r ⊙ h) ⊙ r + [δa_r, δa_z] W_hh[r,z]
            if fused is not None:
                fused.gru_backward_reset_before_zn(dh, gates, h_prev, dxp, self.lecture_z)
            else:
                backward_z_n(hs, dh, gates, h_prev, dxp, tmp, self.lecture_z)
            d_rh = np.matmul(dxp[:, 2 * hs:], w_hh[2 * hs:], out=rec)  # δ(r ⊙ h) = δa_n W_hh[n]
            if fused is not None:
                fused.gru_backward_reset_before_r(d_rh, gates, h_prev, dxp, dh)
            else:  # δa_r = δ(r ⊙ h) ⊙ h_{t-1} ⊙ r(1 − r);  δh += δ(r ⊙ h) ⊙ r
                r = gates[:, :hs]
                np.multiply(d_rh, h_prev, out=dxp[:, :hs])
                dxp[:, :hs] *= dsigmoid(r, out=tmp)
                d_rh *= r
                dh += d_rh
            dh += np.matmul(dxp[:, :2 * hs], w_hh[:2 * hs], out=rec)

    def sums_behind(self, ws, x, h_prev, reverse):
        """`Cell.sums_behind` with the reset gate after the product: δW_hh sums δq = [δa_r, δa_z, δa_n ⊙ r] against
        H_prev (⊙ m_h), δb_hh = Σ δq, with r from where the backward leaves it (`reset_history`); None before it
        (its n block reads r ⊙ h_{t−1}, `accumulate`)."""
        if not self.makes_sums_behind():
            return None
        from ..kernels.behind import Behind

        dxp = self.sequence_gate_grads(ws, *x.shape[:2])  # where the loop leaves r: known from here on
        return Behind(dxp, x, self.recurrent_inputs(ws, h_prev), self.weight_ih.data,
                      self.grads_behind(ws, hidden_bias_apart=True), reverse, reset=self.reset_history(ws))

    def makes_sums_behind(self):
        """`Cell.makes_sums_behind`: with the reset gate after the product (`sums_behind`)."""
        return self.reset_after

    def accumulate(self, ws, x, dxp, prev, new, behind=None):
        """δW_ih, δb_ih = Σ δa, δW_hh and δb_hh over δq = [δa_r, δa_z, δa_n ⊙ r] (reset after) or δa with
        δW_hh[n] from r ⊙ h_{t−1} (reset before); δX. With ``behind`` (`sums_behind`, its loop done) they are its:
        only the biases and weight drop's mask are added here."""
        if behind is not None:
            return self.add_sums_behind(ws, behind)
        hs = self.hidden_size
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        rz, n = slice(0, 2 * hs), slice(2 * hs, 3 * hs)
        if self.bias:  # δb_ih = Σ δa;  δb_hh = Σ δa for r and z (one sum for both), Σ δq_n for n (below)
            db = dxp.sum(axis=0)
            self.bias_ih.grad += db
            self.bias_hh.grad[rz] += db[rz]
        h_in = self.recurrent_inputs(ws, prev[0])
        self.weight_hh.grad[rz] += self.kept_weight_grad(ws, matmul(dxp[:, rz].T, h_in), rz)
        dx = matmul(dxp, self.weight_ih.data)  # after the weight sums' temporaries, before δa_n becomes δq_n
        if self.reset_after:  # δq = [δa_r, δa_z, δa_n ⊙ r]: its n block made over δa_n, which is not needed again
            dq_n = dxp[:, n]
            dq_n *= self.reset_history(ws).reshape(-1, hs)
            n_input = h_in
        else:  # δW_hh[n] += Σ δa_nᵀ (r ⊙ h_{t-1})
            dq_n, n_input = dxp[:, n], ws.inner.reshape(-1, hs)
        self.weight_hh.grad[n] += self.kept_weight_grad(ws, matmul(dq_n.T, n_input), n)
        if self.bias:
            self.bias_hh.grad[n] += dq_n.sum(axis=0)
        return dx


class GRU(RecurrentLayer):
    r"""Multi-layer GRU with PyTorch's parameters, gate order (r, z, n) and semantics.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False, reset_after=True,
    stateful=False, dtype=float32)``

    Parameters per layer k: ``weight_ih_l{k}`` (3H, H_in), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H), all ~ U(−1/√H, 1/√H). ``reset_after=False`` gives the Cho et al. (2014) form, which has
    the same parameters but is a different function (no PyTorch counterpart); ``update_gate='lecture'`` mixes
    h_t = (1 − z) ⊙ h_{t-1} + z ⊙ n (the lectures' form; see `GRUStep`; no PyTorch counterpart either).

    ``forward(x, h0=None, lengths=None)`` → (output (B, T, D·H), h_n (D·L, B, H)); ``backward(d_output,
    d_h_n=None)`` → (δx, δh0).
    """

    cell_class = GRUStep
    catalog = CellEntry("gru", options=("reset_after",), torch_name="GRU",
                        variants={"reset-after": {}, "reset-before": {"reset_after": False}})

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 reset_after=True, stateful=False, dtype=np.float32, rng=None, return_state=True,
                 dropout_input=0.0, dropout_recurrent=0.0, zoneout=0.0, weight_drop=0.0, update_gate="pytorch"):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state,
                         reset_after=reset_after, update_gate=update_gate)
        self.reset_after, self.update_gate = reset_after, update_gate
        self.regularize(dropout_input, dropout_recurrent, zoneout, weight_drop)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False") + \
            ("" if self.update_gate == "pytorch" else f", update_gate={self.update_gate!r}")
