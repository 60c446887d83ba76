"""Losses. ``forward(...)`` returns a Python float and caches what ``backward()`` needs; ``backward()`` returns
the gradient with respect to the prediction (the first argument).

Every loss accepts an optional boolean/0-1 ``mask`` of the target's shape (for per-time-step losses over padded
batches); masked-out positions contribute nothing. ``reduction='mean'`` divides by the number of counted
elements (PyTorch's semantics), ``'sum'`` does not: ``'sum'`` is the lectures' total over time and units,
E_tot = Σ_t E(t) (deck 002) and L = Σ_t L⟨t⟩ (deck 004). ``MSELoss(half=True)`` is the lectures' E = ½ Σ (d − y)²,
``BCELoss`` the binary cross-entropy of probabilities (a network that ends in a sigmoid, as the lectures' do).
"""

from __future__ import annotations

import numpy as np

from .activations import log_softmax, sigmoid
from .errors import DTypeError, ShapeError, UsageError
from .module import check_bool, check_choice, check_floating, check_int

REDUCTIONS = ("mean", "sum")


class _Loss:
    def __init__(self, reduction: str = "mean"):
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self._grad = None

    def __call__(self, *args, **kwargs) -> float:
        return self.forward(*args, **kwargs)

    def _finish(self, per_element: np.ndarray, dper: np.ndarray, weight: np.ndarray) -> float:
        """Reduce ``per_element`` losses (weighted by the 0/1 ``weight``) and store the prediction gradient."""
        count = weight.sum()
        scale = 1.0 / max(count, 1.0) if self.reduction == "mean" else 1.0
        self._grad = dper * (weight * scale).astype(dper.dtype).reshape(weight.shape + (1,) * (dper.ndim - weight.ndim))
        return float((per_element * weight).sum() * scale)

    def count(self, target: np.ndarray, mask=None) -> float:
        """How many elements of ``target`` a ``'mean'`` reduction divides by (those the mask keeps)."""
        return float(_weights(target.shape, mask).sum())

    def backward(self) -> np.ndarray:
        if self._grad is None:
            raise UsageError("backward() called before forward()")
        return self._grad


def _weights(shape, mask) -> np.ndarray:
    """0/1 weights of ``shape`` from a mask of that shape or of its leading axes (e.g. (B, T) for (B, T, O))."""
    if mask is None:
        return np.ones(shape)
    mask = np.asarray(mask) if isinstance(mask, (list, tuple)) else mask
    shape = tuple(shape)
    if not isinstance(mask, np.ndarray) or mask.dtype.kind not in "biuf":
        got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise DTypeError(f"mask must be a boolean or 0/1 numpy array, got {got}")
    if mask.shape != shape[:mask.ndim]:
        raise ShapeError(f"mask must have shape {shape} or {shape[:-1]}, got {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ShapeError(f"mask must hold only 0 and 1 (or booleans), got values in [{mask.min()}, {mask.max()}]")
    mask = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
    return np.broadcast_to(mask, shape).astype(np.float64)


def _check_same_shape(pred, target, what):
    check_floating(pred, f"{what}: prediction")
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "biuf":
        got = target.dtype if isinstance(target, np.ndarray) else type(target).__name__
        raise DTypeError(f"{what}: target must be a real numpy array, got {got}")
    if pred.shape != target.shape:
        raise ShapeError(f"{what}: prediction shape {pred.shape} and target shape {target.shape} differ")
    if not np.isfinite(target).all():
        raise ShapeError(f"{what}: target contains NaN or Inf")


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits with integer class targets.

    logits z (..., C), target k (...):   ℓ = −log softmax(z)_k = logsumexp(z) − z_k
    δz = softmax(z) − onehot(k), times the reduction weight.  Targets equal to ``ignore_index`` are skipped.
    """

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__(reduction)
        self.ignore_index = check_int("ignore_index", ignore_index, -2**63, 2**63 - 1)

    def forward(self, logits: np.ndarray, target: np.ndarray, mask=None) -> float:
        check_floating(logits, "cross-entropy logits")
        if not isinstance(target, np.ndarray) or not np.issubdtype(target.dtype, np.integer):
            got = target.dtype if isinstance(target, np.ndarray) else type(target).__name__
            raise DTypeError(f"cross-entropy targets must be integer class indices, got {got}")
        if logits.ndim == 0 or logits.shape[:-1] != target.shape:
            raise ShapeError(f"cross-entropy: logits shape {logits.shape} needs target shape {logits.shape[:-1]},"
                             f" got {target.shape}")
        weight = _weights(target.shape, mask) * (target != self.ignore_index)
        safe = np.where(target == self.ignore_index, 0, target)
        num_classes = logits.shape[-1]
        if safe.size and (safe.min() < 0 or safe.max() >= num_classes):
            raise ShapeError(f"cross-entropy targets must lie in [0, {num_classes}), got [{safe.min()}, {safe.max()}]")
        logp = log_softmax(logits)
        picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        grad = np.exp(logp)
        np.put_along_axis(grad, safe[..., None], np.take_along_axis(grad, safe[..., None], -1) - 1.0, axis=-1)
        return self._finish(-picked, grad, weight)

    def count(self, target: np.ndarray, mask=None) -> float:
        """Counted targets: those the mask keeps that are not ``ignore_index``."""
        return float((_weights(target.shape, mask) * (target != self.ignore_index)).sum())


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (per time step, per output unit).

    ℓ = max(z, 0) − z·y + log(1 + e^{−|z|})     (stable form of −y log σ(z) − (1−y) log(1−σ(z)))
    δz = σ(z) − y, times the reduction weight.
    """

    def forward(self, logits: np.ndarray, target: np.ndarray, mask=None) -> float:
        _check_same_shape(logits, target, "binary cross-entropy")
        weight = _weights(target.shape, mask)
        target = target.astype(logits.dtype, copy=False)
        per = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
        return self._finish(per, sigmoid(logits) - target, weight)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities p = σ(z) already computed by the network (the lectures' form).

    ℓ = −y log p − (1 − y) log(1 − p);   δp = (p − y) / (p (1 − p)), times the reduction weight.
    p is clipped to [ε, 1 − ε] (ε = 1e-12) inside the logarithms, as ``torch.nn.BCELoss`` clamps log at −100.
    Prefer `BCEWithLogitsLoss` on the logits when the network can end without its sigmoid (it is more stable).
    """

    eps = 1e-12

    def forward(self, probs: np.ndarray, target: np.ndarray, mask=None) -> float:
        _check_same_shape(probs, target, "binary cross-entropy on probabilities")
        if probs.size and (probs.min() < 0 or probs.max() > 1):
            raise ShapeError(f"binary cross-entropy on probabilities: predictions must lie in [0, 1] (a network "
                             f"ending in a sigmoid; use BCEWithLogitsLoss on logits), got [{probs.min()}, "
                             f"{probs.max()}]")
        weight = _weights(target.shape, mask)
        target = target.astype(probs.dtype, copy=False)
        p = np.clip(probs, self.eps, 1.0 - self.eps)
        per = -(target * np.log(p) + (1.0 - target) * np.log1p(-p))
        return self._finish(per, (p - target) / (p * (1.0 - p)), weight)


class MSELoss(_Loss):
    """Squared error: ℓ = (ŷ − y)²;  δŷ = 2 (ŷ − y), times the reduction weight.

    ``half=True``: the lectures' ℓ = ½ (d − y)² and δy = y − d (so ``MSELoss(reduction='sum', half=True)`` is
    deck 002's E = ½ Σ_t Σ_k (d_k(t) − y_k(t))²).
    """

    def __init__(self, reduction: str = "mean", half: bool = False):
        super().__init__(reduction)
        self.half = check_bool("half", half)

    def forward(self, pred: np.ndarray, target: np.ndarray, mask=None) -> float:
        _check_same_shape(pred, target, "MSE")
        weight = _weights(target.shape, mask)
        diff = pred - target.astype(pred.dtype, copy=False)
        if self.half:
            return self._finish(0.5 * diff * diff, diff, weight)
        return self._finish(diff * diff, 2.0 * diff, weight)


#: The losses by the names tasks and ``rnnkit.fit`` use: cross-entropy over classes, mean squared error, binary
#: cross-entropy over multi-hot targets.
LOSSES = {"ce": CrossEntropyLoss, "mse": MSELoss, "bce": BCEWithLogitsLoss}
