"""`TrainableModel`: what the trainer needs of a model — one protocol for every model kind.

`SequenceModel`, `SequenceClassifier`, `Tagger` and `Seq2Seq` all implement it, so `rnnkit.training.Trainer` has
one path: bind the model to the task once, then per update ``zero_grad`` → `train_batch` → (clip, step), and per
validation `evaluate` plus the task's own ``metrics``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .. import validate
from ..module import Parameter, inference  # noqa: F401 - inference: re-exported, its callers import it here


@runtime_checkable
class TrainableModel(Protocol):
    """A model the trainer can fit.

    * ``config`` — its `JSONConfig` dataclass (stored as ``meta["model"]``); its class attribute ``kind`` names
      the model class for `rnnkit.models.registry.model_from_meta` and is stored once, as ``meta["kind"]``;
    * ``bind_task(task)`` — take from the task what the objective needs (a `SequenceModel`: the loss and the
      evaluation window of a stream) and refuse a task it cannot learn; called once before training;
    * ``train_batch(batch, window=None, state=None) -> float`` — forward and backward over one batch, adding
      (``+=``) parameter gradients; returns the loss. ``window`` = (start, end, loss_start) of truncated BPTT over
      the batch's T steps and ``state`` the state carried into it (only a `SequenceModel` on a stream task gets
      them; the others train on whole sequences). A non-finite loss is returned without a backward, and the
      trainer then calls ``discard_saved()``;
    * ``state_at(k)`` — the state after step k of the last window, carried (detached) into the next one;
    * ``carry_layout() -> [(rows, size), ...]`` — (rows, size) of each component of the state a stream model
      carries between windows (what ``state_at`` returns, one (rows, batch, size) array each); [] for models that
      carry none. The trainer checks a resumed checkpoint's carried state against it;
    * ``evaluate(task) -> dict`` — validation metrics on ``task.val`` with ``val_loss`` first (the mean loss per
      counted position, or per sequence for a CRF), computed in eval mode inside ``rnnkit.no_grad()``;
    * the `Module` calls the trainer uses: ``zero_grad``, ``named_parameters``, ``parameters``, ``state_dict``,
      ``load_state_dict``, ``generators``, ``discard_saved``, ``num_parameters``.
    """

    config: Any

    def bind_task(self, task) -> None: ...

    def train_batch(self, batch, window: tuple[int, int, int] | None = None, state=None) -> float: ...

    def state_at(self, k: int): ...

    def carry_layout(self) -> list[tuple[int, int]]: ...

    def evaluate(self, task) -> dict[str, Any]: ...

    def zero_grad(self) -> None: ...

    def named_parameters(self, prefix: str = ""): ...

    def parameters(self) -> list[Parameter]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict, strict: bool = True) -> None: ...

    def generators(self) -> list: ...

    def discard_saved(self) -> None: ...

    def num_parameters(self) -> int: ...


class WholeSequenceModel:
    """The protocol's calls shared by models that train on whole sequences (classifier, tagger, seq2seq)."""

    def bind_task(self, task) -> None:
        """Refuse a task made for another kind of model."""
        from ..errors import ConfigError

        if task.model_kind != self.config.kind:
            raise ConfigError(f"a {self.config.kind} model cannot learn task {task.name!r} (it needs a "
                              f"{task.model_kind} model)")

    def state_at(self, k: int):
        from ..errors import UsageError

        raise UsageError(f"a {self.config.kind} model trains on whole sequences; it carries no state between windows")

    def carry_layout(self) -> list[tuple[int, int]]:
        """[]: a model trained on whole sequences carries no state between windows."""
        return []

    @staticmethod
    def check_whole(batch, window) -> None:
        """`ConfigError` unless ``window`` covers the whole batch (truncated BPTT is for stream tasks)."""
        from ..errors import ConfigError

        if window is not None and tuple(window) != (0, batch.x.shape[1], 0):
            raise ConfigError("truncated BPTT (--k1, --k2) applies to stream tasks (text); this model trains on "
                              "whole sequences")


def layers_carry_layout(layers) -> list[tuple[int, int]]:
    """(rows, size) of each state component that the recurrent ``layers`` carry, layer after layer: one
    (D·L rows, size) entry per size in a layer's ``state_sizes`` (the arrays its ``state_at`` returns)."""
    return [(layer.num_directions * layer.num_layers, size) for layer in layers for size in layer.state_sizes]


def batched(ids, lengths, vocab_size: int, what: str = "ids", lengths_name: str = "lengths"):
    """(ids (B, T), lengths (B,), unbatched), checked at the model's entry point so that an error names the model's
    own arguments (``what``, ``lengths_name``; see `rnnkit.validate.token_ids`): one unbatched sequence (T,) gets a
    batch axis of one; missing lengths are the whole time axis."""
    ids = validate.token_ids(ids, what, vocab_size)
    unbatched = ids.ndim == 1
    if unbatched:
        ids = ids[None]
        lengths = None if lengths is None else np.atleast_1d(lengths)
    lengths = np.full(len(ids), ids.shape[1]) if lengths is None else lengths
    return ids, validate.sequence_lengths(lengths, *ids.shape, name=lengths_name), unbatched


