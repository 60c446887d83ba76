"""Source code generated from a `Derivation`: a readable NumPy step (the oracle) and a fused numba kernel.

Both define the same two functions, called by `rnnkit.define.cells.DefinedCell` between the runner's GEMMs:

    forward(pre, rec, b_rec, <prev states>, <params>, <new states>, cache)
    backward(<δ states>, <prev states>, <new states>, cache, <params>, dpre, drec, dparams)

``pre`` (n, G) is the input projection x W_ihᵀ + b_ih (+ b_hh of the gates read whole); ``rec`` (n, G) the
recurrent GEMM s_{t−1} W_hhᵀ (None without a recurrent state); ``b_rec`` (G,) b_hh, added to the h-part of the
gates read in parts (ah_k). States are (n, H) arrays, parameters (H,). ``cache`` (n, K·H) receives the forward
values the backward reads (`Derivation.cached`, in order). The backward reads δ of the new states from the state
arrays and overwrites them with the pointwise part of δ of the previous states; it writes δ(pre) into ``dpre``,
δ(rec) into ``drec`` (only where some gate is read in parts; else they are the same) and the parameters' δ per row
into ``dparams`` (n, P·H). Symbols appear in the code as ``v_<name>`` (no clash with the code's own names).

The kernel module also holds ``sequence_step`` / ``sequence_step_backward`` in the contract of
`rnnkit.kernels.sequence_loop` (the recurrent GEMM by BLAS from compiled code, then the fused pointwise map) and
the two entries ``sequence_forward`` / ``sequence_backward`` that run that one skeleton with them, so a defined
cell runs its whole time loop in one compiled call, as the hand-written RNN, LSTM and GRU do. The kernel source
is written to a file and imported from there (`rnnkit.define.kernel_files`), so numba's disk cache keeps the
compiled pointwise kernels between processes; numbers in it are typed like the data (`rnnkit.kernels.jit.like`).
"""

from __future__ import annotations

import hashlib
import sys

import sympy

from .derive import Derivation

NUMPY_FUNCTIONS = {"sigmoid": "sigmoid", "tanh": "np.tanh", "exp": "np.exp", "log": "np.log", "relu": "relu",
                   "step": "step"}
NUMBA_FUNCTIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "relu": "relu",
                   "step": "step"}


class _CodePrinter(sympy.printing.str.StrPrinter):
    """Python source of an expression: symbols as ``v_<name>``, functions from a table."""

    #: where set, the name of a scalar whose precision every number takes (``like(v, c)``, compiled kernels)
    typed_constants: str | None = None

    def __init__(self, functions: dict[str, str]):
        super().__init__({"full_prec": True})
        self.functions = functions

    def _number(self, value: str) -> str:
        return f"like({self.typed_constants}, {value})" if self.typed_constants else value

    def _print_Integer(self, expr):
        return self._number(f"{int(expr)}.0") if self.typed_constants else super()._print_Integer(expr)

    def _print_Symbol(self, expr):
        return f"v_{expr.name}"

    def _print_Function(self, expr):
        name = getattr(expr.func, "__name__", str(expr.func))
        return f"{self.functions[name]}({self._print(expr.args[0])})"

    def _print_Rational(self, expr):
        return self._number(f"({expr.p}.0/{expr.q}.0)")

    def _print_Float(self, expr):
        return self._number(repr(float(expr)))

    def _print_Pow(self, expr):
        if expr.exp.is_Integer and 1 < expr.exp <= 4:  # in parentheses: the printer places it as a power, which
            base = self.parenthesize(expr.base, sympy.printing.precedence.PRECEDENCE["Mul"])  # binds tighter than /
            return "(" + "*".join([base] * int(expr.exp)) + ")"
        if expr.exp == -1:
            base = self.parenthesize(expr.base, sympy.printing.precedence.PRECEDENCE["Pow"])
            return f"({self._number('1.0')}/{base})"
        return super()._print_Pow(expr)


def signature(d: Derivation) -> tuple[list[str], list[str]]:
    """The argument names of (forward, backward)."""
    p = d.parsed
    prev = [f"prev_{s}" for s in p.states]
    new = [f"new_{s}" for s in p.states]
    params = [f"param_{q}" for q in p.params]
    grads = [f"grad_{s}" for s in p.states]
    return (["pre", "rec", "b_rec", *prev, *params, *new, "cache"],
            [*grads, *prev, *new, "cache", *params, "dpre", "drec", "dparams"])


def _gate_reads(d: Derivation, index) -> list[tuple[str, str]]:
    """(symbol, source expression) of each gate input, ``index(k)`` giving the column of block k."""
    p, out = d.parsed, []
    for k, g in enumerate(p.gates):
        if g in p.split:
            out += [(f"ax_{g}", f"pre[{index(k)}]"), (f"ah_{g}", f"rec[{index(k)}] + b_rec[{index(k, True)}]")]
        elif p.recurrent:
            out.append((f"a_{g}", f"pre[{index(k)}] + rec[{index(k)}]"))
        else:
            out.append((f"a_{g}", f"pre[{index(k)}]"))
    return out


def _backward_plan(d: Derivation):
    """(common subexpressions, assignments) of the backward after SymPy's CSE."""
    names = [sympy.Symbol(f"d_{n[2:]}") for n, _ in d.backward]
    replacements, reduced = sympy.cse([e for _, e in d.backward], symbols=sympy.numbered_symbols("common"))
    return replacements, list(zip(names, reduced))


def numpy_source(d: Derivation) -> str:
    """The readable NumPy step of ``d`` (see the module notes)."""
    p, pr = d.parsed, _CodePrinter(NUMPY_FUNCTIONS)
    fwd_args, bwd_args = signature(d)
    lines = [f'"""NumPy step of the defined cell {p.name!r} (generated by rnnkit.define)."""', "",
             "import numpy as np", "", "from rnnkit.activations import sigmoid", "", "",
             "def relu(x):", "    return np.maximum(x, 0)", "", "",
             "def step(x):", "    return (x > 0).astype(x.dtype)", "", "",
             f"def forward({', '.join(fwd_args)}):", f"    H = new_{p.states[0]}.shape[1]"]
    lines += [f"    v_{s}_prev = prev_{s}" for s in p.states] + [f"    v_{q} = param_{q}" for q in p.params]
    lines += [f"    v_{name} = {src}" for name, src in _gate_reads(d, _numpy_block)]
    for name, kind, expr in d.forward:
        value = pr.doprint(sympy.Function(kind[3:])(expr) if kind.startswith("fn:") else expr)
        if name in p.states:
            lines += [f"    new_{name}[...] = {value}", f"    v_{name} = new_{name}"]
        else:
            lines.append(f"    v_{name} = {value}")
    lines += [f"    cache[:, {k}*H:{k + 1}*H] = v_{name}" for k, name in enumerate(d.cached)]
    lines += ["", "", f"def backward({', '.join(bwd_args)}):", f"    H = new_{p.states[0]}.shape[1]"]
    lines += [f"    v_{s}_prev, v_{s}, v_d_{s}_t = prev_{s}, new_{s}, grad_{s}" for s in p.states]
    lines += [f"    v_{q} = param_{q}" for q in p.params]
    lines += [f"    v_{name} = cache[:, {k}*H:{k + 1}*H]" for k, name in enumerate(d.cached)]
    common, assigned = _backward_plan(d)
    lines += [f"    {pr.doprint(s)} = {pr.doprint(e)}" for s, e in common + assigned]
    lines += _numpy_writes(d)
    return "\n".join(lines) + "\n"


def _numpy_block(k: int, bias: bool = False) -> str:
    return f"{k}*H:{k + 1}*H" if bias else f":, {k}*H:{k + 1}*H"


def _numpy_writes(d: Derivation) -> list[str]:
    p, out = d.parsed, []
    for name, src in _gate_reads(d, lambda k, bias=False: k):
        k = int(src.split("[")[1].split("]")[0])
        target = "drec" if name.startswith("ah_") else "dpre"
        out.append(f"    {target}[:, {k}*H:{k + 1}*H] = v_d_{name}")
        if p.split and name.startswith("a_") and p.recurrent:
            out.append(f"    drec[:, {k}*H:{k + 1}*H] = v_d_{name}")
    out += [f"    grad_{s}[...] = v_d_{s}_prev" for s in p.states]
    out += [f"    dparams[:, {k}*H:{k + 1}*H] = v_d_{q}" for k, q in enumerate(p.params)]
    return out


def numba_source(d: Derivation) -> str:
    """The fused kernels of ``d``: one pass over the rows and units per step, and the steps and entries of the
    whole-sequence loop (`rnnkit.kernels.sequence_loop`); see the module notes."""
    p = d.parsed
    lines = [f'"""Fused numba kernels of the defined cell {p.name!r} (generated by rnnkit.define)."""', "",
             "from rnnkit.define.kernel_support import relu, step  # noqa: F401 - read by the generated code",
             "from rnnkit.kernels.blas import matmul_weight  # noqa: F401",
             "from rnnkit.kernels.jit import INNER, JIT, exp, like, log, njit, sigmoid, tanh  # noqa: F401",
             "from rnnkit.kernels.sequence_loop import sequence_backward as loop_backward",
             "from rnnkit.kernels.sequence_loop import sequence_forward as loop_forward", "", ""]
    lines += _numba_forward(d) + ["", ""] + _numba_backward(d) + ["", ""] + _sequence_steps(d)
    return "\n".join(lines) + "\n"


def _numba_printer(d: Derivation) -> _CodePrinter:
    """The kernel's printer: numbers as ``like(v, c)`` in the precision of the first state (no float64 promotion
    of float32 arithmetic)."""
    printer = _CodePrinter(NUMBA_FUNCTIONS)
    printer.typed_constants = f"v_{d.parsed.states[0]}_prev"
    return printer


def _numba_forward(d: Derivation) -> list[str]:
    p, pr = d.parsed, _numba_printer(d)
    body = [f"v_{s}_prev = prev_{s}[r, j]" for s in p.states] + [f"v_{q} = param_{q}[j]" for q in p.params]
    body += [f"v_{name} = {src}" for name, src in _gate_reads(d, _numba_index)]
    for name, kind, expr in d.forward:
        body.append(f"v_{name} = {pr.doprint(sympy.Function(kind[3:])(expr) if kind.startswith('fn:') else expr)}")
        if name in p.states:
            body.append(f"new_{name}[r, j] = v_{name}")
    body += [f"cache[r, {k} * H + j] = v_{name}" for k, name in enumerate(d.cached)]
    vectors = {"b_rec", *(f"param_{q}" for q in p.params), *(() if p.recurrent else ("rec",))}
    return _row_kernel("forward", signature(d)[0], vectors, f"new_{p.states[0]}", body)


def _numba_backward(d: Derivation) -> list[str]:
    p, pr = d.parsed, _numba_printer(d)
    body = [f"v_{s}_prev, v_{s}, v_d_{s}_t = prev_{s}[r, j], new_{s}[r, j], grad_{s}[r, j]" for s in p.states]
    body += [f"v_{q} = param_{q}[j]" for q in p.params]
    body += [f"v_{name} = cache[r, {k} * H + j]" for k, name in enumerate(d.cached)]
    common, assigned = _backward_plan(d)
    body += [f"{pr.doprint(s)} = {pr.doprint(e)}" for s, e in common + assigned]
    for line in _numpy_writes(d):
        target, value = line.strip().split(" = ")
        array, _, index = target.partition("[")
        if index.startswith(":, "):
            k = index.split(":, ")[1].split("*H")[0]
            body.append(f"{array}[r, {k} * H + j] = {value}")
        else:
            body.append(f"{array}[r, j] = {value}")
    return _row_kernel("backward", signature(d)[1], {f"param_{q}" for q in p.params}, f"new_{p.states[0]}", body)


def _row_kernel(name: str, args: list[str], vectors: set[str], shaped: str, body: list[str]) -> list[str]:
    """Kernel ``name`` over the rows of its (n, ·) arguments, calling ``name_row`` with one row of each (1-D
    arrays, the way the hand-written kernels are written: LLVM vectorizes the loop over the units then, 4× faster
    than the same loop indexing 2-D arrays, measured on the LSTM); ``vectors`` are passed whole (the (H,) and
    (G,) parameters, or None). ``body`` indexes the current row as ``[r, ...]``."""
    rows = ", ".join(a if a in vectors else f"{a}[r]" for a in args)
    return (["@njit(**INNER)", f"def {name}_row({', '.join(args)}, H):", "    for j in range(H):"]
            + ["        " + line.replace("[r, ", "[") for line in body] + ["", "",
            "@njit(**JIT)", f"def {name}({', '.join(args)}):", f"    n, H = {shaped}.shape", "    for r in range(n):",
            f"        {name}_row({rows}, H)"])


def _sequence_steps(d: Derivation) -> list[str]:
    """The step and step_backward of `rnnkit.kernels.sequence_loop`'s contract, and the two entries that run the
    skeleton with them. Forward params: (W_hhᵀ, b_rec, rec (B, G), cache (T, B, K·H), *parameters); backward
    params: (W_hh, cache, dq (T, B, G), dparams (T, B, P·H), *parameters). W_hhᵀ, W_hh, rec and dq are unused
    (empty) where the definition does not need them."""
    p = d.parsed
    k = None if p.recurrent is None else p.states.index(p.recurrent)
    params = [f"param_{q}" for q in p.params]
    at = {s: f"states[{i}]" for i, s in enumerate(p.states)}
    prev = [f"{at[s]}[read, :n]" for s in p.states]
    new = [f"{at[s]}[write, :n]" for s in p.states]
    rec = "rec[:n]" if k is not None else "None"
    fwd = ["@njit(**INNER)", "def sequence_step(params, t, n, read, write, xp, states, team):",
           f"    w_hh_t, b_rec, rec, cache{''.join(', ' + q for q in params)} = params"]
    if k is not None:
        fwd.append(f"    matmul_weight({prev[k]}, w_hh_t, rec[:n], False)  # s_{{t−1}} W_hhᵀ")
    fwd.append(f"    forward(xp, {rec}, b_rec, {', '.join(prev + params + new)}, cache[t, :n])")
    drec = "dq[t, :n]" if p.split else "dxp"
    bwd = ["@njit(**INNER)", "def sequence_step_backward(params, t, n, read, write, dstate, states, dxp, team):",
           f"    w_hh, cache, dq, dparams{''.join(', ' + q for q in params)} = params",
           f"    backward({', '.join([f'dstate[{i}][:n]' for i in range(len(p.states))] + prev + new)}, "
           f"cache[t, :n], {''.join(q + ', ' for q in params)}dxp, {drec}, dparams[t, :n])"]
    if k is not None:
        bwd.append(f"    matmul_weight({drec}, w_hh, dstate[{k}][:n], True)  # δs_{{t−1}} += δrec W_hh")
    entries = ["# the skeleton is inlined into these entries with the step called by name, so numba caches them on",
               "# disk like the steps above (rnnkit.kernels.sequence_loop)", "", "",
               "@njit(**JIT)", "def sequence_forward(params, xp, states, counts, reverse, zoneout, team):",
               "    loop_forward(sequence_step, params, xp, states, counts, reverse, zoneout, team)", "", "",
               "@njit(**JIT)",
               "def sequence_backward(params, dy, dstate, states, counts, reverse, detach, dxp, zoneout, team):",
               "    loop_backward(sequence_step_backward, params, dy, dstate, states, counts, reverse, detach, dxp,",
               "                  zoneout, team)"]
    return fwd + ["", ""] + bwd + ["", ""] + entries


def _numba_index(k: int, bias: bool = False) -> str:
    return f"{k} * H + j" if bias else f"r, {k} * H + j"


def load_source(source: str, label: str):
    """Import generated ``source`` as a module (compiled from the string; no file is read or written). One module
    per distinct source and process."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    name = f"rnnkit_defined_{label}_{digest}"
    if name not in sys.modules:
        module = type(sys)(name)
        exec(compile(source, f"<rnnkit.define {label} {digest}>", "exec"), module.__dict__)  # our generated code
        sys.modules[name] = module
    return sys.modules[name]
