"""`Trainer`: the training loop — truncated BPTT windowing, clipping, validation, logging, stopping.

It has one path for every model: each update is ``model.train_batch(batch, window, carried state)`` (the
`rnnkit.models.TrainableModel` protocol), then clipping and the optimizer step; each validation is
``model.evaluate(task)`` plus ``task.metrics(model)``, inside `rnnkit.no_grad()`.

Truncated BPTT(k1, k2) (Williams & Peng 1990; Sutskever 2013): every k1 time steps, one update whose gradient
flows back k2 ≥ k1 steps. Over a batch of T steps the windows end at e = k1, 2k1, ... (the last at T); window
[s, e) starts at s = max(0, e − k2) from the carried (detached) state, its loss covers [e − k1, e) (the steps
new to it), and the state carried into the next window is the state at that window's start, read from inside
this one (`state_at`). With k1 = k2 = k this is char-rnn's scheme (chunks of k, state carried forward). Without
k1 the whole sequence is one window: full BPTT.

A stream (the text task) is trained epochwise by default: each epoch starts from a zero state. With
``reset_state="never"`` it is trained continuously: the state at the end of an epoch is carried (detached) into the
next, as if the corpus were one endless loop.

What the trainer writes into its run directory (metrics.jsonl, loss.png, the checkpoint and its meta) and how it
continues from a checkpoint are in `rnnkit.training.run_directory`; the trainer knows its model only through the
`TrainableModel` protocol (the carried state's layout is ``model.carry_layout()``).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, TrainingError, TrainingInterrupted
from ..models.configs import check_option_ranges, option
from ..models.protocol import TrainableModel, WholeSequenceModel
from ..module import no_grad
from ..optim import OPTIMIZERS, clip_grad_norm, grad_norm
from ..validate import MAX_SEED, positive_real
from . import checkpoint
from .data import data_identity
from .progress import note, progress
from .run_directory import RunDirectory, restore

__all__ = ["TrainConfig", "Trainer", "TrainingError", "tbptt_windows"]

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # stop with a checkpoint; exit status 128 + the signal's number


@dataclass
class TrainConfig:
    """How to train (stored as ``meta["train"]``); each `option` field is a flag of ``rnnkit train``."""

    optimizer: str = option("adam", "Optimizer.", choices=tuple(OPTIMIZERS))
    lr: float = option(2e-3, "Learning rate.", flags=("--learning-rate",), low=0, low_open=True)
    weight_decay: float = option(0.0, "Weight decay (L2, as torch.optim).", low=0)
    momentum: float = option(0.0, "Momentum (sgd, rmsprop).", low=0, high=1)
    grad_clip: float = option(5.0, "Clip the global gradient norm (0: off).", low=0)
    epochs: int = option(10, "Passes over the data (memory tasks: epochs of 100 batches).", flags=("--max-epochs",),
                         low=1)
    max_steps: int = option(0, "Stop after this many updates (0: no limit).", low=0)
    time_limit: float = option(0.0, "Stop (with a checkpoint) after this many seconds of training; with --resume, this "
                               "many more seconds (0: none).", low=0)
    k1: int = option(0, "Truncated BPTT: steps between updates (0: text → --seq-length, others → full BPTT).", low=0)
    k2: int = option(0, "Truncated BPTT: steps backpropagated (>= k1; 0: = k1).", low=0)
    reset_state: str = option("epoch", "text: start each epoch from a zero state ('epoch': epochwise training) or "
                              "'never' (continuous training: the state carried on across epochs).",
                              choices=("epoch", "never"))
    eval_every: int = option(100, "Validate and checkpoint every N updates.", flags=("--eval-val-every",), low=1)
    log_every: int = 10
    seed: int = option(0, "Seed of the initial weights, the data order and dropout.", low=0, high=MAX_SEED)
    progress: bool = option(True, "Show a progress bar.", negative="--no-progress", resume=False)
    early_stop: bool = option(True, "Stop once the task's success criterion holds on validation (memory tasks: "
                              "success 1.0).", negative="--no-early-stop")
    skip_nonfinite: bool = option(False, "Skip an update whose loss or gradient is NaN/Inf instead of stopping.")
    lr_decay: float = option(1.0, "Multiply the learning rate by this every epoch (char-rnn) ...",
                             flags=("--learning-rate-decay",), low=0, high=1, low_open=True)
    lr_decay_after: int = option(10, "... starting at this epoch.", flags=("--learning-rate-decay-after",), low=0)
    threads: int | None = option(None, "Threads for NumPy's BLAS during training (default: all cores).", low=1,
                                 resume=False)

    def __post_init__(self):
        self.lr = positive_real(self.lr, "learning rate lr")  # a NumPy number too; nan, inf, 0 and bools refused
        check_option_ranges(self)
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.k2 and not self.k1:
            raise ConfigError("k2 needs k1 (the number of steps between updates)")
        if self.k2 and self.k2 < self.k1:
            raise ConfigError(f"k2 (steps backpropagated) must be >= k1 (steps between updates), got k1={self.k1}, "
                              f"k2={self.k2}")


def tbptt_windows(steps: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """The (start, end, loss_start) windows of truncated BPTT(k1, k2) over ``steps`` time steps.

    Each window adds the next k1 steps (fewer at the end), puts the loss on them, and backpropagates through
    them and the k2 − k1 steps before them.
    """
    k1 = k1 or steps
    overlap = max(k2, k1) - k1
    windows, done = [], 0
    while done < steps:
        end = min(done + k1, steps)
        windows.append((max(0, done - overlap), end, done))
        done = end
    return windows


def constrained_modules(model) -> list:
    """The sub-modules of ``model`` that bound their own parameters — those with a ``constrain()`` method, such as
    an `rnnkit.IndRNN` with ``recurrent_max`` — which the trainer calls after every optimizer step."""
    modules = model.modules() if hasattr(model, "modules") else ()
    return [m for m in modules if callable(getattr(m, "constrain", None))]


def blas_threads(threads: int | None):
    """A context that limits NumPy's BLAS to ``threads`` threads (None: no limit, all cores)."""
    if not threads:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


class Trainer:
    """Train ``model`` (any `TrainableModel`) on ``task``; writes metrics.jsonl, loss.png and checkpoints into
    ``run_dir`` through ``directory``, a `RunDirectory` (with ``run_dir=None`` it is None and nothing is written:
    the history is only returned). The config is read, never changed: derived settings (the effective ``k1``) are
    attributes. ``updates`` counts the optimizer updates made so far (a checkpoint's and a metrics record's
    ``step``)."""

    def __init__(self, model: TrainableModel, task, config: TrainConfig, run_dir: str | Path | None,
                 meta_extra=None):
        self.model, self.task, self.config = model, task, config
        self.directory = None if run_dir is None else RunDirectory(run_dir)
        model.bind_task(task)
        opt_kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
        if config.optimizer in ("sgd", "rmsprop"):
            opt_kwargs["momentum"] = config.momentum
        self.optimizer = OPTIMIZERS[config.optimizer](model.named_parameters(), **opt_kwargs)
        # a stream is trained in windows of seq_length steps unless k1 says otherwise
        self.k1 = config.k1 or (task.seq_length if task.stream else 0)
        self.k2 = config.k2
        if (config.k1 or config.k2) and isinstance(model, WholeSequenceModel):
            raise ConfigError(f"--k1/--k2 (truncated BPTT) apply to stream tasks (text); task {task.name!r} trains "
                              f"a {model.config.kind} model on whole sequences, got k1={config.k1}, k2={config.k2}")
        if config.reset_state == "never" and not task.stream:
            raise ConfigError("--reset-state never applies to stream tasks (text): the other tasks' sequences are "
                              "independent")
        self.meta_extra = meta_extra or {}
        self.data_identity = data_identity(task.config())  # the data files' absolute paths and SHA-256
        self.updates, self.epoch, self.batch_index, self.window_index = 0, 0, 0, 0
        self.carry = None
        self.elapsed = 0.0
        self.deadline = math.inf  # the value of `elapsed` at which time_limit stops this call of `fit`
        self._start_updates, self._planned = 0, 0  # for the progress bar: where this call started, updates planned
        self.running = (0.0, 0)  # training-loss sum and count since the last log line (checkpointed)
        self.history: list[dict] = []
        self._saved_updates = -1
        self.last_eval: dict = {}
        self.stop_when = None  # optional predicate on the validation metrics: stop early once it holds
        self.stop_signal = None  # the signal that asked training to stop (see `_stop_on_signals`)
        self.constrained = constrained_modules(model)

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train until the epochs, ``max_steps``, ``time_limit`` or ``stop_when`` end it; return the history."""
        directory = self.directory
        with directory.held() if directory is not None else nullcontext(), blas_threads(self.config.threads):
            if directory is not None:  # a new run drops what a run killed before its first checkpoint logged
                self.history = directory.truncate_metrics(self.updates)
            with self._stop_on_signals():
                try:
                    if not self.finished():  # a finished run, resumed, is left as it is
                        self._loop()
                    self._stop_if_signalled()
                finally:  # ended, stopped by a signal or by an error: loss.png shows every validation logged
                    if directory is not None:
                        directory.catch_up_plot(self.task)
        return self.history

    def _loop(self) -> None:
        """Train the epochs from where the run stands (a resumed one mid-epoch), under the progress bar; validate
        and checkpoint the last update if that is not done yet."""
        cfg, task = self.config, self.task
        started = time.perf_counter() - self.elapsed
        self.deadline = self.elapsed + cfg.time_limit if cfg.time_limit else math.inf  # resumed: this many more s
        self._start_updates = self.updates
        total = cfg.epochs * task.num_batches() * self.windows_per_batch()
        self._planned = min(total, cfg.max_steps) if cfg.max_steps else total
        bar = self._progress_bar()
        try:
            for epoch in range(self.epoch, cfg.epochs):
                self.optimizer.lr = self.learning_rate(epoch)
                if self._epoch(epoch, started, bar):
                    break
                self.epoch, self.batch_index, self.window_index = epoch + 1, 0, 0
            if self._saved_updates != self.updates:
                self._validate_and_save()
        finally:
            bar.close()

    def _epoch(self, epoch: int, started: float, bar) -> bool:
        """Train one epoch (from where a resumed run stopped); True when training must stop."""
        for b, batch in enumerate(self.task.batches(epoch)):
            if (epoch, b) < (self.epoch, self.batch_index):
                continue  # resumed: this batch is done
            windows = tbptt_windows(batch.x.shape[1], self.k1, self.k2)
            for w, window in enumerate(windows):
                if (epoch, b, w) < (self.epoch, self.batch_index, self.window_index):
                    continue
                loss, norm = self.train_window(batch, *window)
                self._advance(epoch, b, w, windows, window[0])
                if not math.isfinite(loss):
                    self.model.discard_saved()  # a skipped update leaves its forward unused
                self.elapsed = time.perf_counter() - started
                self._tick(bar)
                self._record(loss, norm, bar)
                self._stop_if_signalled()
                if self._should_stop():
                    return True
        return False

    def _advance(self, epoch: int, b: int, w: int, windows: list, start: int) -> None:
        """Count the update; carry the state at the next window's start (detached), or start afresh."""
        self.updates += 1
        if w + 1 < len(windows):
            self.carry = self.model.state_at(windows[w + 1][0] - start)
            self.epoch, self.batch_index, self.window_index = epoch, b, w + 1
        else:  # the end of a batch (of an epoch, for a stream): continuous training carries on from here
            continuous = self.config.reset_state == "never"
            self.carry = self.model.state_at(windows[w][1] - start) if continuous else None
            self.epoch, self.batch_index, self.window_index = epoch, b + 1, 0

    def _record(self, loss: float, norm: float, bar) -> None:
        if math.isfinite(loss):
            self.running = (self.running[0] + loss, self.running[1] + 1)
        if self.updates % self.config.log_every == 0 and self.running[1]:
            mean = self.running[0] / self.running[1]
            bar.set_postfix(loss=f"{mean:.4f}")
            self._log({"train_loss": mean, "grad_norm": norm, "lr": self.optimizer.lr})
            self.running = (0.0, 0)

    def _should_stop(self) -> bool:
        """Validate when due; True when the time or step budget is spent, the task succeeded (`succeeded`) or
        ``stop_when`` holds."""
        cfg = self.config
        out_of_time = self.elapsed >= self.deadline
        out_of_steps = bool(cfg.max_steps) and self.updates >= cfg.max_steps
        reached = False
        if self.updates % cfg.eval_every == 0 or out_of_time or out_of_steps:
            self._validate_and_save()
            stop_when = self.stop_when is not None and bool(self.stop_when(self.last_eval))
            reached = self.succeeded(self.last_eval) or stop_when
        return out_of_time or out_of_steps or reached

    # -- one update -----------------------------------------------------------------------------------
    def train_window(self, batch, start: int, end: int, loss_start: int) -> tuple[float, float]:
        """One update: forward/backward over x[:, start:end] from the carried state, loss on [loss_start, end),
        then clip and step. Returns (loss, gradient norm), or NaNs for a skipped non-finite update."""
        model = self.model
        model.zero_grad()
        loss = model.train_batch(batch, (start, end, loss_start), self.carry)
        problem, norm = None, float("nan")
        if not math.isfinite(loss):
            problem = f"non-finite loss ({loss})"
        else:
            norm = grad_norm(model.parameters())  # one pass; non-finite iff some gradient is
            if not math.isfinite(norm):
                bad = next(name for name, p in model.named_parameters() if not np.isfinite(p.grad).all())
                problem = f"non-finite gradient in {bad}"
        if problem is not None:
            return self._skip(problem)
        if self.config.grad_clip:
            clip_grad_norm(model.parameters(), self.config.grad_clip, total=norm)
        self.optimizer.step()
        for module in self.constrained:  # put bounded parameters back inside their bounds
            module.constrain()
        self._check_parameters()
        return loss, norm

    def _check_parameters(self) -> None:
        """Stop, naming the first parameter, when the update just made a parameter NaN or Inf (a finite gradient
        times a huge learning rate): the next forward would only see non-finite activations. An update already
        applied cannot be skipped, so this stops even with ``skip_nonfinite``."""
        bad = next((name for name, p in self.model.named_parameters() if not np.isfinite(p.data).all()), None)
        if bad is not None:
            self.model.discard_saved()
            raise TrainingError(f"non-finite parameter {bad} after the update at step {self.updates + 1} (learning "
                                f"rate {self.optimizer.lr:g}); stopping (the last checkpoint is kept)")

    def _skip(self, problem: str) -> tuple[float, float]:
        """Stop on a non-finite update, or (``skip_nonfinite``) drop its gradients and saved forwards."""
        if not self.config.skip_nonfinite:
            self.model.discard_saved()
            raise TrainingError(f"{problem} at step {self.updates + 1}; stopping (the last checkpoint is kept)")
        self.model.zero_grad()  # its saved forwards are discarded once the carried state is read (`_epoch`)
        self._log({"skipped_update": problem})
        if self.config.progress:
            note(f"step {self.updates + 1}: {problem}; update skipped")
        return float("nan"), float("nan")

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation metrics: the model's (``val_loss`` first) and the task's own, computed without saving."""
        with no_grad():
            metrics = self.model.evaluate(self.task)
            metrics.update(self.task.metrics(self.model))
        return metrics

    # -- stopping -------------------------------------------------------------------------------------
    def finished(self) -> bool:
        """Whether the epochs or ``max_steps`` are done, or the last validation logged met the task's success
        criterion (`succeeded`); a time limit is counted anew by each call of `fit`."""
        last = next((r for r in reversed(self.history) if "val_loss" in r), {})
        out_of_steps = bool(self.config.max_steps) and self.updates >= self.config.max_steps
        return self.epoch >= self.config.epochs or out_of_steps or self.succeeded(last)

    def succeeded(self, metrics: dict) -> bool:
        """Whether ``metrics`` meet the task's success criterion (its ``success_metric`` at 1.0) and early stopping
        is on."""
        key = getattr(self.task, "success_metric", None)
        return bool(self.config.early_stop and key and metrics.get(key) == 1.0)

    @contextmanager
    def _stop_on_signals(self):
        """While training into a run directory, SIGINT, SIGTERM and SIGHUP only set ``self.stop_signal``: the loop
        finishes the update, writes a checkpoint and raises `TrainingInterrupted` (`_stop_if_signalled`). A signal
        the process inherited as ignored (``nohup`` ignores SIGHUP) stays ignored."""
        self.stop_signal = None
        if self.directory is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            self.stop_signal = signum

        previous = {}
        for name in STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN:  # nohup's ignore is kept
                previous[number] = signal.signal(number, note)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop_if_signalled(self) -> None:
        if self.stop_signal is None:
            return
        if self._saved_updates != self.updates:
            self.save()
            self._saved_updates = self.updates
        name = signal.Signals(self.stop_signal).name
        written = self.directory.path / checkpoint.NAME
        raise TrainingInterrupted(f"stopped by {name} after step {self.updates}; checkpoint written to {written} "
                                  "(--resume continues it)", 128 + self.stop_signal)

    # -- schedule and progress ------------------------------------------------------------------------
    def learning_rate(self, epoch: int) -> float:
        """char-rnn's schedule: lr · decay^(epoch − decay_after + 1) from epoch ``decay_after`` on."""
        cfg = self.config
        return cfg.lr * cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after + 1)

    def windows_per_batch(self) -> int:
        """The truncated-BPTT windows (updates) of one batch."""
        first = next(iter(self.task.batches(0)))
        return len(tbptt_windows(first.x.shape[1], self.k1, self.k2))

    def _progress_bar(self):
        """Updates done out of those planned; with a time limit, the seconds spent out of the limit (a total that
        never changes; the step is in the bar's description)."""
        if math.isfinite(self.deadline):
            return progress(total=int(self.config.time_limit), unit="s", enabled=self.config.progress,
                            desc=f"step {self.updates}")
        return progress(total=self._planned, initial=self.updates, unit="step", enabled=self.config.progress)

    def _tick(self, bar) -> None:
        """Advance the bar by one update (or, with a time limit, to the whole seconds spent)."""
        if not math.isfinite(self.deadline):
            bar.update(1)
            return
        spent = int(min(self.elapsed, self.deadline) - (self.deadline - self.config.time_limit))
        bar.set_description(f"step {self.updates}", refresh=False)
        bar.update(max(0, spent - bar.n))

    # -- logging and the run directory ----------------------------------------------------------------
    def _log(self, record: dict) -> None:
        record = {"step": self.updates, "epoch": self.epoch, "time": round(self.elapsed, 3), **record}
        self.history.append(record)
        if self.directory is not None:
            self.directory.append_metrics(record)

    def _validate_and_save(self) -> None:
        """Validate, log the scalar metrics and, into a run directory, checkpoint and redraw the loss plot when due
        (`RunDirectory.plot_losses`)."""
        self.last_eval = self.evaluate()
        scalars = {k: float(v) for k, v in self.last_eval.items() if np.ndim(v) == 0}
        if scalars:
            self._log(scalars)
            if self.config.progress:
                note(f"step {self.updates}: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
        self._saved_updates = self.updates
        if self.directory is not None:
            self.save()
            self.directory.plot_losses(self.task, now=False)

    def save(self) -> Path:
        """Checkpoint the run into its run directory (`RunDirectory.save`)."""
        return self.directory.save(self)

    def restore(self, meta: dict, model_state: dict, optimizer_state: dict | None, carry: dict | None,
                reset_optimizer: bool = False) -> None:
        """Continue exactly where a checkpoint of this run stopped (`rnnkit.training.run_directory.restore`);
        ``reset_optimizer``: start the optimizer afresh, deliberately."""
        restore(self, meta, model_state, optimizer_state, carry, reset_optimizer)
        self._saved_updates = self.updates  # this step's checkpoint and validation are on disk already
