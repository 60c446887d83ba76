"""What a training task is: `Batch`, the `Task` protocol, and `GeneratedTask` for data drawn from a seeded generator.

A task yields `Batch`es laid out batch-first: ``x`` (B, T[, I]), ``target`` (B, T[, O]) — or (B,) for one label per
sequence — and ``mask`` (B, T) saying which positions carry a loss. ``stream`` tasks (language modelling) give one
long batch per epoch whose rows are contiguous slices of a corpus; the trainer cuts it into truncated-BPTT windows
and carries the state across them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass
class Batch:
    """One batch: ``x`` (B, T[, I]) inputs (token ids or reals), ``target`` (B, T[, O]) or (B,), ``mask`` (B, T) of
    the positions that carry a loss, ``lengths`` (B,) valid steps per row of a ragged batch (None: all T)."""

    x: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray | None = None


@runtime_checkable
class Task(Protocol):
    """A training task: the data, how it is batched, how it is scored, and what a checkpoint must remember of it.

    Class attributes:

    * ``name`` — the task's name on the command line (``rnnkit train NAME``);
    * ``model_kind`` — the kind of model that learns it: ``"sequence"`` (`SequenceModel`), ``"classifier"``,
      ``"tagger"`` or ``"seq2seq"``;
    * ``loss`` — for a `SequenceModel`: ``"ce"`` (cross-entropy over token targets), ``"mse"`` or ``"bce"``
      (multi-hot targets); None when the model owns its objective;
    * ``tokens`` — whether ``x`` holds integer token ids (B, T) rather than real features (B, T, I);
    * ``stream`` — one long batch per epoch, trained in truncated-BPTT windows of ``seq_length`` steps;
    * ``cli_defaults`` — the command-line defaults this task wants (``{"cell": "lstm", "hidden_size": 64, ...}``).

    Attributes: ``seq_length`` (T for generated and stream data, 0 when each batch has its own length),
    ``input_size`` (features I, or vocabulary size V for tokens), ``output_size`` (outputs O, classes or tags),
    ``baseline`` (the validation loss of a trivial predictor, or None), ``val`` (the validation batches),
    ``loss_unit`` (what the loss measures, e.g. ``"nats/char"``, shown on the loss plot's axis; None: unnamed).
    """

    name: ClassVar[str]
    model_kind: ClassVar[str]
    loss: ClassVar[str | None]
    tokens: ClassVar[bool]
    stream: ClassVar[bool]
    cli_defaults: ClassVar[dict[str, Any]]
    seq_length: int
    input_size: int
    output_size: int
    baseline: float | None
    val: list[Batch]

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The training batches of ``epoch``; the same for the same seed and epoch (so a resumed run sees them)."""

    def num_batches(self) -> int:
        """How many batches `batches` yields per epoch."""

    def metrics(self, model) -> dict[str, float]:
        """Task-specific validation scores of ``model`` (e.g. ``success``, ``recall_accuracy``); {} if none."""

    def config(self) -> dict:
        """The task's settings as JSON (stored as ``meta["task"]``; ``config()["task"]`` is ``name``)."""

    def vocabularies(self) -> dict[str, list[str]]:
        """The vocabularies a checkpoint must keep to apply the model to new text (stored in ``meta``)."""


class TaskBase:
    """Defaults shared by the tasks: no baseline, no extra metrics, no vocabularies, an untrained sequence model."""

    model_kind: ClassVar[str] = "sequence"
    loss: ClassVar[str | None] = None
    tokens: ClassVar[bool] = False
    stream: ClassVar[bool] = False
    cli_defaults: ClassVar[dict[str, Any]] = {}
    #: the data flags (fields of `rnnkit.training.data.DataConfig`) this task reads; others are refused
    data_options: ClassVar[tuple[str, ...]] = ("batch_size",)
    seq_length = 0
    baseline: float | None = None
    loss_unit: ClassVar[str | None] = None
    #: the key of `metrics` that is 1.0 once the task is solved (training stops there, unless --no-early-stop)
    success_metric: ClassVar[str | None] = None

    def metrics(self, model) -> dict[str, float]:
        return {}

    def vocabularies(self) -> dict[str, list[str]]:
        return {}


class GeneratedTask(TaskBase):
    """Base of tasks whose data a seeded generator makes: each epoch is ``batches_per_epoch`` fresh batches of
    ``_make(rng, batch_size)``, the same for the same seed and epoch (so a resumed run sees the same data)."""

    seed = 0
    batch_size = 32
    batches_per_epoch = 100

    def _make(self, rng: np.random.Generator, n: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_fits(self, rows: int) -> None:
        """A one-line `DataError` naming the sizes and the machine's memory unless ``rows`` sequences of this task
        (inputs, targets and mask of up to T + T/10 + 20 steps, in float64 at most) fit in memory — checked before
        the validation set is drawn."""
        from ..errors import DataError
        from ..validate import fits_in_memory

        steps = self.seq_length + self.seq_length // 10 + 20
        width = getattr(self, "input_size", 1) + getattr(self, "output_size", 1) + 1
        itemsize = np.dtype(getattr(self, "dtype", np.float64)).itemsize
        fits_in_memory(rows * steps * width, itemsize, f"the {self.name} task's data ({rows:,} sequences of "
                       f"{self.seq_length:,} steps)", error=DataError)

    def batches(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.batches_per_epoch):
            yield self._make(rng, self.batch_size)

    def num_batches(self) -> int:
        return self.batches_per_epoch
