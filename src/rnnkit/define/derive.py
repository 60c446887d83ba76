"""The pointwise backward of a defined cell, derived by SymPy, and its equations printed for a person.

1. **Lifting.** Every function application of the forward is given its own name (``i = σ(a_i)`` keeps ``i``;
   ``h = o⊙tanh(c)`` gets ``tanh_c = tanh(c)``), so the forward is a list of steps ``v = F(u)`` (F one of σ,
   tanh, relu, exp, log; u free of functions) and ``v = polynomial or rational expression``.
2. **Reverse mode over that list.** Going backwards, each step adds δv ⊙ ∂v/∂s to δs for each symbol s it reads.
   The derivative of a function is written through its output, as in the lecture: σ′ = v(1 − v), tanh′ = 1 − v²,
   exp′ = v, relu′ = [v > 0] (``step(v)``); log′ = 1/u. A gate's pre-activation read with coefficient 1 inside a
   function gets its δ as soon as that function is passed (``δa_i = δi ⊙ i ⊙ (1 − i)``), and later terms use it.
3. **What the step must keep.** The forward values the backward reads (besides the states and parameters, which
   the runner and the cell keep anyway) are cached per step.

`Derivation` holds both lists; `equations_unicode` / `equations_latex` print them in the cell's symbols (δ for
gradients; ``s_t`` for the gradient of a new state arriving from the output and the next step).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .parse import Parsed, function

PRIME = {  # F'(u) written through v = F(u)
    "sigmoid": lambda v, u: v * (1 - v),
    "tanh": lambda v, u: 1 - v ** 2,
    "exp": lambda v, u: v,
    "relu": lambda v, u: step_function()(v),
    "log": lambda v, u: 1 / u,
}


def step_function():
    """[v > 0], the derivative of relu through its output (an undefined SymPy function printed as a comparison)."""
    return sympy.Function("step")


def delta(name: str) -> sympy.Symbol:
    return sympy.Symbol(f"d_{name}")


def incoming(state: str) -> sympy.Symbol:
    """δ of a new state from outside the step (the output at t and step t + 1)."""
    return sympy.Symbol(f"d_{state}_t")


@dataclass
class Derivation:
    """``forward``: (name, kind, expression) with kind "fn:<F>" (expression = the argument u) or "expr";
    ``backward``: (name, expression) assignments in order, names d_<symbol>; ``cached``: the forward names the
    backward reads that the runner does not keep (intermediates and gate inputs)."""

    parsed: Parsed
    forward: list[tuple[str, str, sympy.Expr]]
    backward: list[tuple[str, sympy.Expr]]
    cached: tuple[str, ...]

    @property
    def gate_inputs(self) -> tuple[str, ...]:
        """The pre-activation symbols the step reads, in gate order (a_k, or ax_k and ah_k)."""
        out = []
        for g in self.parsed.gates:
            out += [f"ax_{g}", f"ah_{g}"] if g in self.parsed.split else [f"a_{g}"]
        return tuple(out)

    def forward_expression(self, name: str) -> sympy.Expr:
        for n, kind, e in self.forward:
            if n == name:
                return function(kind[3:])(e) if kind.startswith("fn:") else e
        raise KeyError(name)


def derive(parsed: Parsed) -> Derivation:
    forward = lift(parsed.equations)
    backward = reverse_mode(parsed, forward)
    assigned = {n for n, _, _ in forward}
    needed = set().union(*(e.free_symbols for _, e in backward)) if backward else set()
    names = {s.name for s in needed}
    keep = [n for n, _, _ in forward if n in names and n not in parsed.states]
    gate_inputs = [s for s in sorted(names) if s.startswith(("a_", "ax_", "ah_")) and s not in assigned]
    return Derivation(parsed, forward, backward, tuple(keep + gate_inputs))


def lift(equations) -> list[tuple[str, str, sympy.Expr]]:
    """The forward as steps with at most one function each, outermost at the top (see the module notes)."""
    steps: list[tuple[str, str, sympy.Expr]] = []
    taken = {name for name, _ in equations} | {s.name for _, e in equations for s in e.free_symbols}

    def fresh(fn: sympy.Expr) -> str:
        arg = fn.args[0]
        base = f"{_fname(fn)}_{arg.name}" if isinstance(arg, sympy.Symbol) else _fname(fn)
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}{k}"
        taken.add(name)
        return name

    def flatten(expr: sympy.Expr) -> sympy.Expr:
        """``expr`` with every function application replaced by the symbol of a new step."""
        replaced = {}
        for fn in sorted(expr.atoms(sympy.Function), key=sympy.count_ops):
            if fn in replaced:
                continue
            arg = flatten(fn.args[0])
            name = fresh(fn)
            steps.append((name, f"fn:{_fname(fn)}", arg))
            replaced[fn] = sympy.Symbol(name)
        return expr.xreplace(replaced) if replaced else expr

    for target, expr in equations:
        if isinstance(expr, sympy.Function) and len(expr.args) == 1 and _fname(expr) in PRIME:
            steps.append((target, f"fn:{_fname(expr)}", flatten(expr.args[0])))
        else:
            steps.append((target, "expr", flatten(expr)))
    return steps


def _fname(fn) -> str:
    return getattr(fn.func, "__name__", str(fn.func))


def reverse_mode(parsed: Parsed, forward) -> list[tuple[str, sympy.Expr]]:
    """The backward assignments (module notes, step 2). Inputs of the step get their δ last: gate inputs into
    δxp, previous states (the pointwise part of δs_{t−1}) and parameters (summed over rows after the loop)."""
    terms: dict[str, list[sympy.Expr]] = {}
    out: list[tuple[str, sympy.Expr]] = []
    aliases: dict[sympy.Symbol, sympy.Expr] = {}
    gate_symbols = {sympy.Symbol(s) for s in _gate_inputs(parsed)}
    reads = {s: sum(1 for _, _, e in forward if s in e.free_symbols) for s in gate_symbols}

    def add(symbol: sympy.Symbol, term: sympy.Expr) -> None:
        terms.setdefault(symbol.name, []).append(term)

    for name, kind, expr in reversed(forward):
        total = sum(terms.pop(name, []), sympy.Integer(0))
        if name in parsed.states:
            total += incoming(name)
        total = total.xreplace(aliases)
        if total == 0:
            continue
        if isinstance(total, sympy.Symbol):
            aliases[delta(name)] = total
            dv = total
        else:
            out.append((delta(name).name, total))
            dv = delta(name)
        if kind.startswith("fn:"):
            dv = _through_function(kind[3:], name, expr, dv, gate_symbols, reads, out, aliases)
        for s in sorted(expr.free_symbols, key=lambda s: s.name):
            if delta(s.name) in aliases and s in gate_symbols:
                continue  # a gate input whose δ was just written
            add(s, dv * sympy.diff(expr, s))
    for s in _inputs(parsed):
        total = sum(terms.pop(s, []), sympy.Integer(0)).xreplace(aliases)
        if delta(s) not in aliases:  # (a gate input's δ written on the way has no other terms: read once)
            out.append((delta(s).name, total))
    return out


def _through_function(fname, name, arg, dv, gate_symbols, reads, out, aliases) -> sympy.Expr:
    """δu = δv ⊙ F′ (through v); written as the δ of a gate input read once with coefficient 1, when there is one."""
    du = dv * PRIME[fname](sympy.Symbol(name), arg)
    for s in sorted(arg.free_symbols & gate_symbols, key=lambda s: s.name):
        if reads[s] == 1 and sympy.diff(arg, s) == 1:
            out.append((delta(s.name).name, du))
            aliases[delta(s.name)] = delta(s.name)
            return delta(s.name)
    return du


def _gate_inputs(parsed: Parsed) -> list[str]:
    out = []
    for g in parsed.gates:
        out += [f"ax_{g}", f"ah_{g}"] if g in parsed.split else [f"a_{g}"]
    return out


def _inputs(parsed: Parsed) -> list[str]:
    """The step's inputs in the order their δ are written: gate inputs, previous states, parameters."""
    return _gate_inputs(parsed) + [f"{s}_prev" for s in parsed.states] + list(parsed.params)


# -- printing ------------------------------------------------------------------------------------------------
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def display_name(name: str) -> str:
    """d_c_prev → δc₋₁, d_h_t → δh_t, c_prev → c₋₁, sigmoid → σ."""
    if name.startswith("d_"):
        return "δ" + display_name(name[2:])
    if name.endswith("_prev"):
        return name[:-5] + "₋₁"
    return {"sigmoid": "σ"}.get(name, name)


class _UnicodePrinter(sympy.printing.str.StrPrinter):
    def _print_Symbol(self, expr):
        return display_name(expr.name)

    def _print_Mul(self, expr):
        return super()._print_Mul(expr).replace("*", "⊙")

    def _print_Pow(self, expr):
        if expr.exp.is_Integer and expr.exp > 1:
            return self.parenthesize(expr.base, sympy.printing.precedence.PRECEDENCE["Pow"]) \
                + str(expr.exp).translate(_SUPERSCRIPT)
        return super()._print_Pow(expr)

    def _print_Function(self, expr):
        if _fname(expr) == "step":
            return f"[{self._print(expr.args[0])} > 0]"
        return f"{display_name(_fname(expr))}({self._print(expr.args[0])})"


def latex_name(name: str) -> str:
    if name.startswith("d_"):
        return r"\delta " + latex_name(name[2:])
    if name.endswith("_prev"):
        return f"{name[:-5]}_{{t-1}}"
    if name.endswith("_t"):
        return f"{name[:-2]}_{{t}}"
    head, _, tail = name.partition("_")
    return f"{head}_{{{tail}}}" if tail else name


def _latex(expr: sympy.Expr) -> str:
    names = {s: latex_name(s.name) for s in expr.free_symbols}
    text = sympy.latex(expr, symbol_names=names, mul_symbol=r" \odot ")
    return text.replace(r"\operatorname{sigmoid}", r"\sigma").replace(r"\operatorname{step}", r"\mathbb{1}_{>0}")


def _pretty(expr: sympy.Expr) -> str:
    text = _UnicodePrinter().doprint(expr)
    return text.replace(" - ", " − ").replace("-1⊙", "−")


def equations_unicode(d: Derivation) -> tuple[list[str], list[str]]:
    """(forward lines, backward lines) in plain Unicode."""
    fwd = [f"{display_name(n)} = {_pretty(e)}" for n, e in d.parsed.equations]
    bwd = [f"{display_name(n)} = {_pretty(e)}" for n, e in d.backward]
    return fwd, bwd


def equations_latex(d: Derivation) -> tuple[list[str], list[str]]:
    """(forward lines, backward lines) in LaTeX."""
    fwd = [f"{latex_name(n)} = {_latex(e)}" for n, e in d.parsed.equations]
    bwd = [f"{latex_name(n)} = {_latex(e)}" for n, e in d.backward]
    return fwd, bwd
