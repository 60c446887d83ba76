"""The `Cell` protocol (the math of one time step, what the runner calls) and `GatedCell`, the fused-gate base.

`Cell` declares what a runner needs and implements nothing. `GatedCell` is the usual implementation: a cell of
``num_gates`` gates and hidden size H owning PyTorch-layout parameters

    weight_ih (G, I),  weight_hh (G, R),  bias_ih (G,),  bias_hh (G,)      G = num_gates · H

(R is the size of the recurrent input: H, or the projection size for an LSTM with ``proj_size``), with the input
projection, the weight-gradient GEMMs and the recurrent dropout / weight drop masks. Cells of another layout
(`IndRNNStep`'s vector u, the min cells without W_hh) implement `Cell` directly with the helpers of this module.
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
import math
from abc import ABCMeta, abstractmethod
from functools import partial
from types import ModuleType, SimpleNamespace

import numpy as np

from .. import kernels
from ..errors import UsageError
from ..module import Parameter, ParameterOwner, as_rng, is_grad_enabled
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


class CompiledSequenceLoop:
    """Mixin of `Cell`'s whole-sequence methods for a cell family with a kernel module on the one loop skeleton
    (`rnnkit.kernels.sequence_loop`): the cell names its compiled entries and their params, the mixin calls them."""

    def loop_work(self, steps: int, batch: int) -> int:
        """`Cell.loop_work` of one recurrent product per step, steps · batch · state width · gate width; cells with
        more products per step say so."""
        return steps * batch * self.state_sizes[0] * self.gate_width

    def step_product(self, batch: int) -> int:
        """The multiply-adds of a step's recurrent product, batch · state width · gate width (what decides the MKL
        threads of a loop on one core: `rnnkit.kernels.parallel.team`)."""
        return batch * self.state_sizes[0] * self.gate_width

    def sequence_forward(self, ws: Workspace, xp: np.ndarray, states: list[np.ndarray], counts: np.ndarray,
                         reverse: bool, zoneout: tuple | None, ahead=None) -> None:
        """The forward loop of `Recurrence.forward` in one compiled call: the skeleton of
        `rnnkit.kernels.sequence_loop` around this cell's compiled step (`compiled_loop`), on both cores where
        the cell's units split (`team_parts`), or on one core while ``ahead`` writes ``xp`` on the other
        (`rnnkit.kernels.ahead.Ahead.run_loop`)."""
        from ..kernels import parallel, precompile

        loop, params = self.compiled_loop(ws)
        if ws.backward_team is not None:  # a training call: what its backward runs compiles in another process
            precompile.ahead((type(self), self.dtype, ws.backward_team, ws.sums_ahead is not None),
                             partial(self._backward_entries, ws, states, counts, zoneout))

        def run(team):
            loop(params, xp, tuple(states), counts, reverse, zoneout, team)
        if ahead is None:
            parallel.team(self.team_parts(xp.shape[1], "forward"), run, self.step_product(xp.shape[1]))
        else:
            ahead.run_loop(run)

    def _backward_entries(self, ws: Workspace, states: list[np.ndarray], counts: np.ndarray,
                          zoneout: tuple | None) -> list[tuple]:
        """The compiled entries that the backward of the forward call making ``ws`` will run, in their order, each
        with arguments of its types: the loop (`backward_loop_ahead`), then the sums behind it where they go there
        (`Workspace.sums_ahead`)."""
        entries = [self.backward_loop_ahead(ws, states, counts, zoneout, ws.backward_team)]
        if ws.sums_ahead is not None:
            entries.append(ws.sums_ahead(ws))
        return entries

    def ahead_projection(self, x: np.ndarray, batch: int, reverse: bool, here: bool = False):
        """`Cell.ahead_projection`: where the cell names its projection (`projection_terms`), and either ``here``
        or its forward loop would run as a team at this batch (`team_parts`), both cores are free (inside a pair of
        directions they are not: there the projection is one GEMM, as without pipelines) and the pipeline's policy
        takes it (`rnnkit.kernels.parallel.pipeline_pays`: an input 3/4 to 1 times as wide as the state, or
        narrower while the cores are far apart)."""
        terms = self.projection_terms()
        if terms is None or batch == 0:
            return None
        from ..kernels import parallel

        if not here and (not parallel.cores_free() or not parallel.pipeline_pays(
                self.dtype, self.team_parts(batch, "forward"), x.shape[-1], self.state_sizes[0])):
            return None
        from ..kernels.ahead import Ahead

        weight, bias, norm = terms
        return Ahead(x, weight, bias, batch, reverse, norm, backward=is_grad_enabled())

    def sums_behind(self, ws: Workspace, x: np.ndarray, h_prev: np.ndarray, reverse: bool):
        """`Cell.sums_behind`: None here (`accumulate` makes every sum after the loop)."""
        return None

    def makes_sums_behind(self) -> bool:
        """`Cell.makes_sums_behind`: no (`sums_behind`)."""
        return False

    def projection_terms(self) -> tuple | None:
        """(W_ih, b, norm) where `Cell.project` is X W_ihᵀ + b (norm None), or LN(X W_ihᵀ; γ, β) + b (norm = (γ, β)),
        b (G,) or None, which `ahead_projection` writes on another core; None (this default) where the projection
        is anything else."""
        return None

    def sequence_backward(self, ws: Workspace, dy: np.ndarray, dstate: list[np.ndarray], states: list[np.ndarray],
                          counts: np.ndarray, reverse: bool, detach: bool, dxp: np.ndarray, zoneout: tuple,
                          team: tuple | None = None) -> None:
        """The backward loop of `Recurrence.backward` in one compiled call (`compiled_loop_backward`), as a team
        where `team_parts` says so, or as the ``team`` of one part it is given (`Cell.sequence_backward`). ``dy`` is
        handed to it C-contiguous: a bidirectional layer's half of δ(output) is a strided view, for which numba
        compiled a specialisation of the loop of its own (seconds at its first use; 44 of the test suite's 75
        backward loops); the copy costs about 1 % of the loop (0.14 ms at T = 100, B = 32, H = 256; 1.8 ms at
        B = 64, H = 512)."""
        from ..kernels import parallel, precompile

        loop, params = self.compiled_loop_backward(ws)
        dy = np.ascontiguousarray(dy)

        def job(part):
            arguments = self._backward_arguments(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout,
                                                 part)
            precompile.wait(loop, arguments)  # for a compile `backward_loop_ahead` started in another process
            loop(*arguments)
        if team is not None:
            job(team)
        else:
            parallel.team(self.team_parts(dy.shape[1], "backward"), job, self.step_product(dy.shape[1]))

    @staticmethod
    def _backward_arguments(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, part) -> tuple:
        """The compiled backward loop's arguments in its order (`sequence_backward`, `backward_loop_ahead`)."""
        return params, dy, tuple(dstate), tuple(states), counts, reverse, detach, dxp, zoneout, part

    def backward_loop_ahead(self, ws: Workspace, states: list[np.ndarray], counts: np.ndarray, zoneout: tuple,
                            team: bool) -> tuple:
        """`Cell.backward_loop_ahead`: (`compiled_loop_backward`'s loop, arguments of the types `sequence_backward`
        will give it), the arrays that the backward makes as empty stand-ins of their types."""
        from ..kernels.team import new_sync, no_team

        loop, params = self.compiled_loop_backward(ws)
        dt = self.dtype
        dy, dxp = np.empty((0, 0, 0), dt), np.empty((0, 0, 0), dt)
        dstate = [np.empty((0, 0), dt) for _ in self.state_sizes]
        part = (0, 2, new_sync(projected=True)) if team else no_team()
        return loop, self._backward_arguments(params, dy, dstate, states, counts, False, False, dxp, zoneout, part)

    #: the loops ("forward", "backward") whose compiled steps split the units of a call between the parts of a
    #: team (`rnnkit.kernels.team`), each part computing its units' columns of the recurrent product and their
    #: pointwise math, where that measured faster. Declared by each class that can (a subclass with steps of its
    #: own does not inherit it).
    team_units: tuple[str, ...] = ()

    #: the calls ("inference", "training") in which a one-direction layer of this cell runs its batch as two
    #: halves at once, one on each core, under the ``auto`` policy (`rnnkit.recurrent.halves`), where that
    #: measured faster. Declaring any call also says the cell can run as halves at all (its compiled backward loop
    #: adds to no parameter's gradient: its sums come after it), which ``always`` then takes in both. Declared by
    #: each class that can (a subclass with steps of its own does not inherit it).
    batch_halves: tuple[str, ...] = ()

    #: the blocks of units in the columns of the forward's recurrent product h_{t−1} W_hhᵀ, each split alike
    #: between a team's parts (`rnnkit.kernels.blas.matmul_gate_units`: the LSTM's 4 gates); 1 where each part
    #: computes one block of the columns (`matmul_columns`). Declared by each class whose product has more.
    team_blocks = 1

    def team_shares(self, ws: Workspace, loop: str, blocks: int) -> int:
        """``blocks`` where this call's ``loop`` runs as a team (`team_parts` at the workspace's batch, and the
        cores free: `rnnkit.kernels.parallel.cores_free`), else 0: the ``team_blocks`` of
        `rnnkit.kernels.blas.loop_weight` for a weight the parts split ``blocks`` ways. A loop alone on one core —
        beside a pipeline's partner, the other direction of a pair, the other half of a batch — multiplies by the
        whole packed weight, not by the shares one after the other: LSTM B = 16, H = 256 inference as a pipeline
        on MKL, 60 calls interleaved in one process, median 17.7 ms against 20.4 from 8 shares (a team: 22.4). The
        cores are taken before the loop's weights are packed (the pair, pipeline or halves hold them)."""
        from ..kernels.parallel import cores_free

        if not cores_free():
            return 0
        return blocks if self.team_parts(ws.batch, loop) > 1 else 0

    def team_parts(self, batch: int, loop: str) -> int:
        """The parts of a team for this cell's ``loop`` at ``batch`` rows (`rnnkit.kernels.parallel.team_size`);
        1 where the class does not split that loop's units."""
        if loop not in type(self).__dict__.get("team_units", ()):
            return 1
        from ..kernels.parallel import team_size

        depth = self.state_sizes[0]
        return team_size(self.dtype, batch, depth, self.gate_width, self.hidden_size)

    #: the compiled backward step reads a step's gates before it writes δa, and nothing reads them afterwards, so
    #: δa can go over the gate history instead of into a (T, B, G) array of its own (`sequence_gate_grads`)
    grads_over_gates = False

    def sequence_gate_grads(self, ws: Workspace, steps: int, batch: int) -> np.ndarray:
        """Where `sequence_backward` writes δa: over the gate history ``ws.gates`` where `grads_over_gates` (the
        gates of the call are gone afterwards: `gate_activations` refuses), else a new (T, B, G) array."""
        if self.grads_over_gates:
            ws.gates_overwritten = True
            return ws.gates
        return np.empty((steps, batch, self.gate_width), self.dtype)

    def compiled_loop(self, ws: Workspace) -> tuple:  # pragma: no cover - only cells that run whole sequences
        """(the family's compiled forward loop, e.g. `rnnkit.kernels.lstm.lstm_sequence_forward`, its params)."""
        raise NotImplementedError

    def compiled_loop_backward(self, ws: Workspace) -> tuple:  # pragma: no cover - only whole-sequence cells
        """(the family's compiled backward loop, its params)."""
        raise NotImplementedError


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

