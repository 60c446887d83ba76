"""A training run's directory: what `rnnkit.training.Trainer` writes there, and how a run continues from it.

* ``metrics.jsonl`` — one JSON record a line (``step``, ``epoch``, ``time`` and the training or validation
  values), appended as the trainer logs them; when a run starts or resumes, the records written after its
  checkpoint (all of them before a first one) and a line cut short by a kill are dropped (`truncate_metrics`);
* ``loss.png`` — the loss curves of ``metrics.jsonl``, redrawn after a validation unless drawing it would take more
  than a twentieth of the time (`RunDirectory.plot_losses`), and always when training ends, or stops on a signal
  or an error;
* the checkpoint (`rnnkit.training.checkpoint`): weights, optimizer state, the carried recurrent state
  (``state0``, ``state1``, ... in carry.safetensors) and the meta of `checkpoint_meta` — written by
  `RunDirectory.save`; `restore` checks one (`rnnkit.training.resume_checks`) and puts a trainer back where it
  stopped.

A trainer made with ``run_dir=None`` has no `RunDirectory`: nothing is written.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ..models.registry import check_state
from . import checkpoint
from .files import append_line, atomic_write, hold_run_directory, make_directory, refuse_link
from .resume_checks import check_carry, check_optimizer_state, check_progress

__all__ = ["RunDirectory", "checkpoint_meta", "restore"]

METRICS, PLOT = "metrics.jsonl", "loss.png"
#: loss.png is redrawn once the time since its last drawing is this many times that drawing's own time, so drawing
#: takes at most 1 / (1 + PLOT_SPACING) of a run (5%). A drawing takes 0.3 – 0.4 s (matplotlib's layout, text and
#: PNG encoding); the 1997 Reber experiment validates every 160 updates of about 2 ms, and redrawing at each of them
#: took 41% of its run (10.8 of 26.3 s) and of its time budget.
PLOT_SPACING = 19


class RunDirectory:
    """The files of the run directory ``path``: the metrics records, the loss plot and the checkpoint."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.metrics = self.path / METRICS
        self._next_plot = -float("inf")  # the `time.monotonic` from which loss.png may be redrawn
        self._plot_behind = False  # metrics logged since loss.png was last drawn

    @contextmanager
    def held(self):
        """Create the directory, refuse a link in place of metrics.jsonl or loss.png (before training, not at the
        first write) and hold the directory's lock (`rnnkit.training.files.hold_run_directory`) while inside."""
        make_directory(self.path)
        for name in (METRICS, PLOT):
            refuse_link(self.path / name)
        with hold_run_directory(self.path):
            yield

    def append_metrics(self, record: dict) -> None:
        """Append ``record`` to metrics.jsonl as one JSON line."""
        append_line(self.metrics, json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> list[dict]:
        """The records of metrics.jsonl up to ``step`` (the checkpoint's), after dropping from the file those
        written after it and a line cut short by a kill; a file that keeps all its lines is left untouched."""
        if not self.metrics.exists():
            return []
        kept, text = [], self.metrics.read_text(encoding="utf-8")
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["step"] <= step:
                kept.append(line)
        if text != "".join(line + "\n" for line in kept):  # unchanged (a finished run resumed): left untouched
            atomic_write(self.metrics, "".join(line + "\n" for line in kept))
        return [json.loads(line) for line in kept]

    def plot_losses(self, task, now: bool = True) -> None:
        """Redraw loss.png from metrics.jsonl, with ``task``'s baseline and loss unit (no file yet: no plot). With
        ``now`` false, only once `PLOT_SPACING` times the last drawing's time has passed since it ended; otherwise
        the drawing is left for a later call (`catch_up_plot`)."""
        from .plotting import plot_losses

        if not now and time.monotonic() < self._next_plot:
            self._plot_behind = True
            return
        if self.metrics.exists():  # nothing logged yet (no validation data, first steps): no plot
            started = time.monotonic()
            plot_losses(self.metrics, self.path / PLOT, baseline=task.baseline, unit=getattr(task, "loss_unit", None))
            ended = time.monotonic()
            self._next_plot = ended + PLOT_SPACING * (ended - started)
        self._plot_behind = False

    def catch_up_plot(self, task) -> None:
        """Redraw loss.png if a call of `plot_losses` left it behind metrics.jsonl."""
        if self._plot_behind:
            self.plot_losses(task)

    def save(self, trainer) -> Path:
        """Write ``trainer``'s checkpoint here: weights, optimizer state, `checkpoint_meta` and the carried state."""
        carry = None
        if trainer.carry is not None:
            parts = trainer.carry if isinstance(trainer.carry, tuple) else (trainer.carry,)
            carry = {f"state{i}": p for i, p in enumerate(parts)}
        return checkpoint.save(self.path, trainer.model.state_dict(), trainer.optimizer.state_dict(),
                               checkpoint_meta(trainer), carry)


def checkpoint_meta(trainer) -> dict:
    """The checkpoint's description of ``trainer``'s run: model kind and config, task (with the data files'
    identity), training settings, vocabularies, progress, random generators' states and ``meta_extra``."""
    model, task = trainer.model, trainer.task
    vocabularies = task.vocabularies()
    return {
        "kind": model.config.kind,
        "model": model.config.to_dict(),
        "task": {**task.config(), **trainer.data_identity},
        "train": asdict(trainer.config),
        **vocabularies,
        "vocab": vocabularies.get("vocab"),
        "progress": {"step": trainer.updates, "epoch": trainer.epoch, "batch": trainer.batch_index,
                     "window": trainer.window_index, "elapsed": trainer.elapsed, "running": list(trainer.running)},
        "rng": checkpoint.rng_state(model.generators()),
        **trainer.meta_extra,
    }


def restore(trainer, meta: dict, model_state: dict, optimizer_state: dict | None, carry: dict | None,
            reset_optimizer: bool = False) -> None:
    """Put ``trainer`` where a checkpoint of its run stopped: weights, optimizer state (unless
    ``reset_optimizer``: started afresh, deliberately), progress, random generators and carried state.
    `CheckpointError`, before anything changes, for a checkpoint that cannot be continued exactly (see
    `rnnkit.training.resume_checks`)."""
    model, config, progress = trainer.model, trainer.config, meta.get("progress")
    check_progress(progress, config.epochs, trainer.task.num_batches(), trainer.windows_per_batch())
    check_optimizer_state(optimizer_state, trainer.optimizer, reset_optimizer)
    check_carry(carry, model.carry_layout(), model.dtype,
                needed=progress["window"] > 0 or (config.reset_state == "never" and progress["step"] > 0))
    check_state(model, model_state)
    model.load_state_dict(model_state)
    if not reset_optimizer:
        trainer.optimizer.load_state_dict(optimizer_state)
    trainer.updates, trainer.epoch = progress["step"], progress["epoch"]
    trainer.batch_index, trainer.window_index = progress["batch"], progress["window"]
    trainer.elapsed, trainer.running = progress["elapsed"], tuple(progress.get("running", (0.0, 0)))
    checkpoint.set_rng_state(model.generators(), meta["rng"])
    if carry:
        parts = tuple(carry[f"state{i}"] for i in range(len(carry)))
        trainer.carry = parts[0] if len(parts) == 1 else parts
