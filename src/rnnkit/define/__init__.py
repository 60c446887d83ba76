"""Cells defined by their forward equations: the backward derived by SymPy and printed, the step generated.

    lstm = rnnkit.define.cell("lstm_def", gates="i f g o", states="h c", params="w_ci w_cf w_co", equations='''
        i = σ(a_i + w_ci⊙c₋₁);  f = σ(a_f + w_cf⊙c₋₁);  g = tanh(a_g)
        c = f⊙c₋₁ + i⊙g;  o = σ(a_o + w_co⊙c);  h = o⊙tanh(c)''')
    layer = rnnkit.define.DefinedRNN(10, 32, lstm, num_layers=2, bidirectional=True)
    print(rnnkit.define.backward_text(lstm))

`parse` reads the equations safely (``ast`` with a whitelist → SymPy), `derive` derives the pointwise backward,
`codegen` writes the NumPy step and the fused numba kernel, `cells` builds the `Cell` and the layer. The notation
and its limits: docs/defined_cells.md.
"""

from __future__ import annotations

from .cells import DefinedCell, DefinedRNN, cell_class
from .files import load_cell_file
from .parse import Definition


def cell(name: str, *, gates: str, states: str, equations: str, output: str = "h", recurrent: str = "h",
         params: str = "") -> Definition:
    """A checked cell definition (one-line `rnnkit.errors.ConfigError` for a bad one); see the module notes."""
    definition = Definition(name, gates, states, equations, output, recurrent, params)
    cell_class(definition)  # parse, check and derive now: errors at the definition, not at first use
    return definition


def backward_text(definition: Definition, latex: bool = False) -> str:
    """The forward and derived backward equations of ``definition``, in Unicode or LaTeX, one per line."""
    from .derive import equations_latex, equations_unicode

    d = cell_class(definition).derivation
    forward, backward = (equations_latex if latex else equations_unicode)(d)
    rec = d.parsed.recurrent
    if rec:
        backward.append(rf"\delta {rec}_{{t-1}} \mathrel{{+}}= \delta\mathrm{{rec}}\, W_{{hh}}" if latex
                        else f"δ{rec}₋₁ += δrec W_hh   (δrec: the δ of the recurrent GEMM's output)")
    return "\n".join(["forward:", *forward, "backward:", *backward])


def numpy_source(definition: Definition) -> str:
    """The generated NumPy step (the oracle of the compiled kernel)."""
    from .codegen import numpy_source as source

    return source(cell_class(definition).derivation)


def kernel_source(definition: Definition) -> str:
    """The generated numba kernel."""
    from .codegen import numba_source

    return numba_source(cell_class(definition).derivation)


__all__ = ["Definition", "DefinedCell", "DefinedRNN", "backward_text", "cell", "cell_class", "kernel_source",
           "load_cell_file", "numpy_source"]
