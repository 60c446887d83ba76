"""A cell's definition — its pointwise step written as equations — read safely into SymPy expressions.

A `Definition` holds only declarative text (the strings a checkpoint stores). `parse` reads its equations with
Python's ``ast`` and a whitelist of node types — never ``eval`` and never ``sympy.sympify`` of the raw text — and
checks them: every symbol known, every function supported, every state updated, every gate and parameter used.
Any problem is a one-line `rnnkit.errors.ConfigError` naming it.

The symbols an equation may read:

* ``a_k`` — the pre-activation of gate ``k`` as the runner's GEMMs provide it: x W_ihᵀ + b_ih + s W_hhᵀ + b_hh
  (rows of gate k; s the recurrent state), or only x W_ihᵀ + b_ih in a cell without a recurrent state;
* ``ax_k`` and ``ah_k`` — the two parts of that pre-activation apart (x-part with b_ih, h-part with b_hh), for a
  gate whose h-part is scaled before it is added (GRU's reset-after candidate);
* ``s₋₁`` or ``s_prev`` — the previous value of state ``s``; after ``s = ...``, ``s`` is the new value;
* the elementwise parameters listed in ``params`` (vectors of H: peepholes, IndRNN's u);
* names assigned by earlier equations, and numbers.

Functions: σ / sigmoid, tanh, relu, exp, log; operators ⊙ or * (elementwise), +, −, /, ** (integer powers).
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError

FUNCTIONS = ("sigmoid", "tanh", "relu", "exp", "log")
#: spellings of the lecture's notation → the Python spelling the parser reads
SPELLINGS = {"⊙": "*", "·": "*", "×": "*", "−": "-", "σ": "sigmoid", "₋₁": "_prev", "²": "**2"}
FIELDS = ("name", "gates", "states", "output", "recurrent", "params", "equations")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED = re.compile(r"^(a|ax|ah|d)_|_(prev|t)$")  # inputs, gradients, previous values


@dataclass(frozen=True)
class Definition:
    """A cell's definition as text: ``gates`` "i f g o" (the H-wide blocks of the fused GEMMs, in row order),
    ``states`` "h c" (``output`` is the one a layer outputs), ``recurrent`` the state that feeds the recurrent GEMM
    ("" for none), ``params`` the elementwise parameters, ``equations`` the step."""

    name: str
    gates: str
    states: str
    equations: str
    output: str = "h"
    recurrent: str = "h"
    params: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> Definition:
        """The definition a dict describes (a checkpoint's), or a one-line `ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"a cell definition must be an object of strings, got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELDS))
        missing = [k for k in ("name", "gates", "states", "equations") if k not in data]
        if unknown or missing:
            raise ConfigError(f"a cell definition has the keys {', '.join(FIELDS)}; got unknown {unknown}, "
                              f"missing {missing}")
        for key, value in data.items():
            if not isinstance(value, str):
                raise ConfigError(f"cell definition field {key!r} must be a string, got {type(value).__name__}")
        return cls(**data)


@dataclass
class Parsed:
    """A checked definition: names, and the equations as (target name, SymPy expression) in order."""

    definition: Definition
    gates: tuple[str, ...]
    states: tuple[str, ...]  # the output state first (the runner's convention)
    recurrent: str | None
    params: tuple[str, ...]
    split: frozenset[str]  # gates read as ax_k / ah_k
    equations: list[tuple[str, object]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name


def words(text: str, what: str) -> tuple[str, ...]:
    """Space- or comma-separated names, each a plain identifier of letters and digits."""
    names = tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)
    for w in names:
        if not NAME.match(w) or RESERVED.search(w) or w in FUNCTIONS:
            raise ConfigError(f"{what} must be names of letters, digits and '_' (not a function, not starting with "
                              f"a_, ax_, ah_ or d_, not ending in _prev or _t), got {w!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{what} repeat a name: {text!r}")
    return names


def normalized(text: str) -> str:
    """The lecture's notation (⊙, −, σ, ₋₁, ²) in the Python spelling the parser reads."""
    text = unicodedata.normalize("NFC", text)
    for symbol, spelled in SPELLINGS.items():
        text = text.replace(symbol, spelled)
    return text


def statements(equations: str) -> list[str]:
    """The equations one by one: separated by ';' or new lines; '#' starts a comment."""
    lines = [line.split("#", 1)[0] for line in equations.splitlines()]
    return [s.strip() for line in lines for s in line.split(";") if s.strip()]


def parse(definition: Definition) -> Parsed:
    """Check ``definition`` and read its equations into SymPy (one-line `ConfigError` for any problem)."""
    if not NAME.match(definition.name):
        raise ConfigError(f"a cell's name must be letters, digits and '_', got {definition.name!r}")
    gates = words(definition.gates, "gates")
    states = words(definition.states, "states")
    params = words(definition.params, "params")
    if not gates:
        raise ConfigError(f"cell {definition.name!r}: no gates (the GEMMs' H-wide blocks, e.g. gates='i f g o')")
    if definition.output not in states:
        raise ConfigError(f"cell {definition.name!r}: output {definition.output!r} is not one of the states {states}")
    recurrent = definition.recurrent.strip() or None
    if recurrent is not None and recurrent not in states:
        raise ConfigError(f"cell {definition.name!r}: recurrent {recurrent!r} is not one of the states {states}")
    states = (definition.output,) + tuple(s for s in states if s != definition.output)
    reader = _Reader(definition.name, gates, states, recurrent, params)
    for number, text in enumerate(statements(normalized(definition.equations)), 1):
        reader.read(number, text)
    reader.check_complete()
    return Parsed(definition, gates, states, recurrent, params, frozenset(reader.split), reader.equations)


class _Reader:
    """Reads equations one at a time, knowing which names exist so far."""

    def __init__(self, cell: str, gates, states, recurrent, params):
        import sympy

        self.sympy, self.cell = sympy, cell
        self.gates, self.states, self.recurrent, self.params = gates, states, recurrent, params
        self.inputs = {f"{s}_prev" for s in states} | set(params)
        for g in gates:
            self.inputs |= {f"a_{g}"} | ({f"ax_{g}", f"ah_{g}"} if recurrent else set())
        self.assigned: list[str] = []
        self.used: set[str] = set()
        self.split: set[str] = set()
        self.equations: list[tuple[str, object]] = []

    def fail(self, number: int, text: str, problem: str):
        raise ConfigError(f"cell {self.cell!r}, equation {number} ({text}): {problem}")

    def read(self, number: int, text: str) -> None:
        try:
            tree = ast.parse(text, mode="exec")
        except SyntaxError as e:
            self.fail(number, text, f"not an equation 'name = expression' ({e.msg})")
        body = tree.body
        if len(body) != 1 or not isinstance(body[0], ast.Assign) or len(body[0].targets) != 1 \
                or not isinstance(body[0].targets[0], ast.Name):
            self.fail(number, text, "expected one equation 'name = expression'")
        target = body[0].targets[0].id
        if target in self.inputs or target in FUNCTIONS or RESERVED.search(target):
            self.fail(number, text, f"{target!r} is an input (a gate's pre-activation, a previous state or a "
                                    "parameter) or a function, not a name to assign")
        if target in self.assigned:
            self.fail(number, text, f"{target!r} is assigned twice")
        expr = self.expression(number, text, body[0].value)
        self.assigned.append(target)
        self.equations.append((target, expr))

    def expression(self, number: int, text: str, node):
        """The SymPy expression of an ``ast`` node (whitelisted node types only)."""
        sp = self.sympy
        if isinstance(node, ast.BinOp):
            left, right = self.expression(number, text, node.left), self.expression(number, text, node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
                    and type(node.right.value) is int and 1 <= node.right.value <= 4:
                return left ** node.right.value
            self.fail(number, text, f"unsupported operator {type(node.op).__name__} (use +, -, *, /, ** 1..4)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.expression(number, text, node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return sp.Integer(node.value) if type(node.value) is int else sp.Float(node.value, 17)
        if isinstance(node, ast.Name):
            return self.symbol(number, text, node.id)
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            if name not in FUNCTIONS:
                self.fail(number, text, f"unsupported function {name!r} (supported: σ/sigmoid, tanh, relu, exp, log)")
            if len(node.args) != 1 or node.keywords:
                self.fail(number, text, f"{name} takes one argument")
            return function(name)(self.expression(number, text, node.args[0]))
        self.fail(number, text, f"unsupported syntax {ast.unparse(node)!r} ({type(node).__name__})")

    def symbol(self, number: int, text: str, name: str):
        if name in self.inputs:
            gate = name.split("_", 1)[1] if name.startswith(("ax_", "ah_")) else None
            if gate is not None:
                self.split.add(gate)
            if name.startswith("a_") and name[2:] in self.split or gate is not None and f"a_{gate}" in self.used:
                self.fail(number, text, f"gate {name.split('_', 1)[1]!r} is read both whole (a_) and in parts "
                                        "(ax_/ah_)")
        elif name not in self.assigned:
            if name in self.states:
                self.fail(number, text, f"state {name!r} is read before it is assigned (its previous value is "
                                        f"{name}₋₁ or {name}_prev)")
            known = sorted(self.inputs | set(self.assigned))
            self.fail(number, text, f"unknown symbol {name!r} (known here: {', '.join(known)})")
        self.used.add(name)
        return self.sympy.Symbol(name)

    def check_complete(self) -> None:
        """Every state updated, every gate and parameter read, every intermediate used."""
        cell = self.cell
        for s in self.states:
            if s not in self.assigned:
                raise ConfigError(f"cell {cell!r}: state {s!r} is never updated (add an equation '{s} = ...')")
        for g in self.gates:
            parts = (f"ax_{g}", f"ah_{g}") if g in self.split else (f"a_{g}",)
            for part in parts:
                if part not in self.used:
                    raise ConfigError(f"cell {cell!r}: gate {g!r} is never used ({part} appears in no equation)")
        for p in self.params:
            if p not in self.used:
                raise ConfigError(f"cell {cell!r}: parameter {p!r} is never used")
        for name in self.assigned:
            if name not in self.used and name not in self.states:
                raise ConfigError(f"cell {cell!r}: {name!r} is computed but never used")


_FUNCTIONS: dict = {}


def function(name: str):
    """The SymPy function of a supported name: tanh, exp and log SymPy's own; σ and relu undefined functions whose
    derivatives `rnnkit.define.derive` writes through their outputs."""
    if name not in _FUNCTIONS:
        import sympy

        builtin = {"tanh": sympy.tanh, "exp": sympy.exp, "log": sympy.log}
        _FUNCTIONS[name] = builtin.get(name) or sympy.Function(name)
    return _FUNCTIONS[name]
