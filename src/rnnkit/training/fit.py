"""Training from Python: `fit`, `predict` and `evaluate` on NumPy arrays, through the one `Trainer`.

    model = rnnkit.Sequential(rnnkit.Embedding(V, 16), rnnkit.LSTM(16, 64, return_state=False), rnnkit.Linear(64, V))
    history = rnnkit.fit(model, x, y, epochs=10, batch_size=32, loss="ce", lr=1e-2)
    logits = rnnkit.predict(model, x[:1])

`fit` wraps the arrays in an `ArrayTask` and any `Module` in a `ModuleModel` — the `TrainableModel` protocol for a
module whose ``forward(x)`` (``forward(x, lengths=...)`` for a ragged batch) returns the outputs, or (outputs,
state), and whose ``backward(δoutputs)`` backpropagates them — and runs `Trainer`: full BPTT, or truncated BPTT
with ``k1``/``k2`` (the state of every recurrent layer inside the module carried, detached, from window to window).
Nothing is written unless ``run_dir`` is given; then metrics.jsonl, loss.png and a checkpoint go there, as for
``rnnkit train`` (reload the weights with ``model.load_state_dict(rnnkit.training.checkpoint.load(run_dir)[1])``).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import numpy as np

from .. import validate
from ..activations import Sigmoid
from ..errors import ConfigError, ShapeError
from ..layers import Sequential
from ..losses import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss
from ..models.protocol import inference, layers_carry_layout
from ..module import Module, check_bool, check_int, check_positive_int
from ..recurrent.layer import RecurrentLayer
from ..tasks.base import Batch, TaskBase
from .checkpoint import exists as checkpoint_exists
from .trainer import TrainConfig, Trainer


def make_loss(loss):
    """A loss object from a name (``"ce"``, ``"mse"``, ``"bce"``) or a loss object itself."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {sorted(LOSSES)} or a loss object, got {loss!r}")
        return LOSSES[loss]()
    if not all(hasattr(loss, name) for name in ("forward", "backward", "count")):
        raise ConfigError(f"loss must be one of {sorted(LOSSES)} or an rnnkit loss object, got {loss!r}")
    return loss


def _outputs(out):
    """The outputs of a forward that returns (outputs, state) or the outputs alone."""
    return out[0] if isinstance(out, tuple) else out


def _forward(module, x, lengths):
    return _outputs(module.forward(x) if lengths is None else module.forward(x, lengths=lengths))


class ArrayTask(TaskBase):
    """NumPy arrays as a `Task`: ``inputs`` (N, T[, I]) token ids or reals, ``targets`` (N, T[, O]) per step or
    (N[, O]) per sequence, optional ``lengths`` (N,) and ``mask`` (N, T) (default: the steps within ``lengths``);
    shuffled mini-batches of ``batch_size`` per epoch (the same for the same seed and epoch), ``val`` = (inputs,
    targets[, lengths[, mask]]) for validation."""

    name = "arrays"

    def __init__(self, inputs, targets, lengths=None, mask=None, val=None, batch_size: int = 32, loss="ce",
                 seed: int = 0, shuffle: bool = True, continuous: bool = False):
        batch_size, seed = check_positive_int("batch_size", batch_size), validate.seed(seed)
        self.loss, self.batch_size, self.seed, self.shuffle = loss, batch_size, seed, shuffle
        self.data = _as_batch(inputs, targets, lengths, mask, "")
        self.per_step = self.data.mask.ndim == 2
        self.seq_length = self.data.x.shape[1]
        self.val = [] if val is None else _split(_as_batch(*_val_tuple(val), "val "), 256)
        if continuous:
            self._check_continuous()
        self.stream = continuous  # continuous training: the trainer carries the state from batch to batch

    def _check_continuous(self) -> None:
        """Continuous training (``reset_state='never'``) carries row i's final state into row i of the next batch
        (and from the last batch of an epoch into the first of the next): the rows must be streams in a fixed
        order, in batches of one size, with a target per step."""
        n = len(self.data.x)
        if self.shuffle or not self.per_step or self.data.lengths is not None or n % min(self.batch_size, n):
            raise ConfigError("reset_state='never' (continuous training) on arrays needs shuffle=False, a target per "
                              f"step, no lengths and batches of one size (N divisible by batch_size), got "
                              f"shuffle={self.shuffle}, targets {self.data.target.shape}, "
                              f"lengths={'given' if self.data.lengths is not None else None}, N={n}, "
                              f"batch_size={self.batch_size}")

    def batches(self, epoch: int):
        n = len(self.data.x)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            yield _rows(self.data, order[start:start + self.batch_size])

    def num_batches(self) -> int:
        return math.ceil(len(self.data.x) / self.batch_size)

    def config(self) -> dict:
        return {"task": self.name, "samples": len(self.data.x), "batch_size": self.batch_size, "seed": self.seed}


def _val_tuple(val) -> tuple:
    if not isinstance(val, (tuple, list)) or not 2 <= len(val) <= 4:
        raise ConfigError("val must be a tuple (inputs, targets[, lengths[, mask]])")
    return tuple(val) + (None,) * (4 - len(val))


def _as_batch(inputs, targets, lengths, mask, what: str) -> Batch:
    """All samples as one `Batch`, checked: a mask (N, T) for per-step targets, (N,) for one target per sequence.
    One unbatched sequence — (T,) token ids or (T, I) reals — is a batch of one."""
    x, y = np.asarray(inputs), np.asarray(targets)
    if x.ndim == (1 if np.issubdtype(x.dtype, np.integer) else 2):
        x, y = x[None], y[None]
        lengths = None if lengths is None else np.atleast_1d(lengths)
        mask = None if mask is None else np.asarray(mask)[None]
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise ShapeError(f"{what}inputs must be (N, T[, I]) with the targets' N >= 1 rows, got shapes {x.shape} and "
                         f"{y.shape}")
    per_step = y.ndim >= 2 and y.shape[1] == x.shape[1] and (np.issubdtype(y.dtype, np.integer) or y.ndim == 3)
    lengths = None if lengths is None else np.asarray(lengths)
    if mask is None:
        steps = np.arange(x.shape[1])[None, :]
        mask = np.ones((len(x), x.shape[1]) if per_step else (len(x),), bool)
        if per_step and lengths is not None:
            mask = steps < lengths.reshape(-1, 1)
    mask = np.asarray(mask)
    if mask.shape != y.shape[:mask.ndim]:
        raise ShapeError(f"{what}mask must have the leading shape of the targets {y.shape}, got {mask.shape}")
    return Batch(x, y, mask, lengths)


def _rows(batch: Batch, rows) -> Batch:
    lengths = None if batch.lengths is None else batch.lengths[rows]
    return Batch(batch.x[rows], batch.target[rows], batch.mask[rows], lengths)


def _split(batch: Batch, size: int) -> list[Batch]:
    return [_rows(batch, np.arange(s, min(s + size, len(batch.x)))) for s in range(0, len(batch.x), size)]


class ModuleConfig:
    """What a checkpoint of a `ModuleModel` records of it: the module's class (its weights are the state dict)."""

    kind = "module"

    def __init__(self, module: str):
        self.module = module

    def to_dict(self) -> dict:
        return {"module": self.module}


def _ends_in_sigmoid(module: Module) -> bool:
    """Whether ``module``'s outputs are probabilities from a sigmoid: a `Sigmoid`, a `Sequential` ending in one, or a
    layer whose ``output_activation`` is sigmoid (`Elman`, `LSTMNet`, `Jordan`)."""
    if isinstance(module, Sequential):
        return bool(module.layers) and _ends_in_sigmoid(module.layers[-1])
    return isinstance(module, Sigmoid) or getattr(module, "output_activation", None) == "sigmoid"


class ModuleModel:
    """Any `Module` and a loss as a `TrainableModel` (see the module docstring); the module itself is ``.module``."""

    def __init__(self, module: Module, loss="ce"):
        if not isinstance(module, Module):
            raise ConfigError(f"fit needs an rnnkit Module, got {type(module).__name__}")
        self.module, self.objective = module, make_loss(loss)
        if isinstance(self.objective, BCEWithLogitsLoss) and _ends_in_sigmoid(module):
            raise ConfigError(f"loss 'bce' (BCEWithLogitsLoss) takes logits, but this {type(module).__name__} ends in "
                              "a sigmoid (the sigmoid would be applied twice): use loss=rnnkit.BCELoss() on its "
                              "probabilities, or an output without the sigmoid (output_activation='identity')")
        self.config = ModuleConfig(type(module).__name__)
        self.recurrent = [m for m in module.modules() if isinstance(m, RecurrentLayer)]
        self.per_step = True

    # -- the TrainableModel protocol ------------------------------------------------------------------
    def bind_task(self, task) -> None:
        self.per_step = getattr(task, "per_step", True)

    def train_batch(self, batch: Batch, window=None, state=None) -> float:
        """Forward and backward over x[:, start:end] from ``state`` (one per recurrent layer), loss on the steps
        [loss_start, end) — or on the whole sequence's targets when there is one target per sequence."""
        steps = batch.x.shape[1]
        start, end, loss_start = window or (0, steps, 0)
        whole = (start, end) == (0, steps)
        if not whole and (batch.lengths is not None or not self.per_step):
            raise ConfigError("truncated BPTT (k1) needs equal-length sequences with a target per step")
        self.module.train()
        with self._carrying(state):
            out = _forward(self.module, batch.x[:, start:end], batch.lengths)
        target, mask = batch.target, batch.mask
        if self.per_step:
            target, mask = target[:, start:end], mask[:, start:end].copy()
            mask[:, :loss_start - start] = False
        value = self.objective.forward(out, target, mask=mask)
        if np.isfinite(value):
            self.module.backward(self.objective.backward())
        return value

    @contextmanager
    def _carrying(self, state):
        """Start every recurrent layer from its part of ``state`` (None: zeros) for one forward."""
        if state is None:
            yield
            return
        before = [(r.stateful, r.carried_state) for r in self.recurrent]
        try:
            for r, s in zip(self.recurrent, self._per_layer(state)):
                r.stateful, r.carried_state = True, s
            yield
        finally:
            for r, (stateful, carry) in zip(self.recurrent, before):
                r.stateful, r.carried_state = stateful, carry

    def state_at(self, k: int) -> tuple:
        """The state of every recurrent layer after step k of the last window (carried into the next one), as one
        flat tuple of arrays (so a checkpoint stores it as it stores a `SequenceModel`'s)."""
        parts = []
        for r in self.recurrent:
            s = r.state_at(k)
            parts += list(s) if isinstance(s, tuple) else [s]
        return tuple(parts)

    def carry_layout(self) -> list[tuple[int, int]]:
        """(rows, size) of each component of the flat state `state_at` returns: its recurrent layers', in order."""
        return layers_carry_layout(self.recurrent)

    def _per_layer(self, state) -> list:
        """The flat state of `state_at` (or one array, as a checkpoint restores a single part) → one per layer."""
        parts = list(state) if isinstance(state, (tuple, list)) else [state]
        per_layer = []
        for r in self.recurrent:
            n = len(r.state_sizes)
            chunk, parts = parts[:n], parts[n:]
            per_layer.append(chunk[0] if n == 1 else tuple(chunk))
        return per_layer

    def evaluate(self, task) -> dict:
        """``val_loss`` (mean per counted target) and, for cross-entropy, ``accuracy`` over ``task.val``."""
        return {f"val_{k}" if k == "loss" else k: v for k, v in self._score(task.val).items()}

    def _score(self, batches) -> dict:
        summed = copy.copy(self.objective)
        summed.reduction = "sum"
        total = count = correct = 0.0
        with inference(self.module):
            for batch in batches:
                out = _forward(self.module, batch.x, batch.lengths)
                total += summed.forward(out, batch.target, mask=batch.mask)
                count += summed.count(batch.target, batch.mask)
                if isinstance(summed, CrossEntropyLoss):
                    hit = (out.argmax(axis=-1) == batch.target) & batch.mask.astype(bool)
                    correct += float((hit & (batch.target != summed.ignore_index)).sum())
        if not count:
            return {}
        scores = {"loss": total / count}
        if isinstance(summed, CrossEntropyLoss):
            scores["accuracy"] = correct / count
        return scores

    # -- the Module calls the trainer uses --------------------------------------------------------------
    def zero_grad(self) -> None:
        self.module.zero_grad()

    def named_parameters(self, prefix: str = ""):
        return self.module.named_parameters(prefix)

    def parameters(self):
        return self.module.parameters()

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        self.module.load_state_dict(state, strict)

    def generators(self) -> list:
        return self.module.generators()

    def discard_saved(self) -> None:
        self.module.discard_saved()

    def modules(self):
        return self.module.modules()

    def num_parameters(self) -> int:
        return self.module.num_parameters()


def fit(model, inputs, targets=None, *, lengths=None, mask=None, val=None, epochs: int = 10, batch_size: int = 32,
        loss=None, optimizer: str = "adam", lr: float = 2e-3, grad_clip: float = 5.0, k1: int = 0, k2: int = 0,
        seed: int = 0, shuffle: bool = True, progress: bool = True, run_dir=None, **train_options) -> list[dict]:
    """Train ``model`` on arrays (``inputs``, ``targets``[, ``lengths``, ``mask``]) or on a Task (``inputs``);
    return the history (dicts with ``step``, ``epoch``, ``train_loss`` and, with ``val``, ``val_loss``).

    ``model``: any `Module` (see `ModuleModel`) or a `TrainableModel` (`SequenceModel`, ...). ``loss``: ``"ce"``
    (default for arrays), ``"mse"``, ``"bce"`` or a loss object. One validation per epoch; ``k1``/``k2``: truncated
    BPTT; ``train_options``: more `TrainConfig` fields (``weight_decay``, ``max_steps``, ``time_limit``...);
    ``reset_state='never'`` trains arrays continuously (deck 002): each row is a stream whose state is carried
    (detached) from batch to batch and epoch to epoch (needs ``shuffle=False``; see `ArrayTask`).
    ``progress``: a bar on a terminal and a line per validation, both on standard error (`rnnkit.training.progress`;
    standard output stays the caller's). ``run_dir``: where metrics.jsonl, loss.png and the checkpoint go (None:
    nothing is written)."""
    seed = validate.seed(seed)
    check_bool("shuffle", shuffle)
    check_bool("progress", progress)
    k1, k2 = check_int("k1", k1, 0), check_int("k2", k2, 0)  # used below, before TrainConfig checks them
    epochs = check_positive_int("epochs", epochs)  # TrainConfig checks its range, not that it is an integer
    if hasattr(inputs, "batches"):
        task = inputs
        loss = loss or task.loss or "ce"
    else:
        if targets is None:
            raise ConfigError("fit needs targets for the inputs (or a Task as its second argument)")
        loss = loss or "ce"
        continuous = train_options.get("reset_state") == "never"
        task = ArrayTask(inputs, targets, lengths, mask, val, batch_size, loss, seed, shuffle, continuous)
    trainable = model if hasattr(model, "train_batch") else ModuleModel(model, loss)
    if run_dir is not None and checkpoint_exists(run_dir):
        raise ConfigError(f"run_dir {str(run_dir)!r} already holds a checkpoint; choose another (nothing is "
                          "overwritten)")
    first = next(iter(task.batches(0)))
    per_epoch = task.num_batches() * max(1, math.ceil(first.x.shape[1] / k1) if k1 else 1)
    config = TrainConfig(optimizer=optimizer, lr=lr, grad_clip=grad_clip, epochs=epochs, k1=k1, k2=k2, seed=seed,
                         progress=progress, **{"eval_every": per_epoch, "log_every": per_epoch, **train_options})
    return Trainer(trainable, task, config, run_dir).fit()


def predict(model, inputs, lengths=None, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs for ``inputs`` in evaluation mode, saving nothing (``rnnkit.no_grad``); in chunks of
    ``batch_size`` rows when given (None: one forward). An unbatched sequence gives its unbatched outputs."""
    module = model.module if isinstance(model, ModuleModel) else model
    batch_size = None if batch_size is None else check_positive_int("batch_size", batch_size)
    with inference(module):
        if batch_size is None:
            return _forward(module, inputs, lengths)
        parts = []
        for s in range(0, len(inputs), batch_size):
            rows = slice(s, s + batch_size)
            parts.append(_forward(module, inputs[rows], None if lengths is None else np.asarray(lengths)[rows]))
        return np.concatenate(parts)


def evaluate(model, inputs, targets, lengths=None, mask=None, loss="ce", batch_size: int = 256) -> dict:
    """``loss`` (mean per counted target) and, for cross-entropy, ``accuracy`` of ``model`` on the arrays."""
    module = model.module if isinstance(model, ModuleModel) else model
    batch_size = check_positive_int("batch_size", batch_size)
    return ModuleModel(module, loss)._score(_split(_as_batch(inputs, targets, lengths, mask, ""), batch_size))
