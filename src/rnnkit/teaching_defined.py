"""Step-backward exercises for any defined cell (`rnnkit.define`): ``rnnkit teach exercise FILE.py:NAME`` writes
one, ``rnnkit teach grade`` grades it with the notebook's other exercises.

The exercise is the cell-specific part of a step's backward — the pointwise map between the runner's GEMMs, the
part `rnnkit.define.derive` derives. The student writes ``<name>_step_backward(delta, forward) -> grads``:

* ``delta`` {state: δs_t} — the gradient of each new state from the output and the next step, (n, H);
* ``forward`` {symbol: value} — the step's inputs (gate pre-activations ``a_k`` or ``ax_k``/``ah_k``, previous
  states ``s_prev``, elementwise parameters) and every value its equations assign (``i``, ``c``, ``h``, ...);
* ``grads`` {input: δ} — the δ of every input the equations read: pre-activations and previous states (n, H),
  parameters summed over the rows (H,). δs₋₁ is only the pointwise part: δrec W_hh is the GEMMs' work.

The notebook holds the definition as a literal (``DEFINITION = {...}`` in a cell tagged ``definition``, read with
``ast.literal_eval``, never run by the grader). The expected values are the derived backward
(`rnnkit.define.derive.Derivation.backward`) evaluated on fixed small inputs. A wrong answer is explained by the
chain rule's paths: every term ``δv ⊙ ∂v/∂s`` a forward step v adds to the δ of a symbol s it reads, and the δs_t
each new state receives. The judge recomputes the backward with one path dropped, counted twice or with its sign
reversed and names the first variant that gives the student's answer ("δc₋₁ is missing the δc⊙f path").
"""

from __future__ import annotations

import ast
import json
import textwrap
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .teaching import BEGIN, END, Exercise, _relative_error, cells

SUFFIX = "_step_backward"
DEFINITION_TAG = "definition"
#: (rows, units) of the fixed cases, one seed each
SHAPES = ((3, 4), (2, 3))
TOL = 1e-8
#: relative error under which an answer matches a variant with one path changed
MATCH = 1e-6
VARIANTS = ((0.0, "is missing the {} path"), (2.0, "counts the {} path twice"),
            (-1.0, "has the {} path with the wrong sign"))

_NUMERIC = {"sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0.0),
            "step": lambda x: (x > 0).astype(np.float64), "tanh": np.tanh, "exp": np.exp, "log": np.log}


def exercise_name(definition) -> str:
    return definition.name + SUFFIX


# -- the chain rule's paths, evaluated numerically ----------------------------------------------------------------
@dataclass(frozen=True)
class ChainPath:
    """One term of the chain rule: ``via`` (a forward step, or "" for the δs_t a state receives) adds ``text`` to
    δ ``target``; ``local`` evaluates ∂via/∂target through the forward's values (None for δs_t)."""

    target: str
    via: str
    text: str
    local: object


def _compiled(expr):
    """``expr`` as a function of a dict of values (SymPy's lambdify with σ, relu and step in NumPy)."""
    import sympy

    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    fn = sympy.lambdify(symbols, expr, modules=[_NUMERIC, "numpy"])
    return lambda values: fn(*(values[s.name] for s in symbols))


class Model:
    """A definition's forward steps (`rnnkit.define.derive.lift`) and its chain-rule paths, evaluated on arrays."""

    def __init__(self, definition):
        from .define import cell_class

        self.derivation = d = cell_class(definition).derivation
        self.parsed = p = d.parsed
        self.steps = [(name, kind, _compiled(expr)) for name, kind, expr in d.forward]
        self.targets = [name for name, _ in p.equations]
        read = set().union(*(e.free_symbols for _, _, e in d.forward))
        candidates = [*d.gate_inputs, *(f"{s}_prev" for s in p.states), *p.params]
        self.inputs = [s for s in candidates if any(r.name == s for r in read)]
        self.paths = _paths(d)
        self.backward = [(name, _compiled(expr)) for name, expr in d.backward]

    def forward(self, inputs: dict) -> dict:
        """Every forward value (lifted intermediates included) from the step's inputs."""
        values = dict(inputs)
        for name, kind, fn in self.steps:
            values[name] = _NUMERIC[kind[3:]](fn(values)) if kind.startswith("fn:") else fn(values)
        return values

    def derived(self, delta: dict, values: dict) -> dict:
        """The derived backward (`Derivation.backward`): {input: δ}, parameters summed over the rows."""
        known = dict(values) | {f"d_{s}_t": delta[s] for s in self.parsed.states}
        for name, fn in self.backward:
            known[name] = fn(known) * np.ones_like(delta[self.parsed.states[0]])
        return self._answer(known)

    def by_paths(self, delta: dict, values: dict, weights: dict | None = None) -> dict:
        """The backward summed path by path, each path's term times ``weights.get(path, 1)``."""
        weights = weights or {}
        like = np.zeros_like(delta[self.parsed.states[0]])
        received: dict[str, np.ndarray] = {}
        for path in self.paths:  # in reverse order of the forward: a step's δ is complete when it is read
            if path.via == "":
                dv = delta[path.target]
            else:
                dv = received.get(path.via, like) * path.local(values)
            received[path.target] = received.get(path.target, like) + weights.get(path, 1.0) * dv
        return self._answer({f"d_{s}": received.get(s, like) for s in self.inputs})

    def _answer(self, known: dict) -> dict:
        params = set(self.parsed.params)
        return {s: known[f"d_{s}"].sum(axis=0) if s in params else known[f"d_{s}"] for s in self.inputs}


def _paths(d) -> list[ChainPath]:
    """The chain rule's paths of a derivation, in the order reverse mode visits them (module notes). A term is
    printed as the derived backward writes it (δa_k for a gate read once inside a function), with the δ of a
    lifted intermediate (tanh_c = tanh(c)) replaced by its one term when it has one."""
    import sympy

    from .define.derive import PRIME, _pretty, display_name

    targets = {t for t, _ in d.parsed.equations}
    lifted = {sympy.Symbol(n): (sympy.Function(k[3:])(e) if k.startswith("fn:") else e)
              for n, k, e in d.forward if n not in targets}
    gates = {sympy.Symbol(s) for s in d.gate_inputs}
    reads = {g: sum(1 for _, _, e in d.forward if g in e.free_symbols) for g in gates}
    paths, terms = [], {}
    for name, kind, expr in reversed(d.forward):
        v = sympy.Symbol(name)
        if name in d.parsed.states:
            paths.append(ChainPath(name, "", f"δ{display_name(name)}_t", None))
        dv = terms[name][0] if v in lifted and len(terms.get(name, ())) == 1 else sympy.Symbol(f"d_{name}")
        prime = PRIME[kind[3:]](v, expr) if kind.startswith("fn:") else sympy.Integer(1)
        through = next((g for g in sorted(expr.free_symbols & gates, key=str) if kind.startswith("fn:")
                        and reads[g] == 1 and sympy.diff(expr, g) == 1), None)
        for s in sorted(expr.free_symbols, key=lambda s: s.name):
            local = prime * sympy.diff(expr, s)
            shown = dv * local
            if through is not None and s != through:  # as the printed backward writes it: δa_k ⊙ ∂u/∂s
                shown = sympy.Symbol(f"d_{through.name}") * sympy.diff(expr, s)
            terms.setdefault(s.name, []).append(shown)
            paths.append(ChainPath(s.name, name, _pretty(shown.xreplace(lifted)), _compiled(local)))
    return paths


# -- cases, the judge, and the exercises a notebook holds ---------------------------------------------------------
def case(model: Model, rows: int, units: int, seed: int) -> tuple[dict, dict]:
    """(delta, forward) of one fixed case: the inputs N(0, 1) from ``seed``; forward holds inputs and targets."""
    rng = np.random.default_rng(seed)
    inputs = {s: rng.standard_normal(units if s in model.parsed.params else (rows, units)) for s in model.inputs}
    values = model.forward(inputs)
    delta = {s: rng.standard_normal((rows, units)) for s in model.parsed.states}
    shown = {k: values[k] for k in [*model.inputs, *model.targets]}
    return delta, shown


def cases(definition):
    """The exercise's cases: ((delta, forward), expected {input: δ}) on `SHAPES`."""
    model = Model(definition)
    for seed, (rows, units) in enumerate(SHAPES):
        delta, shown = case(model, rows, units, seed)
        values = model.forward({k: shown[k] for k in model.inputs})
        expected = model.derived(delta, values)
        check = model.by_paths(delta, values)
        assert all(_relative_error(check[k], expected[k]) < 1e-12 for k in expected), \
            "internal: the chain rule's paths disagree with the derived backward"
        if not all(np.isfinite(v).all() for v in [*expected.values(), *values.values()]):
            raise ConfigError(f"cell {definition.name!r} is not finite on N(0, 1) inputs (a log of a negative "
                              "value?); it cannot be an exercise")
        yield (delta, shown), expected


def judge(definition):
    """The judge of one case: the worst relative error, or `AssertionError` naming the wrong δ and the path."""
    from .define.derive import display_name

    name, model = exercise_name(definition), Model(definition)

    def judge_case(got, expected: dict, arguments: tuple) -> float:
        if not isinstance(got, dict) or set(got) != set(expected):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise AssertionError(f"{name} must return a dict with the keys {sorted(expected)}, got {keys}")
        errors = {k: _relative_error(got[k], want) for k, want in expected.items()}
        wrong = [k for k, err in errors.items() if not err < TOL]
        if not wrong:
            return max(errors.values(), default=0.0)
        shown = ", ".join("δ" + display_name(k) for k in wrong)
        worst = max(errors[k] for k in wrong)
        verb = "is" if len(wrong) == 1 else "are"
        raise AssertionError(f"{name}: {shown} {verb} wrong (relative error {worst:.1e}); "
                             f"{explain(model, got, arguments)}")

    return judge_case


def explain(model: Model, got: dict, arguments: tuple) -> str:
    """Which single changed path gives ``got`` (else the derived equation of the first wrong δ)."""
    from .define.derive import display_name

    delta, shown = arguments
    values = model.forward({k: shown[k] for k in model.inputs})
    lifted = {name for name, _, _ in model.derivation.forward} - set(model.targets)
    # a path into the δ of a named value first: "δc is missing ..." rather than "δtanh_c is missing ..."
    for path in sorted(model.paths, key=lambda p: p.target in lifted):
        for weight, wording in VARIANTS:
            variant = model.by_paths(delta, values, {path: weight})
            if all(_relative_error(got[k], variant[k]) < MATCH for k in variant):
                return f"δ{display_name(path.target)} {wording.format(path.text)}"
    expected = model.derived(delta, values)
    first = next(k for k in expected if not _relative_error(got[k], expected[k]) < TOL)
    _, lines = _equations(model)
    line = next((text for text in lines if text.startswith(f"δ{display_name(first)} =")), "")
    return f"no single path explains it; the derived backward has {line}" if line else "no single path explains it"


def _equations(model: Model):
    from .define.derive import equations_unicode

    return equations_unicode(model.derivation)


def definitions_in(text: str) -> list:
    """The definitions of a notebook's cells tagged ``definition`` (``DEFINITION = {...}``, a literal)."""
    from .define import Definition, cell_class

    found = []
    for c in cells(text):
        if c.kind != "code" or DEFINITION_TAG not in c.tags:
            continue
        try:
            tree = ast.parse(c.source)
            assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                          and [getattr(t, "id", None) for t in n.targets] == ["DEFINITION"])
            data = ast.literal_eval(assign.value)
        except (SyntaxError, StopIteration, ValueError, TypeError, RecursionError):
            raise ConfigError("a cell tagged 'definition' must hold DEFINITION = {...} (a literal dict of strings, "
                              "as rnnkit teach exercise writes it)") from None
        definition = Definition.from_dict(data)
        cell_class(definition)
        found.append(definition)
    return found


def exercises_of(definitions) -> dict[str, Exercise]:
    """{name: Exercise} of the step backward of each definition."""
    return {exercise_name(d): Exercise(exercise_name(d), lambda d=d: cases(d), judge(d)) for d in definitions}


def exercises_in(text: str) -> dict[str, Exercise]:
    """{name: Exercise} of the defined cells a notebook's ``definition`` cells hold."""
    return exercises_of(definitions_in(text))


def check(definition, fn) -> None:
    """Grade ``fn`` in this process (a notebook's own check): print the worst error, or `AssertionError`."""
    from .define.cells import as_definition
    from .teaching import judge_answer
    from .teaching_child import call_exercise, encode

    definition = as_definition(definition)
    exercise = exercises_of([definition])[exercise_name(definition)]
    found = list(exercise.cases())
    answer = call_exercise(fn, [encode(arguments) for arguments, _ in found])
    worst = judge_answer(exercise.name, answer, found, exercise)
    print(f"{exercise.name}: correct (worst relative error {worst:.1e})")


def example(definition) -> tuple[dict, dict]:
    """The (delta, forward) of the first case, to look at (shapes, names)."""
    from .define.cells import as_definition

    return case(Model(as_definition(definition)), *SHAPES[0], 0)


# -- the notebook ---------------------------------------------------------------------------------------------------
HELPERS = {"sigmoid": "def sigmoid(x):\n    return 1.0 / (1.0 + np.exp(-x))",
           "relu": "def relu(x):\n    return np.maximum(x, 0.0)",
           "step": "def step(x):\n    return (x > 0).astype(x.dtype)"}


def solution_lines(model: Model) -> list[str]:
    """The derived backward as the body of the exercise function (NumPy, symbols as ``v_<name>``)."""
    import sympy

    from .define.codegen import NUMPY_FUNCTIONS, _CodePrinter

    d, printer = model.derivation, _CodePrinter(NUMPY_FUNCTIONS)
    lifted = [(n, k, e) for n, k, e in d.forward if n not in model.targets]
    needed = set().union(*(e.free_symbols for _, e in d.backward), *(e.free_symbols for _, _, e in lifted))
    given = [n for n in [*model.inputs, *model.targets] if sympy.Symbol(n) in needed]
    body = [f'v_d_{s}_t = delta["{s}"]' for s in d.parsed.states] + [f'v_{n} = forward["{n}"]' for n in given]
    body += [f"v_{n} = {printer.doprint(sympy.Function(k[3:])(e) if k.startswith('fn:') else e)}"
             for n, k, e in lifted]
    unread = {f"d_{s}_prev" for s in d.parsed.states} - {f"d_{s}" for s in model.inputs}
    body += [f"{printer.doprint(sympy.Symbol(n))} = {printer.doprint(e)}" for n, e in d.backward if n not in unread]
    params = set(d.parsed.params)
    answer = [f'    "{s}": v_d_{s}{".sum(axis=0)" if s in params else ""},' for s in model.inputs]
    text = "\n".join(body)
    helpers = [line for name, source in HELPERS.items() if f"{name}(" in text for line in source.splitlines()]
    return helpers + body + ["return {", *answer, "}"]


def _keys(names) -> str:
    return ", ".join(f'`"{n}"`' for n in names)


def _introduction(model: Model, reference: str) -> list[str]:
    from .define.derive import display_name, equations_latex

    p = model.parsed
    forward, _ = equations_latex(model.derivation)
    states = ", ".join(f"δ{display_name(s)}_t" for s in p.states)
    return [f"# The step backward of the cell `{p.name}`", "",
            f"Written by `rnnkit teach exercise {reference}`. The cell's pointwise step, between the runner's matrix "
            "products (a pre-activation $a_k$ is the block $k$ of $x W_{ih}^\\top + b_{ih} + s_{t-1} W_{hh}^\\top + "
            "b_{hh}$; $ax_k$ and $ah_k$ are its $x$- and $h$-parts):", "",
            *[f"$${line}$$" for line in forward], "",
            f"Write its backward: given {states}, the gradients of the new states from outside the step (the output "
            "and the next step), return the δ of every input the equations read. Each δ is the sum of the chain "
            "rule's paths: every term δv ⊙ ∂v/∂s that a value v adds to the δ of a symbol s it reads.", "",
            "| you receive | what |", "|---|---|",
            f"| {', '.join(f'`delta[{chr(34)}{s}{chr(34)}]`' for s in p.states)} | {states}, (n, H) |",
            f"| `forward[...]`: {_keys(model.inputs)} | the step's inputs: (n, H); parameters (H,) |",
            f"| `forward[...]`: {_keys(model.targets)} | the values the equations assign, (n, H) |", "",
            f"Return a dict with the keys {_keys(model.inputs)}: the δ of each input; δ of a previous state only "
            "through these equations (δs W_hh is the GEMMs' part, not this step's)"
            + (", and each parameter's δ summed over the rows, (H,)." if p.params else ".")]


def exercise_notebook(definition, reference: str) -> str:
    """The teacher's notebook of ``definition``'s exercise: the derived solution between the solution markers
    (`rnnkit.teaching.student_source` of it is the student's)."""
    from .define.derive import equations_unicode

    model, name = Model(definition), exercise_name(definition)
    list(cases(definition))  # refuse a definition whose cases are not finite before anything is written
    forward, _ = equations_unicode(model.derivation)
    doc = [f'"""The backward of the step of {definition.name!r}:', "", *[f"    {line}" for line in forward], "",
           "delta: {state: δ of its new value}; forward: the inputs and assigned values; returns {input: δ}.",
           '"""']
    literal = json.dumps(definition.to_dict(), ensure_ascii=False, indent=4)
    paragraphs = [line if line[:1] in "|$" else textwrap.fill(line, 112) for line in _introduction(model, reference)]
    markdown = ["# %% [markdown]", *[f"# {line}".rstrip() for text in paragraphs for line in text.split("\n")]]
    return "\n".join([
        *markdown, "", "# %% tags=[\"definition\"]",
        "# The cell of this exercise: `rnnkit teach grade` reads it from here (a literal; keep it as it is).",
        f"DEFINITION = {literal}", "", "# %%", "import numpy as np", "", "from rnnkit import teaching_defined", "",
        "delta, forward = teaching_defined.example(DEFINITION)  # a case: look at the names and shapes",
        "print({k: v.shape for k, v in delta.items()}, {k: v.shape for k, v in forward.items()})", "",
        "# %% tags=[\"exercise\"]", f"def {name}(delta, forward):", *[("    " + line).rstrip() for line in doc],
        f"    {BEGIN}", *["    " + line for line in solution_lines(model)], f"    {END}", "", "",
        "# %%", f"teaching_defined.check(DEFINITION, {name})", "",
        "# %% [markdown]", f"# Graded with `rnnkit teach grade {name}.py`: a wrong δ is named with the chain rule's "
        "path that", "# explains it (a path missing, counted twice or with the wrong sign).", ""])
