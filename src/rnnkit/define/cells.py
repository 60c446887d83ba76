"""`DefinedCell`: a `Cell` of the catalogue built from a definition, and `DefinedRNN`, the layer that runs it.

A defined cell owns PyTorch-layout parameters like the hand-written ones — ``weight_ih`` (G·H, I), ``bias_ih``,
and where it has a recurrent state ``weight_hh`` (G·H, R) and ``bias_hh`` — plus one (H,) vector per elementwise
parameter of its definition, registered under its own name (``w_ci``). Its step is the runner's GEMM followed by
the generated pointwise map (`rnnkit.define.codegen`); the backward is the generated pointwise backward followed
by δs_{t−1} += δrec W_hh for the recurrent state. Parameter gradients are whole-sequence work in ``accumulate``:

    δW_ih += δPREᵀ X,   δb_ih += Σ δPRE,   δW_hh += δRECᵀ S_prev,   δb_hh += Σ δREC,   δp += Σ_rows δp_row

(δREC = δPRE except for gates read in parts). Elementwise parameters start as U(−1/√H, 1/√H), as everything else.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import kernels
from ..errors import ConfigError
from ..module import Parameter, as_rng
from ..recurrent.catalog import CellEntry
from ..recurrent.cell import Workspace, per_step, transposed
from ..recurrent.gated import GatedCell
from ..recurrent.layer import RecurrentLayer
from ..recurrent.products import matmul
from .parse import Definition

#: a definition for the catalogue's checks of every cell (the gradcheck suite): an LSTM with peepholes
EXAMPLE = Definition("lstm_peephole", gates="i f g o", states="h c", params="w_ci w_cf w_co", equations=(
    "i = σ(a_i + w_ci⊙c₋₁); f = σ(a_f + w_cf⊙c₋₁); g = tanh(a_g); c = f⊙c₋₁ + i⊙g; o = σ(a_o + w_co⊙c); "
    "h = o⊙tanh(c)"))


class DefinedCell(GatedCell):
    """Base of the cell classes `cell_class` builds; ``derivation`` is the class's `Derivation`. The gated layout
    of `GatedCell`, without ``weight_hh``/``bias_hh`` where the definition has no recurrent state."""

    derivation = None  # the class's `rnnkit.define.derive.Derivation` (set by `cell_class`)
    definition: Definition
    folded_gates: np.ndarray  # (num_gates,) bool: the gates read whole, whose b_hh `project` adds

    def __init__(self, input_size, hidden_size, bias=True, definition=None, dtype=np.float32, rng=None):
        """``definition``: accepted from the layer's options; the class is already the definition's."""
        rng, p = as_rng(rng), self.derivation.parsed
        super().__init__(input_size, hidden_size, bias=bias, hidden_rows=None if p.recurrent else 0, dtype=dtype,
                         rng=rng)
        bound = 1.0 / math.sqrt(hidden_size)
        for name in p.params:
            setattr(self, name, Parameter(rng.uniform(-bound, bound, hidden_size).astype(dtype)))

    @classmethod
    def parameter_count(cls, input_size, hidden_size, bias=True, definition=None, **options):
        p = (cls if definition is None else cell_class(as_definition(definition))).derivation.parsed
        g, biases = cls.num_gates * hidden_size, (2 if p.recurrent else 1) if bias else 0
        return g * (input_size + (hidden_size if p.recurrent else 0) + biases) + len(p.params) * hidden_size

    @property
    def state_sizes(self):
        return (self.hidden_size,) * len(self.state_names)

    def project(self, x, ws=None):
        xp = matmul(x, transposed(self.weight_ih.data))
        if self.bias:
            xp += self.bias_ih.data
            if self.bias_hh is not None:
                xp += self.bias_hh.data * np.repeat(self.folded_gates, self.hidden_size)
        return xp

    def allocate(self, steps, batch, ragged=False):
        h, dt, p = self.hidden_size, self.dtype, self.derivation.parsed
        compiled = kernels.active() is not None
        ws = Workspace(kernels=kernels.active(), code=compiled_code(self.definition) if compiled
                       else numpy_code(self.definition))
        ws.gates = per_step(steps, batch, max(len(self.derivation.cached), 1) * h, dt, ragged)
        ws.dparams = per_step(steps, batch, max(len(p.params), 1) * h, dt, ragged)
        ws.params = tuple(getattr(self, q).data for q in p.params)
        none = np.empty((0, 0), dt)  # for an array the definition does not need (the compiled loop's params)
        ws.rec = np.empty((batch, self.gate_width), dt) if p.recurrent else none  # s_{t−1} W_hhᵀ
        ws.back = np.empty((batch, h), dt)  # δrec W_hh
        ws.dq = per_step(steps, batch, self.gate_width, dt, ragged) if p.split else None
        ws.b_rec = self.bias_hh.data if self.bias_hh is not None else np.zeros(self.gate_width, dt)
        ws.w_hh = self.weight_hh.data if p.recurrent else none
        ws.w_hh_t = transposed(ws.w_hh) if p.recurrent else none
        return ws

    @property
    def recurrent_index(self) -> int | None:
        p = self.derivation.parsed
        return None if p.recurrent is None else p.states.index(p.recurrent)

    def compiled_loop(self, ws):
        """The generated entry of the whole-sequence loop and its params (`rnnkit.define.codegen`)."""
        from ..kernels.blas import loop_weight

        return ws.code.sequence_forward, (loop_weight(ws.w_hh_t), ws.b_rec, ws.rec, ws.gates, *ws.params)

    def compiled_loop_backward(self, ws):
        dq = np.empty((0, 0, 0), self.dtype) if ws.dq is None else ws.dq
        from ..kernels.blas import loop_weight

        return ws.code.sequence_backward, (loop_weight(ws.w_hh), ws.gates, dq, ws.dparams, *ws.params)

    def step(self, ws, t, xp, prev, new):
        n, k = xp.shape[0], self.recurrent_index
        rec = None
        if k is not None:
            rec = np.matmul(prev[k], ws.w_hh_t, out=ws.rec[:n])
        ws.code.forward(xp, rec, ws.b_rec, *prev, *ws.params, *new, ws.gates[t, :n])

    def step_backward(self, ws, t, dstate, prev, new, dxp):
        n, k = dxp.shape[0], self.recurrent_index
        dq = dxp if ws.dq is None else ws.dq[t, :n]
        ws.code.backward(*dstate, *prev, *new, ws.gates[t, :n], *ws.params, dxp, dq, ws.dparams[t, :n])
        if k is not None:
            d = dstate[k]
            d += np.matmul(dq, ws.w_hh, out=ws.back[:n])  # δs_{t−1} += δrec W_hh

    def accumulate(self, ws, x, dxp, prev, new):
        p = self.derivation.parsed
        matmul(dxp.T, x, out=self.weight_ih.grad, accumulate=True)
        dq = dxp if ws.dq is None else ws.dq.reshape(dxp.shape)
        if p.recurrent:
            self.weight_hh.grad += dq.T @ prev[self.recurrent_index]
        if self.bias:
            self.bias_ih.grad += dxp.sum(axis=0)
            if self.bias_hh is not None:
                self.bias_hh.grad += dq.sum(axis=0)
        if p.params:
            sums = ws.dparams.reshape(-1, len(p.params), self.hidden_size).sum(axis=0)
            for q, s in zip(p.params, sums):
                getattr(self, q).grad += s
        return matmul(dxp, self.weight_ih.data)


@lru_cache(maxsize=64)
def cell_class(definition: Definition) -> type[DefinedCell]:
    """The `DefinedCell` subclass of ``definition`` (parsed and derived once per definition)."""
    from .derive import derive, equations_unicode
    from .parse import parse

    d = derive(parse(definition))
    p = d.parsed
    forward, backward = equations_unicode(d)
    doc = (f"The defined cell {p.name!r} (rnnkit.define), gates {' '.join(p.gates)}, states "
           f"{' '.join(p.states)}.\n\nForward:\n\n" + "\n".join("    " + line for line in forward)
           + "\n\nBackward (δs_t: the gradient of a new state from the output and the next step):\n\n"
           + "\n".join("    " + line for line in backward)
           + (f"\n    δ{p.recurrent}₋₁ += δrec W_hh" if p.recurrent else "") + "\n")
    attrs = {"__doc__": doc, "derivation": d, "definition": definition, "num_gates": len(p.gates),
             "state_names": p.states, "gate_names": d.cached, "fold_hidden_bias": False, "whole_sequence": True,
             "folded_gates": np.array([g not in p.split for g in p.gates], bool)}
    return type(f"Defined_{p.name}", (DefinedCell,), attrs)


@lru_cache(maxsize=64)
def numpy_code(definition: Definition):
    """The imported NumPy step of ``definition`` (`rnnkit.define.codegen.numpy_source`)."""
    from .codegen import load_source, numpy_source

    return load_source(numpy_source(cell_class(definition).derivation), "numpy")


@lru_cache(maxsize=64)
def compiled_code(definition: Definition):
    """The imported numba kernels of ``definition`` (compiled at their first call)."""
    from .codegen import numba_source
    from .kernel_files import load_generated

    return load_generated(numba_source(cell_class(definition).derivation))


class DefinedRNN(RecurrentLayer):
    """A multi-layer recurrent layer of a defined cell: ``DefinedRNN(input_size, hidden_size, definition, ...)``
    with every option of `RecurrentLayer` (stacking, bidirectional, ragged lengths, stateful) and the regularisers
    input dropout and zoneout (``dropout_input``, ``zoneout``). ``definition`` is a `Definition` or its dict (as a
    checkpoint stores it). Parameters per layer k: ``weight_ih_l{k}`` (G·H, H_in), and with a recurrent state
    ``weight_hh_l{k}`` (G·H, H); ``bias_ih_l{k}`` (and ``bias_hh_l{k}``) (G·H); each elementwise parameter p as
    ``p_l{k}`` (H); suffix ``_reverse`` for the backward direction."""

    cell_class = DefinedCell
    catalog = CellEntry("defined", options=("definition",), encoder=False,
                        variants={"": {"definition": EXAMPLE.to_dict()}})

    def __init__(self, input_size, hidden_size, definition=EXAMPLE, num_layers=1, bias=True, dropout=0.0,
                 bidirectional=False, stateful=False, dtype=np.float32, rng=None, return_state=True,
                 dropout_input=0.0, zoneout=0.0):
        definition = as_definition(definition)
        self.cell_class = cell_class(definition)  # this layer's own class: its state names, its docstring
        super().__init__(input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                         bidirectional=bidirectional, stateful=stateful, dtype=dtype, rng=rng,
                         return_state=return_state, definition=definition)
        self.definition = definition
        self.regularize(dropout_input, 0.0, zoneout, 0.0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", cell={self.definition.name!r}"


def as_definition(value) -> Definition:
    if isinstance(value, Definition):
        return value
    if isinstance(value, dict):
        return Definition.from_dict(value)
    raise ConfigError(f"a cell definition must be a Definition or its dict, got {type(value).__name__}")


def checked_definition(value) -> dict:
    """A model config's ``definition`` (a dict, as checkpoints store it) parsed and derived, returned as the dict;
    a one-line `ConfigError` when it is missing or bad."""
    if value is None:
        raise ConfigError("--cell defined needs --cell-file FILE.py:NAME (the cell's definition)")
    definition = as_definition(value)
    cell_class(definition)
    return definition.to_dict()

