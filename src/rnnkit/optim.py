"""Optimizers with PyTorch's update rules (so ``torch.optim`` is their test oracle), and gradient clipping.

Each optimizer takes ``module.named_parameters()`` (or a list of Parameters) and works on ``p.data`` with
``p.grad``; ``weight_decay`` λ adds L2 decay to the gradient: g ← g + λ p. Per-parameter buffers are kept in
``self.state[name]`` and saved by ``state_dict()`` as flat ``{"name/buffer": array}`` (safetensors-friendly).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, StateDictError
from .module import Parameter, check_bool, check_float
from .validate import positive_real


class Optimizer:
    buffers: tuple[str, ...] = ()

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        items = list(params)
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        if isinstance(items[0], Parameter):
            items = [(str(i), p) for i, p in enumerate(items)]
        lr = positive_real(lr, "learning rate lr")
        weight_decay = check_float("weight_decay", weight_decay, 0.0)
        self.named = items
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state = {name: {b: np.zeros_like(p.data) for b in self.buffers} for name, p in items}

    def zero_grad(self) -> None:
        for _, p in self.named:
            p.grad[...] = 0

    def step(self) -> None:
        self.steps += 1
        for name, p in self.named:
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            self._update(p.data, g, self.state[name])

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"steps": np.array([self.steps], dtype=np.int64)}
        for name, bufs in self.state.items():
            for b, arr in bufs.items():
                out[f"{name}/{b}"] = arr.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        expected = {f"{name}/{b}" for name, bufs in self.state.items() for b in bufs} | {"steps"}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise StateDictError(f"optimizer state mismatch: missing {missing}, unexpected {extra}")
        self.steps = int(np.asarray(state["steps"]).reshape(-1)[0])
        for name, bufs in self.state.items():
            for b in bufs:
                bufs[b][...] = state[f"{name}/{b}"]


class SGD(Optimizer):
    """v ← μ v + g (v = g at the first step);  Nesterov: d = g + μ v, else d = v;  w ← w − lr d."""

    buffers = ("momentum",)

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        momentum, nesterov = check_float("momentum", momentum, 0.0), check_bool("nesterov", nesterov)
        if nesterov and momentum <= 0:
            raise ConfigError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, w, g, state):
        if self.momentum:
            v = state["momentum"]
            if self.steps == 1:
                v[...] = g
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        w -= self.lr * g


class Adagrad(Optimizer):
    """s ← s + g²;  w ← w − lr g / (√s + ε)   (Duchi et al. 2011)."""

    buffers = ("sum",)

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.eps = check_float("eps", eps, 0.0)

    def _update(self, w, g, state):
        s = state["sum"]
        s += g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class RMSprop(Optimizer):
    """s ← α s + (1−α) g²;  centered: m ← α m + (1−α) g, d = √(s − m²) + ε, else d = √s + ε;
    with momentum μ: b ← μ b + g/d, w ← w − lr b;  otherwise w ← w − lr g/d   (Tieleman & Hinton 2012)."""

    buffers = ("square_avg", "grad_avg", "momentum")

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps = check_float("alpha", alpha, 0.0, 1.0), check_float("eps", eps, 0.0)
        self.momentum, self.centered = check_float("momentum", momentum, 0.0), check_bool("centered", centered)

    def _update(self, w, g, state):
        s = state["square_avg"]
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        if self.centered:
            m = state["grad_avg"]
            m *= self.alpha
            m += (1 - self.alpha) * g
            d = np.sqrt(s - m * m) + self.eps
        else:
            d = np.sqrt(s) + self.eps
        if self.momentum:
            b = state["momentum"]
            b *= self.momentum
            b += g / d
            w -= self.lr * b
        else:
            w -= self.lr * g / d


class Adam(Optimizer):
    """m ← β₁ m + (1−β₁) g;  v ← β₂ v + (1−β₂) g²;  w ← w − lr (m / (1−β₁ᵗ)) / (√v / √(1−β₂ᵗ) + ε)
    (Kingma & Ba 2015, in PyTorch's arithmetic)."""

    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1, self.beta2 = (check_float(f"betas[{i}]", b, 0.0, 1.0, high_open=True) for i, b in enumerate(betas))
        self.eps = check_float("eps", eps, 0.0)

    def _update(self, w, g, state):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        bias1 = 1 - self.beta1 ** self.steps
        bias2 = 1 - self.beta2 ** self.steps
        w -= (self.lr / bias1) * m / (np.sqrt(v) / math.sqrt(bias2) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def grad_norm(params) -> float:
    """‖g‖₂ over all gradients together (NaN or Inf if any gradient is)."""
    return math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))


def clip_grad_norm(params, max_norm: float, total: float | None = None) -> float:
    """Scale all gradients by min(1, max_norm / (‖g‖₂ + 1e-6)), ‖g‖₂ over all of them; return ‖g‖₂.
    Pass ``total`` when the norm is already known."""
    grads = [p.grad for p in params]
    if total is None:
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total
