"""`GatedCell`, the fused-gate base of the `rnnkit.recurrent.cell.Cell` protocol: a cell of ``num_gates`` gates and
hidden size H owning PyTorch-layout parameters

    weight_ih (G, I),  weight_hh (G, R),  bias_ih (G,),  bias_hh (G,)      G = num_gates · H

(R is the size of the recurrent input: H, or the projection size for an LSTM with ``proj_size``), with the input
projection, the weight-gradient GEMMs (after the backward loop, or behind it on the other core), the recurrent dropout
/ weight drop masks and the whole-sequence hooks (`rnnkit.recurrent.compiled_loop.CompiledSequenceLoop`). The LSTM,
GRU, Elman RNN, Jordan, RHN, Mogrifier and layer-normalised cells and the defined cells subclass it."""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import UsageError
from ..module import Parameter, as_rng
from .cell import Cell, Workspace, gate_blocks, input_projection, masks_not_implemented, transpose_for
from .compiled_loop import CompiledSequenceLoop
from .products import matmul


class GatedCell(CompiledSequenceLoop, Cell):
    """The fused-gate base of `Cell`: the W_ih/W_hh/b layout, the input projection, the weight-gradient GEMMs,
    recurrent dropout / weight drop masks and the whole-sequence hooks. Subclasses write ``step``/``step_backward``
    (and ``allocate`` for their per-step arrays)."""

    forward_only = ("w_hh_t", "w_hh_loop")

    num_gates = 1
    state_names: tuple[str, ...] = ("h",)
    gate_names: tuple[str, ...] = ()
    #: whether b_hh can be added once to the projection (false where a gate multiplies it, as in GRU's n)
    fold_hidden_bias = True
    #: whether the cell's recurrent matmuls honour a recurrent dropout mask and weight drop (`use_masks`)
    supports_recurrent_masks = False

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, recurrent_size: int | None = None,
                 hidden_rows: int | None = None, dtype=np.float32, rng=None):
        """``hidden_rows``: rows of ``weight_hh`` and ``bias_hh`` when they are not G (RHN stacks its depths; 0: no
        recurrent weight or bias, as in a defined cell without a recurrent state)."""
        super().__init__()
        rng = as_rng(rng)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.recurrent_size = hidden_size if recurrent_size is None else recurrent_size
        g = self.num_gates * hidden_size
        rows = g if hidden_rows is None else hidden_rows
        bound = 1.0 / math.sqrt(hidden_size)

        def uniform(*shape):
            return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))

        self.weight_ih = uniform(g, input_size)
        self.weight_hh = uniform(rows, self.recurrent_size) if rows else None
        self.bias_ih = uniform(g) if bias else None
        self.bias_hh = uniform(rows) if bias and rows else None

    # -- description ----------------------------------------------------------------------------------
    @classmethod
    def parameter_count(cls, input_size: int, hidden_size: int, bias: bool = True, **options) -> int:
        """How many numbers a cell of these sizes and ``options`` holds, computed without building it (memory
        estimates check a size before anything is allocated; a test keeps it equal to the built cell's count)."""
        g = cls.num_gates * hidden_size
        return g * (input_size + hidden_size) + (2 * g if bias else 0)

    @classmethod
    def output_width(cls, hidden_size: int, **options) -> int:
        """The width of the output of a cell with these options (the next layer's input per direction)."""
        return hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.recurrent_size,)

    @property
    def output_size(self) -> int:
        return self.state_sizes[0]

    @property
    def gate_width(self) -> int:
        """G, the width of the fused pre-activation ``xp``/``dxp``."""
        return self.num_gates * self.hidden_size

    def gate_activations(self, ws: Workspace) -> dict[str, np.ndarray]:
        """The activated gates of a call by name, each (T, B, H); default: the blocks of ``ws.gates`` (a cell
        without gate names, as the RNN, keeps no ``ws.gates``)."""
        if ws.gates_overwritten:
            raise UsageError(f"the gates of this {type(self).__name__} call are gone: its backward wrote the "
                             "gradients over them (read trace().gates before backward)")
        return gate_blocks(ws.gates, self.gate_names, self.hidden_size) if self.gate_names else {}

    # -- whole-sequence work (outside the time loop) --------------------------------------------------
    def project(self, x: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        """XP = X W_ihᵀ + b_ih (+ b_hh): (N, I) → (N, G), one GEMM (`projection_terms`). ``ws``: the call's
        workspace, for cells that keep whole-sequence results of the projection for their ``accumulate`` (layer
        normalisation)."""
        weight, bias, _ = self.projection_terms()
        return input_projection(x, weight, bias)

    def projection_terms(self) -> tuple | None:
        """(W_ih, b_ih (+ b_hh), None): b_ih + b_hh added in one pass where the hidden bias folds into the projection
        (`fold_hidden_bias`). None for a subclass with a `project` of its own (the Mogrifier's, a defined cell's),
        unless it says what its projection is (the layer-normalised cells)."""
        if type(self).project is not GatedCell.project:
            return None
        bias = None
        if self.bias:
            bias = self.bias_ih.data + self.bias_hh.data if self.fold_hidden_bias else self.bias_ih.data
        return self.weight_ih.data, bias, None

    def allocate(self, steps: int, batch: int, ragged: bool = False) -> Workspace:
        """The workspace of one call: ``batch``, ``w_hh`` = W_hh as this call uses it (`use_masks`), the transposes
        the steps multiply by (`transpose_recurrent`: ``w_hh_t``, and ``w_hh_loop``), ``h_mask`` / ``w_mask`` the
        masks of `use_masks` (None), and ``kernels``, the compiled step kernels or None for the NumPy code
        (`rnnkit.kernels`); cells add their own per-step arrays."""
        ws = Workspace(w_hh=self.weight_hh.data, h_mask=None, w_mask=None, kernels=kernels.active(),
                       transposes_as_views=self.transposes_as_views(batch), batch=batch)
        self.transpose_recurrent(ws)
        return ws

    def transposes_as_views(self, batch: int) -> bool:
        """Whether only the compiled loop's packed weights read this call's transposes of W_hh: it runs the whole
        sequence (`runs_whole_sequence`) and its products run on packed weights
        (`rnnkit.kernels.blas.packs_weights`), packed straight from W_hh — panels by
        `rnnkit.kernels.layout.fill_panels_of_transpose`, MKL's copy as the transposed operand — so no contiguous
        W_hhᵀ is made first (H = 256: 0.15 of the 0.25 ms the two took in an LSTM call on panels)."""
        if not self.runs_whole_sequence(batch):
            return False
        from ..kernels.blas import packs_weights

        return packs_weights(self.dtype)

    # -- variational recurrent dropout and weight drop (`rnnkit.recurrent.noise`) -----------------------------
    def recurrent_mask_problem(self, recurrent: bool, weight: bool) -> str | None:
        """Why this cell cannot apply recurrent dropout (``recurrent``) / weight drop (``weight``), or None.
        Support is declared by each class itself (``supports_recurrent_masks`` in its own body): a subclass with
        steps of its own does not inherit it."""
        if type(self).__dict__.get("supports_recurrent_masks", False):
            return None
        return masks_not_implemented(self, recurrent, weight)

    def use_masks(self, ws: Workspace, state_mask: np.ndarray | None, weight_mask: np.ndarray | None) -> None:
        """Make this call's recurrent matmuls read h_{t−1} ⊙ ``state_mask`` (B, R) and W_hh ⊙ ``weight_mask``."""
        ws.h_mask, ws.w_mask = state_mask, weight_mask
        if state_mask is not None:
            ws.h_masked = np.empty_like(state_mask)
        if weight_mask is not None:
            ws.w_hh = self.weight_hh.data * weight_mask
            self.transpose_recurrent(ws)

    def transpose_recurrent(self, ws: Workspace) -> None:
        """(Re)build what the steps multiply by: ``w_hh_t`` = W_hhᵀ, contiguous, or the transposed view where
        ``ws.transposes_as_views`` (`transposes_as_views`); then its panels are packed at once, ``w_hh_loop``
        (`recurrent_loop_weight`): the first work of a call, which runs while a pipeline's writer starts (it needs
        the GIL that the panels' fill releases; packed when the compiled loop is set up instead, the loop started
        0.08 ms later at B = 16, H = 256). Weight drop's `use_masks` packs them again from the masked W_hh."""
        ws.w_hh_t = transpose_for(ws, ws.w_hh)
        ws.w_hh_loop = None
        if ws.transposes_as_views:
            ws.w_hh_loop = self.recurrent_loop_weight(ws)

    def recurrent_loop_weight(self, ws: Workspace) -> tuple:
        """W_hhᵀ as the compiled forward loop's products take it (`rnnkit.kernels.blas.loop_weight`, for a team
        of `team_blocks` blocks where the loop runs as one): packed by `transpose_recurrent`, or now."""
        if ws.w_hh_loop is not None:
            return ws.w_hh_loop
        from ..kernels.blas import loop_weight

        return loop_weight(ws.w_hh_t, self.team_shares(ws, "forward", self.team_blocks))

    def backward_loop_weight(self, ws: Workspace) -> tuple:
        """W_hh as the compiled backward loop's product δa W_hh takes it (`rnnkit.kernels.blas.loop_weight`), for a
        team whose parts split its columns where the loop runs as one."""
        from ..kernels.blas import loop_weight

        return loop_weight(ws.w_hh, self.team_shares(ws, "backward", 1))

    @staticmethod
    def recurrent_input(ws: Workspace, h_prev: np.ndarray) -> np.ndarray:
        """h_{t−1} as the recurrent matmuls read it: h_{t−1} ⊙ m_h under recurrent dropout, else itself."""
        mask = getattr(ws, "h_mask", None)
        if mask is None:
            return h_prev
        n = h_prev.shape[0]
        return np.multiply(h_prev, mask[:n], out=ws.h_masked[:n])

    def loop_mask(self, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
        """Recurrent dropout as the compiled loop takes it: (m_h (B, R), a (B, R) scratch for h_{t−1} ⊙ m_h), or
        two empty (0, 0) arrays without it."""
        mask = getattr(ws, "h_mask", None)
        if mask is None:
            none = np.empty((0, 0), self.dtype)
            return none, none
        return mask, ws.h_masked

    @staticmethod
    def through_recurrent_mask(ws: Workspace, d: np.ndarray) -> np.ndarray:
        """δ(h_{t−1} ⊙ m_h) → δh_{t−1} = δ ⊙ m_h, in place (identity without recurrent dropout)."""
        mask = getattr(ws, "h_mask", None)
        if mask is not None:
            d *= mask[:d.shape[0]]
        return d

    @staticmethod
    def recurrent_inputs(ws: Workspace | None, h_prev: np.ndarray) -> np.ndarray:
        """The whole sequence's H_prev (T·B, R) as the matmuls read it (⊙ m_h per row under recurrent dropout)."""
        mask = getattr(ws, "h_mask", None)
        if mask is None:
            return h_prev
        return (h_prev.reshape(-1, *mask.shape) * mask).reshape(h_prev.shape)

    @staticmethod
    def kept_weight_grad(ws: Workspace | None, grad: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """δ(W_hh ⊙ M) → δW_hh = δ ⊙ M for the given rows of W_hh (identity without weight drop)."""
        mask = getattr(ws, "w_mask", None)
        return grad if mask is None else grad * mask[rows]

    def accumulate(self, ws: Workspace, x: np.ndarray, dxp: np.ndarray, prev: tuple[np.ndarray, ...],
                   new: tuple[np.ndarray, ...], behind=None) -> np.ndarray:
        """Add the parameter gradients of the call as whole-sequence GEMMs; return δX = δXP W_ih.
        Shapes (T·B, ·). A cell with more parameters adds theirs in `add_extra_grads`; one whose sums differ
        otherwise has an ``accumulate`` of its own (and calls this, or `add_gate_weight_grads`). With ``behind``
        (`sums_behind`'s, its loop done), what it summed is not summed again: δb goes to both biases, and δW_hh
        through weight drop's mask."""
        self.add_extra_grads(ws, dxp, prev, new)
        if behind is not None:
            return self.add_sums_behind(ws, behind)
        self.add_gate_weight_grads(x, dxp, prev[0], ws)
        return matmul(dxp, self.weight_ih.data)

    def add_extra_grads(self, ws: Workspace, dxp: np.ndarray, prev: tuple[np.ndarray, ...],
                        new: tuple[np.ndarray, ...]) -> None:
        """The gradients of the parameters a class adds to the gated cell's W_ih, W_hh and biases, from the call's
        δXP (T·B, G) and states (`accumulate`); none here."""

    def sums_behind(self, ws: Workspace, x: np.ndarray, h_prev: np.ndarray, reverse: bool):
        """`Cell.sums_behind`: the sums of `add_gate_weight_grads` and δX, where the class makes them
        (`makes_sums_behind`); `accumulate` adds the rest, given the `Behind`."""
        if not self.makes_sums_behind():
            return None
        from ..kernels.behind import Behind

        return Behind(self.sequence_gate_grads(ws, *x.shape[:2]), x, self.recurrent_inputs(ws, h_prev),
                      self.weight_ih.data, self.grads_behind(ws), reverse)

    def makes_sums_behind(self) -> bool:
        """`Cell.makes_sums_behind`: where the class sums as `accumulate` does here (no ``accumulate`` of its own)."""
        return type(self).accumulate is GatedCell.accumulate

    def grads_behind(self, ws: Workspace, hidden_bias_apart: bool = False) -> tuple:
        """(δW_ih, δW_hh, δb_ih, δb_hh) that a `rnnkit.kernels.behind.Behind` adds to: the weights' own gradients —
        δW_hh in a buffer under weight drop (δW_hh ⊙ M after, `add_sums_behind`) —, the biases' sums in buffers;
        δb_hh None (one sum for both biases) unless ``hidden_bias_apart``."""
        masked = getattr(ws, "w_mask", None) is not None
        grad_hh = np.zeros_like(self.weight_hh.grad) if masked else self.weight_hh.grad
        biases = [np.zeros(self.gate_width, self.dtype) if self.bias else None for _ in range(2)]
        return self.weight_ih.grad, grad_hh, biases[0], biases[1] if hidden_bias_apart else None

    def add_sums_behind(self, ws: Workspace, behind) -> np.ndarray:
        """After the loop of `sums_behind`'s ``behind``: what it summed apart added to the parameters' gradients
        (`grads_behind`: δW_hh ⊙ M, δb_ih, δb_hh — δb_ih's sum for both where it has none of its own); δX."""
        _, grad_hh, grad_b, grad_bh = behind.grads
        if grad_hh is not self.weight_hh.grad:
            self.weight_hh.grad += self.kept_weight_grad(ws, grad_hh)
        if self.bias:
            self.bias_ih.grad += grad_b
            self.bias_hh.grad += grad_bh if grad_bh.size else grad_b
        return behind.dx

    def add_gate_weight_grads(self, x: np.ndarray, dxp: np.ndarray, h_prev: np.ndarray,
                              ws: Workspace | None = None) -> None:
        """δW_ih += δXPᵀ X,  δW_hh += δXPᵀ H_prev,  δb_ih = δb_hh += Σ δXP (with ``ws``'s masks: H_prev ⊙ m_h, and
        δW_hh ⊙ M)."""
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        self.weight_hh.grad += self.kept_weight_grad(ws, matmul(dxp.T, self.recurrent_inputs(ws, h_prev)))
        if self.bias:
            db = dxp.sum(axis=0)
            self.bias_ih.grad += db
            self.bias_hh.grad += db

    # -- the whole loop in one compiled call (optional) ------------------------------------------------------
    #: whether the calls of this class run the whole time loop in one compiled call (`rnnkit.kernels.sequence_loop`)
    #: where compiled kernels are active. Declared by each class in its own body, like
    #: ``supports_recurrent_masks``: a subclass with steps of its own does not inherit it.
    whole_sequence = False

    def runs_whole_sequence(self, batch: int) -> bool:
        """True where this cell runs the whole time loop in one compiled call for this batch; the runner then calls
        the two methods below instead of its Python loop (calls with per-step masks stay in the Python loop)."""
        return bool(type(self).__dict__.get("whole_sequence", False)) and kernels.active() is not None
