"""The `Cell` protocol (the math of one time step, what the runner calls), its `Workspace` and the helpers of cells.

`Cell` declares what a runner needs and implements nothing. `rnnkit.recurrent.gated.GatedCell` is the usual
implementation (the fused gates' W_ih, W_hh and biases in PyTorch's layout: its module notes), with the whole time
loop in one compiled call from `rnnkit.recurrent.compiled_loop.CompiledSequenceLoop`. Cells of another layout
(`IndRNNStep`'s vector u, the min cells without W_hh) implement `Cell` directly with the helpers of this module and
that mixin.
A cell holds parameters and options only; everything one call computes lives in a `Workspace` that the caller owns.

The runner (`rnnkit.recurrent.runner.Recurrence`) calls, for one sequence batch of T steps and B rows:

1. ``ws = allocate(T, B, ragged)``: the workspace of this call — gate activations with leading axes (T, B),
   scratch rows, contiguous copies of transposed weights (zeroed for ragged batches, whose padded rows no step
   writes but the weight GEMMs read);
2. ``project(X, ws)``: X (T·B, I) → XP (T·B, G) = X W_ihᵀ + b_ih (+ b_hh where it can be folded) — one GEMM;
3. ``step(ws, t, xp, prev, new)`` for each t: reads the previous state ``prev`` (a tuple of (n, S_k) arrays),
   writes the new state into ``new`` in place; only the recurrent matmul and pointwise math happen here;
4. ``step_backward(ws, t, dstate, prev, new, dxp)`` in reverse order: ``dstate`` holds δ(new state) on entry
   and is overwritten with δ(prev state); writes δ(pre-activation) into ``dxp`` (n, G) (on the compiled loop,
   ``dxp`` is ``sequence_gate_grads(ws, T, B)``: the gate history itself for the LSTM, the reset-after GRU, their
   layer-normalised cells and the Mogrifier);
5. ``accumulate(ws, x, dxp, prev, new)``: parameter gradients as whole-sequence GEMMs, returns δX (T·B, I);
   PREV / NEW are the state slabs each step read / wrote, (T·B, S_k).

Only the first n ≤ B rows are active at step t (the runner sorts a ragged batch by length), so every array a
step sees is a contiguous row prefix. ``gate_names`` names the H-wide blocks of the activations that
``gate_activations(ws)`` returns (for diagnostics and visualisation).
"""

from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from types import ModuleType, SimpleNamespace

import numpy as np

from .. import kernels
from ..module import ParameterOwner, is_grad_enabled
from .products import matmul


class Workspace(SimpleNamespace):
    """The arrays of one call of a cell over one sequence batch; each cell's ``allocate`` documents its fields.
    Created by the cell, owned and passed back by the caller, so one cell can serve any number of calls."""

    #: set by `CompiledSequenceLoop.sequence_gate_grads` once the backward writes δa over the gate history
    gates_overwritten = False
    #: `GatedCell.transposes_as_views` for this call: W_hhᵀ is kept as the view W_hh.T, for the loop's panels only
    transposes_as_views = False
    #: W_hhᵀ as the compiled loop takes it, where `GatedCell.transpose_recurrent` packed it (else None)
    w_hh_loop = None
    #: set by `rnnkit.recurrent.runner.Recurrence.forward` before a compiled forward loop: None where no backward
    #: follows or its runner has asked already (`Recurrence.compiled_ahead`), else whether its backward loop will run
    #: as a part of a team or pipeline (`Recurrence.backward_runs_as_team`), the kind of call
    #: `CompiledSequenceLoop.sequence_forward` has compiled ahead
    backward_team = None
    #: set with `backward_team` where the backward's sums will go behind its loop (`rnnkit.kernels.behind`): a
    #: function of the workspace giving their compiled entry and its arguments' types, which
    #: `CompiledSequenceLoop.sequence_forward` compiles ahead too (`Recurrence._sums_entry_ahead`); else None
    sums_ahead = None

    def __deepcopy__(self, memo):  # the kernel module is shared, the arrays are copied
        fields = vars(self).items()
        return Workspace(**{k: v if isinstance(v, ModuleType) else copy.deepcopy(v, memo) for k, v in fields})


def transposed(w: np.ndarray) -> np.ndarray:
    """Wᵀ as a contiguous array: BLAS multiplies by it 1.2–2× faster than by the transposed view. In blocks shuffled
    in registers with the compiled kernels (`rnnkit.kernels.layout.transpose`: W_hh of H = 512 in 0.22 ms, where
    NumPy's copy of the view takes 3.6)."""
    if kernels.active() is None:
        return np.ascontiguousarray(w.T)
    from ..kernels.layout import transpose

    return transpose(w)


def transpose_for(ws: Workspace, w: np.ndarray) -> np.ndarray:
    """Wᵀ for the products of the call of ``ws``: the view w.T where ``ws.transposes_as_views`` (only panels packed
    from it are multiplied by: `GatedCell.transposes_as_views`), else `transposed`."""
    return w.T if ws.transposes_as_views else transposed(w)


def dsigmoid(y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """σ'(a) from the output y = σ(a): y (1 − y), written into ``out``."""
    np.subtract(1.0, y, out=out)
    out *= y
    return out


def dtanh(y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """tanh'(a) from the output y = tanh(a): 1 − y², written into ``out``."""
    np.multiply(y, y, out=out)
    np.subtract(1.0, out, out=out)
    return out


def per_step(steps: int, batch: int, width: int, dtype, ragged: bool) -> np.ndarray:
    """A (T, B, width) workspace array: zeroed for ragged batches (padded rows feed the weight GEMMs)."""
    return (np.zeros if ragged else np.empty)((steps, batch, width), dtype)


def for_backward(shape: tuple[int, ...], dtype, ragged: bool) -> np.ndarray:
    """A workspace array that only the backward writes and reads (a history of δ's): as `per_step` makes them, or
    an empty array with as many axes under ``rnnkit.no_grad()``, where no backward will run (a whole-sequence
    compiled forward allocates (T, …) histories even then)."""
    if not is_grad_enabled():
        return np.empty((0,) * len(shape), dtype)
    return (np.zeros if ragged else np.empty)(shape, dtype)


def input_projection(x: np.ndarray, weight_ih: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """X W_ihᵀ (+ bias): (N, I) → (N, G), one GEMM. W_ihᵀ as a view: BLAS takes the transpose as a flag, and for a
    product this large the view measured as fast as a contiguous copy (which would cost a pass over W_ih)."""
    xp = matmul(x, weight_ih.T)
    if bias is not None:
        xp += bias
    return xp


def gate_blocks(gates: np.ndarray, names: tuple[str, ...], width: int) -> dict[str, np.ndarray]:
    """The ``width``-wide blocks of the last axis of ``gates`` by name, in order (views)."""
    return {name: gates[..., k * width:(k + 1) * width] for k, name in enumerate(names)}


def masks_not_implemented(cell: Cell, recurrent: bool, weight: bool) -> str:
    """The one-line reason a cell cannot apply recurrent dropout (``recurrent``) / weight drop (``weight``)."""
    what = " and ".join(w for w, on in (("recurrent dropout", recurrent), ("weight drop", weight)) if on)
    return f"{what} is not implemented for {type(cell).__name__} (it is for RNN, LSTM and GRU cells)"


class Cell(ParameterOwner, metaclass=ABCMeta):
    """The protocol of one time step: what `Recurrence` (and the layers around it) call. No implementation here;
    a cell registers its `Parameter`s as attributes (`ParameterOwner`) and sets ``input_size``, ``hidden_size``.

    Class facts: ``state_names`` (the state components in the order of ``prev``/``new``; the first is the
    output), ``gate_names`` (the H-wide blocks `gate_activations` returns), ``num_gates``, ``forward_only`` (the
    workspace fields only the forward reads — contiguous transposes of weights, a step's product buffer — which
    the runner drops when the forward's loop ends, so that they do not add to the peak memory)."""

    state_names: tuple[str, ...]
    gate_names: tuple[str, ...]
    num_gates: int
    forward_only: tuple[str, ...] = ()
    input_size: int
    hidden_size: int

    # -- sizes -------------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def parameter_count(cls, input_size: int, hidden_size: int, bias: bool = True, **options) -> int:
        """How many numbers a cell of these sizes and ``options`` holds, computed without building it."""

    @classmethod
    @abstractmethod
    def output_width(cls, hidden_size: int, **options) -> int:
        """The width of the output of a cell with these options (the next layer's input per direction)."""

    @property
    @abstractmethod
    def state_sizes(self) -> tuple[int, ...]:
        """The width of each state component, in the order of ``state_names``."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """The width of the output (the first state component)."""

    @property
    @abstractmethod
    def gate_width(self) -> int:
        """G, the width of the pre-activation ``xp``/``dxp`` rows."""

    @abstractmethod
    def loop_work(self, steps: int, batch: int) -> int:
        """The multiply-adds of the products inside the time loop over a call of ``steps`` × ``batch``: whether two
        directions run at once depends on it (`rnnkit.kernels.parallel.PAIR_WORK`)."""

    # -- one call over a sequence batch --------------------------------------------------------------------------
    @abstractmethod
    def allocate(self, steps: int, batch: int, ragged: bool = False) -> Workspace:
        """The workspace of one call of T = ``steps`` steps and B = ``batch`` rows."""

    @abstractmethod
    def project(self, x: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        """The work of every step that does not depend on the state, for all steps at once: X (T·B, I) → XP."""

    @abstractmethod
    def step(self, ws: Workspace, t: int, xp: np.ndarray, prev: tuple, new: tuple) -> None:
        """Write the new state into ``new`` from ``prev`` and ``xp`` (n rows, n ≤ B)."""

    @abstractmethod
    def step_backward(self, ws: Workspace, t: int, dstate: tuple, prev: tuple, new: tuple, dxp: np.ndarray) -> None:
        """δ(new state) in ``dstate`` → δ(prev state) in ``dstate``; δ(pre-activation) into ``dxp``."""

    @abstractmethod
    def accumulate(self, ws: Workspace, x: np.ndarray, dxp: np.ndarray, prev: tuple, new: tuple) -> np.ndarray:
        """Add the call's parameter gradients (whole-sequence work); return δX (T·B, I). ``dxp`` (δXP, T·B × G) is
        the caller's scratch: the cell may overwrite it (the GRU builds δq there), nothing reads it afterwards. A
        class whose `sums_behind` gives a `Behind` takes it as ``behind=`` after the loop, and adds only what that
        did not sum."""

    @abstractmethod
    def gate_activations(self, ws: Workspace) -> dict[str, np.ndarray]:
        """The activated gates of a call by name, each (T, B, H) (diagnostics and visualisation)."""

    # -- optional capabilities (each cell says whether it has them) ---------------------------------------------
    @abstractmethod
    def recurrent_mask_problem(self, recurrent: bool, weight: bool) -> str | None:
        """Why this cell cannot apply recurrent dropout / weight drop, or None where `use_masks` works."""

    @abstractmethod
    def use_masks(self, ws: Workspace, state_mask: np.ndarray | None, weight_mask: np.ndarray | None) -> None:
        """Apply recurrent dropout / weight drop masks in this call (only where `recurrent_mask_problem` is None)."""

    @abstractmethod
    def runs_whole_sequence(self, batch: int) -> bool:
        """True where the runner calls `sequence_forward`/`sequence_backward` instead of its Python loop."""

    @abstractmethod
    def ahead_projection(self, x: np.ndarray, batch: int, reverse: bool, here: bool = False):
        """Where a whole-sequence forward over ``x`` (T, B, I), B = ``batch``, in the direction ``reverse``,
        writes its projection on the other core while it prepares and runs its loop: the
        `rnnkit.kernels.ahead.Ahead` (a context, entered before the workspace is allocated) whose ``out`` is the
        loop's XP, and which leaves in the workspace what the backward reads of it (`Ahead.leave_in`), as `project`
        does; else None (`project` first). ``here``: the same writer for a half of a batch
        (`rnnkit.recurrent.halves`), whatever the pipelines' policy: the projection on the loop's route for its
        products, the panels where they apply, with the bias added chunk by chunk, run by the caller's core before
        its loop where the two halves hold the cores (by the other core, as a pipeline's, where they run in turn
        and it is free)."""

    @abstractmethod
    def sequence_forward(self, ws: Workspace, xp: np.ndarray, states: list[np.ndarray], counts: np.ndarray,
                         reverse: bool, zoneout: tuple | None, ahead=None) -> None:
        """The forward time loop of `Recurrence.forward` in one compiled call (``zoneout``:
        `rnnkit.recurrent.noise.loop_zoneout`'s arrays, None without zoneout; ``ahead``: the `ahead_projection`
        that writes ``xp`` while the loop runs, or None where ``xp`` holds the projection already)."""

    @abstractmethod
    def sequence_backward(self, ws: Workspace, dy: np.ndarray, dstate: list[np.ndarray], states: list[np.ndarray],
                          counts: np.ndarray, reverse: bool, detach: bool, dxp: np.ndarray, zoneout: tuple,
                          team: tuple | None = None) -> None:
        """The backward time loop of `Recurrence.backward` in one compiled call (``team``: the team of one part of a
        pipeline that sums the weight gradients behind the loop, `rnnkit.kernels.behind`; None: the loop's own)."""

    @abstractmethod
    def sums_behind(self, ws: Workspace, x: np.ndarray, h_prev: np.ndarray, reverse: bool):
        """The `rnnkit.kernels.behind.Behind` that makes the weight sums of a backward call over ``x`` (T, B, I) and
        ``h_prev`` (T·B, R) (the state before each step) behind its loop, on the other core, where the class makes
        them there (its ``accumulate`` then takes it); else None. Its ``dxp`` is where the loop writes δa
        (`sequence_gate_grads`)."""

    @abstractmethod
    def makes_sums_behind(self) -> bool:
        """Whether `sums_behind` makes a `rnnkit.kernels.behind.Behind` (where the cores and the policy allow one)."""

    @abstractmethod
    def sequence_gate_grads(self, ws: Workspace, steps: int, batch: int) -> np.ndarray:
        """The (T, B, G) array that `sequence_backward` writes δa into (its padded rows too, with zeros)."""

    @abstractmethod
    def backward_loop_ahead(self, ws: Workspace, states: list[np.ndarray], counts: np.ndarray, zoneout: tuple,
                            team: bool) -> tuple:
        """(the compiled backward loop, arguments of the types `sequence_backward` will give it after the forward
        call that made ``ws`` and ``states`` with ``counts`` and ``zoneout``), the backward running as a part of a
        team or pipeline where ``team``, else alone: what `rnnkit.kernels.precompile.ahead` has another process
        compile while this one compiles and runs the forward."""


class SingleState:
    """For a cell whose state and output are one vector h of ``hidden_size`` (IndRNN, the min cells)."""

    @classmethod
    def output_width(cls, hidden_size, **options):
        return hidden_size

    @property
    def state_sizes(self):
        return (self.hidden_size,)

    @property
    def output_size(self):
        return self.hidden_size


class WithoutRecurrentMasks:
    """Mixin of the `Cell` capability answers for a cell whose steps take no recurrent dropout or weight drop."""

    def recurrent_mask_problem(self, recurrent: bool, weight: bool) -> str | None:
        return masks_not_implemented(self, recurrent, weight)

    def use_masks(self, ws, state_mask, weight_mask) -> None:  # pragma: no cover - refused by the layer first
        raise NotImplementedError(masks_not_implemented(self, state_mask is not None, weight_mask is not None))
