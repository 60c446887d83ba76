"""`gradcheck`: float64 central differences against a module's hand-derived backward.

The scalar checked is L = Σ_outputs Σ w ⊙ output with fixed random weights w (standard normal), so every output
element and every state output is exercised. For each float input (initial states included) and each parameter
element θ, the numerical derivative (L(θ + ε) − L(θ − ε)) / 2ε is compared with the analytic gradient returned
by ``backward`` (inputs) or accumulated in ``p.grad`` (parameters).

A module is checked on fresh deep copies converted to float64, so stateful carries and dropout generators are
identical across evaluations (the dropout mask is the same in every forward). A plain function is checked with
its ``backward`` and the parameters of ``params``, perturbed in place and restored; numerical evaluations run
under `rnnkit.no_grad` (they save nothing).
"""

from __future__ import annotations

import copy

import numpy as np

from . import validate
from .errors import ConfigError
from .module import Module, no_grad


def _is_float(a) -> bool:
    return isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)


def _to64(obj):
    if _is_float(obj):
        return obj.astype(np.float64)
    if isinstance(obj, tuple):
        return tuple(_to64(o) for o in obj)
    return obj


def _leaves(obj) -> list[np.ndarray]:
    """Float arrays of a (possibly nested) tuple, in order."""
    if _is_float(obj):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [leaf for o in obj for leaf in _leaves(o)]
    return []


def _like(obj, leaves: list[np.ndarray]):
    """Rebuild the nested structure of ``obj`` with ``leaves`` in place of its float arrays."""
    if _is_float(obj):
        return leaves.pop(0)
    if isinstance(obj, tuple):
        return tuple(_like(o, leaves) for o in obj)
    return obj


def _relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float) -> float:
    scale = max(float(np.abs(analytic).max(initial=0.0)), float(np.abs(numeric).max(initial=0.0)), floor)
    return float(np.abs(analytic - numeric).max(initial=0.0)) / scale


class _ModuleUnderTest:
    """A module checked through its own forward/backward; every evaluation runs on a fresh float64 deep copy."""

    def __init__(self, module: Module, forward_kwargs: dict):
        self.base, self.kwargs = copy.deepcopy(module).to(np.float64), forward_kwargs

    def named_parameters(self):
        return list(self.base.named_parameters())

    def evaluate(self, args, perturb=None):
        model = copy.deepcopy(self.base)
        if perturb is not None:
            name, idx, delta = perturb
            dict(model.named_parameters())[name].data[idx] += delta
        with no_grad():
            return model.forward(*args, **self.kwargs)

    def analytic(self, args, weights):
        model = copy.deepcopy(self.base)
        model.zero_grad()
        out = model.forward(*args, **self.kwargs)
        douts = _like(out, [w.copy() for w in weights])
        grads = model.backward(*douts) if isinstance(out, tuple) else model.backward(douts)
        return grads, {name: p.grad.copy() for name, p in model.named_parameters()}


class _FunctionUnderTest:
    """``forward(*args)`` with its hand-written ``backward(*δoutputs)``, using the parameters of ``params``
    (a module or a cell, converted to float64 in place for the check and restored afterwards). The function must
    be deterministic (no dropout in training mode)."""

    def __init__(self, forward, backward, params, forward_kwargs: dict):
        if backward is None:
            raise ConfigError("gradcheck of a plain function needs backward= (its hand-derived backward)")
        self.forward, self.backward, self.kwargs = forward, backward, forward_kwargs
        self.params = [] if params is None else list(params.named_parameters())
        self.saved = [(p.data, p.grad) for _, p in self.params]
        for _, p in self.params:
            p.data, p.grad = p.data.astype(np.float64), np.zeros(p.data.shape)

    def restore(self) -> None:
        for (_, p), (data, grad) in zip(self.params, self.saved):
            p.data, p.grad = data, grad

    def named_parameters(self):
        return self.params

    def evaluate(self, args, perturb=None):
        target = None
        if perturb is not None:
            name, idx, delta = perturb
            target = dict(self.params)[name]
            original = target.data[idx]
            target.data[idx] += delta
        try:
            with no_grad():
                return self.forward(*args, **self.kwargs)
        finally:
            if target is not None:
                target.data[idx] = original

    def analytic(self, args, weights):
        out = self.forward(*args, **self.kwargs)
        douts = _like(out, [w.copy() for w in weights])
        grads = self.backward(*douts) if isinstance(out, tuple) else self.backward(douts)
        return grads, {name: p.grad.copy() for name, p in self.params}


def gradcheck(target, *inputs, backward=None, params=None, eps: float = 1e-6, seed: int = 0, floor: float = 1e-4,
              report: bool = False, **forward_kwargs):
    """Return the worst relative error between analytic and numerical gradients (float64).

    ``target`` is a `Module` (checked through its ``forward``/``backward``) or a plain function
    ``forward(*inputs)``, given with ``backward=`` (δoutputs → δinputs, hand-derived) and ``params=`` (the module or
    cell whose parameters it uses; their gradients are checked too). ``inputs`` are the positional arguments of
    the forward (arrays, tuples of arrays such as an LSTM's (h, c), or None); ``forward_kwargs`` are passed through
    (e.g. ``lengths=``). Integer inputs are not differentiated. The relative error of a tensor is
    max|analytic − numeric| / max(max|analytic|, max|numeric|, floor). With ``report=True`` also return a dict
    {name: error} (inputs are named ``input[i]``).
    """
    eps, seed, floor = validate.step_size(eps, "eps"), validate.seed(seed), validate.tolerance(floor, "floor")
    inputs = tuple(_to64(x) for x in inputs)
    if isinstance(target, Module) and backward is None:
        subject = _ModuleUnderTest(target, forward_kwargs)
    else:
        subject = _FunctionUnderTest(target, backward, params, forward_kwargs)
    try:
        errors = _errors(subject, inputs, eps, seed, floor)
    finally:
        if isinstance(subject, _FunctionUnderTest):
            subject.restore()
    worst = max(errors.values(), default=0.0)
    return (worst, errors) if report else worst


def _errors(subject, inputs: tuple, eps: float, seed: int, floor: float) -> dict[str, float]:
    """Relative error per input leaf and per parameter of ``subject``."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in _leaves(subject.evaluate(inputs))]

    def objective(args, perturb=None) -> float:  # L = Σ w ⊙ outputs, with fixed random weights w
        return float(sum((w * o).sum() for w, o in zip(weights, _leaves(subject.evaluate(args, perturb)))))

    grads, analytic_params = subject.analytic(inputs, weights)
    grads = grads if isinstance(grads, tuple) else (grads,)
    errors: dict[str, float] = {}
    for i, (arg, grad) in enumerate(zip(inputs, grads)):  # inputs (and initial states)
        arg_leaves = _leaves(arg)
        for j, (a, g) in enumerate(zip(arg_leaves, _leaves(grad))):
            def shifted(idx, delta, j=j, i=i, arg=arg, arg_leaves=arg_leaves):
                perturbed = [leaf.copy() for leaf in arg_leaves]
                perturbed[j][idx] += delta
                return objective(inputs[:i] + (_like(arg, perturbed),) + inputs[i + 1:])

            name = f"input[{i}]" + (f"[{j}]" if len(arg_leaves) > 1 else "")
            errors[name] = _relative_error(g, _central_differences(shifted, a.shape, eps), floor)
    for name, p in subject.named_parameters():
        numeric = _central_differences(lambda idx, delta, name=name: objective(inputs, (name, idx, delta)),
                                       p.data.shape, eps)
        errors[name] = _relative_error(analytic_params[name], numeric, floor)
    return errors


def _central_differences(shifted, shape: tuple[int, ...], eps: float) -> np.ndarray:
    """(L(θ + ε) − L(θ − ε)) / 2ε for every element, with ``shifted(idx, delta)`` = L at θ[idx] + delta."""
    numeric = np.zeros(shape)
    for idx in np.ndindex(shape):
        numeric[idx] = (shifted(idx, eps) - shifted(idx, -eps)) / (2 * eps)
    return numeric
