"""`CompiledSequenceLoop`, the mixin of `rnnkit.recurrent.cell.Cell`'s whole-sequence methods for a cell family whose
kernel module runs the whole time loop in one compiled call on the one loop skeleton (`rnnkit.kernels.sequence_loop`):
the cell names its compiled entries and their params (`compiled_loop`, `compiled_loop_backward`), the mixin runs them
— alone, as a team on both cores, or on one core beside a pipeline's writer — and hands what the backward will
compile to another process (`rnnkit.kernels.precompile`)."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..module import is_grad_enabled
from .cell import Workspace


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
            parallel.team(self._forward_parts(loop, params, xp, states, counts, reverse, zoneout), run,
                          self.step_product(xp.shape[1]))
        else:
            ahead.run_loop(run)

    def _forward_parts(self, loop, params, xp, states, counts, reverse, zoneout) -> int:
        """The parts of the forward loop's team (`team_parts`), but 1 while its team's entry, not compiled yet, is
        compiled by another process (`rnnkit.kernels.precompile.later`): the plain loop's entry compiles sooner
        (teams' policy ``auto``; ``always`` asks for the team whatever it costs)."""
        from ..kernels import parallel, precompile
        from ..kernels.team import new_sync

        parts = self.team_parts(xp.shape[1], "forward")
        if parts < 2 or parallel.TEAMS.choice != "auto":
            return parts
        later = precompile.later((type(self), self.dtype, "forward team"), loop, lambda: (
            params, xp, tuple(states), counts, reverse, zoneout, (0, parts, new_sync(projected=True))))
        return 1 if later else parts

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
