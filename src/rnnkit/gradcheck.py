"""`gradcheck`: float64 central differences against a module's hand-derived backward.

The scalar checked is L = Σ_outputs Σ w ⊙ output with fixed random weights w (standard normal), so every output
element and every state output is exercised. For each float input (initial states included) and each parameter
element θ, the numerical derivative (L(θ + ε) − L(θ − ε)) / 2ε is compared with the analytic gradient returned
by ``backward`` (inputs) or accumulated in ``p.grad`` (parameters).

Every evaluation runs on a fresh deep copy of the module converted to float64, so stateful carries, dropout
generators and caches are identical across evaluations (the dropout mask is the same in every forward).
"""

from __future__ import annotations

import copy

import numpy as np

from .module import Module


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


def gradcheck(module: Module, *inputs, eps: float = 1e-6, seed: int = 0, floor: float = 1e-4,
              report: bool = False, **forward_kwargs):
    """Return the worst relative error between analytic and numerical gradients (float64).

    ``inputs`` are the positional arguments of ``forward`` (arrays, tuples of arrays such as an LSTM's (h, c), or
    None); ``forward_kwargs`` are passed through (e.g. ``lengths=``). Integer inputs are not differentiated.
    The relative error of a tensor is max|analytic − numeric| / max(max|analytic|, max|numeric|, floor).
    With ``report=True`` also return a dict {name: error} (inputs are named ``input[i]``).
    """
    base = copy.deepcopy(module).to(np.float64)
    inputs = tuple(_to64(x) for x in inputs)

    def run(model, args):
        return model.forward(*args, **forward_kwargs)

    # Weights of the scalar objective, one array per float output.
    probe = run(copy.deepcopy(base), inputs)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in _leaves(probe)]

    def objective(model, args) -> float:
        return float(sum((w * o).sum() for w, o in zip(weights, _leaves(run(model, args)))))

    # Analytic gradients.
    model = copy.deepcopy(base)
    model.zero_grad()
    out = run(model, inputs)
    douts = _like(out, [w.copy() for w in weights])
    grads = model.backward(*douts) if isinstance(out, tuple) else model.backward(douts)
    grads = grads if isinstance(grads, tuple) else (grads,)
    analytic_params = {name: p.grad.copy() for name, p in model.named_parameters()}

    errors: dict[str, float] = {}
    # Inputs (and initial states).
    for i, (arg, grad) in enumerate(zip(inputs, grads)):
        arg_leaves, grad_leaves = _leaves(arg), _leaves(grad)
        for j, (a, g) in enumerate(zip(arg_leaves, grad_leaves)):
            numeric = np.zeros_like(a)
            for idx in np.ndindex(a.shape):
                values = []
                for sign in (1, -1):
                    perturbed = [leaf.copy() for leaf in arg_leaves]
                    perturbed[j][idx] += sign * eps
                    args = inputs[:i] + (_like(arg, perturbed),) + inputs[i + 1:]
                    values.append(objective(copy.deepcopy(base), args))
                numeric[idx] = (values[0] - values[1]) / (2 * eps)
            name = f"input[{i}]" + (f"[{j}]" if len(arg_leaves) > 1 else "")
            errors[name] = _relative_error(g, numeric, floor)
    # Parameters.
    for name, p in base.named_parameters():
        numeric = np.zeros_like(p.data)
        for idx in np.ndindex(p.data.shape):
            values = []
            for sign in (1, -1):
                trial = copy.deepcopy(base)
                dict(trial.named_parameters())[name].data[idx] += sign * eps
                values.append(objective(trial, inputs))
            numeric[idx] = (values[0] - values[1]) / (2 * eps)
        errors[name] = _relative_error(analytic_params[name], numeric, floor)
    worst = max(errors.values(), default=0.0)
    return (worst, errors) if report else worst
