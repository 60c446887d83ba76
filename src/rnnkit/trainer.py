"""`Trainer`: the training loop — truncated BPTT windowing, clipping, validation, logging, checkpoints, resume.

Truncated BPTT(k1, k2) (Williams & Peng 1990; Sutskever 2013): every k1 time steps, one update whose gradient
flows back k2 ≥ k1 steps. Over a batch of T steps the windows end at e = k1, 2k1, ... (the last at T); window
[s, e) starts at s = max(0, e − k2) from the carried (detached) state, its loss covers [e − k1, e) (the steps
new to it), and the state carried into the next window is the state at that window's start, read from inside
this one (`state_at`). With
k1 = k2 = k this is char-rnn's scheme (chunks of k, state carried forward). Without k1 the whole sequence is one
window: full BPTT.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import checkpoint
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .models import SequenceModel
from .optim import OPTIMIZERS, clip_grad_norm, grad_norm

LOSSES = {"ce": CrossEntropyLoss, "mse": MSELoss, "bce": BCEWithLogitsLoss}


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the last good checkpoint is left intact."""


@dataclass
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm; 0 disables
    epochs: int = 10
    max_steps: int = 0  # 0: no limit beyond epochs
    time_limit: float = 0.0  # seconds of training; 0: none
    k1: int = 0  # steps between updates (0: the whole sequence, i.e. full BPTT)
    k2: int = 0  # steps backpropagated (0: = k1)
    eval_every: int = 100
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    skip_nonfinite: bool = False  # skip an update whose loss or gradient is NaN/Inf instead of stopping
    lr_decay: float = 1.0  # char-rnn's learning_rate_decay: multiply the rate by this every epoch ...
    lr_decay_after: int = 10  # ... from this epoch on (epochs counted from 0)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        checks = {"grad_clip": self.grad_clip >= 0, "epochs": self.epochs >= 1, "max_steps": self.max_steps >= 0,
                  "time_limit": self.time_limit >= 0, "k1": self.k1 >= 0, "k2": self.k2 >= 0,
                  "eval_every": self.eval_every >= 1, "log_every": self.log_every >= 1}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {'>= 1' if name in ('epochs', 'eval_every', 'log_every') else '>= 0'}"
                                 f", got {getattr(self, name)}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.k2 and not self.k1:
            raise ValueError("k2 needs k1 (the number of steps between updates)")
        if self.k2 and self.k2 < self.k1:
            raise ValueError(f"k2 (steps backpropagated) must be >= k1 (steps between updates), got k1={self.k1}, "
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


class Trainer:
    """Train ``model`` on ``task``; writes metrics.jsonl, loss.png and checkpoints into ``run_dir``."""

    def __init__(self, model: SequenceModel, task, config: TrainConfig, run_dir: str | Path, meta_extra=None):
        self.model, self.task, self.config = model, task, config
        self.run_dir = Path(run_dir)
        # Models that own their objective (classifier, tagger, seq2seq) provide train_batch() and evaluate().
        self.owns_objective = hasattr(model, "train_batch")
        self.loss = None if self.owns_objective else LOSSES[task.loss]()
        opt_kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
        if config.optimizer in ("sgd", "rmsprop"):
            opt_kwargs["momentum"] = config.momentum
        self.optimizer = OPTIMIZERS[config.optimizer](model.named_parameters(), **opt_kwargs)
        if task.stream and not config.k1:
            config.k1 = task.seq_length
        if task.stream and getattr(model.config, "bidirectional", False):
            raise ValueError("a bidirectional model cannot be trained on a stream with truncated BPTT; "
                             "use a unidirectional model for the text task")
        self.meta_extra = meta_extra or {}
        self.step, self.epoch, self.batch_index, self.window_index = 0, 0, 0, 0
        self.carry = None
        self.elapsed = 0.0
        self.running = (0.0, 0)  # training-loss sum and count since the last log line (checkpointed)
        self.history: list[dict] = []
        self._saved_step = -1
        self.last_eval: dict = {}
        self.stop_when = None  # optional predicate on the validation metrics: stop early once it holds

    # -- one update -----------------------------------------------------------------------------------
    def train_window(self, batch, start: int, end: int, loss_start: int) -> tuple[float, float]:
        """Forward/backward over x[:, start:end] from the carried state; loss on [loss_start, end)."""
        model = self.model
        model.train()
        model.zero_grad()
        if self.owns_objective:
            loss = model.train_batch(batch)
        else:
            lengths = None
            if batch.lengths is not None:
                if (start, end) != (0, batch.x.shape[1]):
                    raise ValueError("truncated BPTT (--k1) cannot be combined with a variable-length task")
                lengths = batch.lengths
            out, _ = model.forward(self._inputs(batch.x[:, start:end]), self.carry, lengths=lengths)
            mask = batch.mask[:, start:end].copy()
            mask[:, :loss_start - start] = False
            loss = self.loss.forward(out, batch.target[:, start:end], mask=mask)
        problem = None
        if not math.isfinite(loss):
            problem = f"non-finite loss ({loss})"
        else:
            if not self.owns_objective:
                model.backward(self.loss.backward())
            norm = grad_norm(model.parameters())  # one pass; non-finite iff some gradient is
            if not math.isfinite(norm):
                bad = next(name for name, p in model.named_parameters() if not np.isfinite(p.grad).all())
                problem = f"non-finite gradient in {bad}"
        if problem is not None:
            if not self.config.skip_nonfinite:
                raise TrainingError(f"{problem} at step {self.step + 1}; stopping (the last checkpoint is kept)")
            model.zero_grad()
            self._log({"skipped_update": problem})
            if self.config.progress:
                tqdm.write(f"step {self.step + 1}: {problem}; update skipped")
            return float("nan"), float("nan")
        if self.config.grad_clip:
            clip_grad_norm(model.parameters(), self.config.grad_clip, total=norm)
        self.optimizer.step()
        return loss, norm

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Real-valued inputs in the model's dtype (token ids unchanged)."""
        dtype = self.model.dtype
        return x.astype(dtype) if x.dtype.kind == "f" and x.dtype != dtype else x

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation metrics: ``val_loss`` (mean loss per counted position, eval mode) and any the model adds."""
        if self.owns_objective:
            return self.model.evaluate(self.task.val)
        model = self.model
        model.eval()
        total_loss = LOSSES[self.task.loss](reduction="sum")
        total, count = 0.0, 0.0
        for batch in self.task.val:
            steps = batch.x.shape[1]
            chunk = self.task.seq_length if self.task.stream else steps
            for rows in np.array_split(np.arange(batch.x.shape[0]), max(1, batch.x.shape[0] // 256)):
                state = None
                lengths = None if batch.lengths is None else batch.lengths[rows]
                for start in range(0, steps, chunk):
                    sl = slice(start, start + chunk)
                    out, state = model.forward(self._inputs(batch.x[rows, sl]), state, lengths=lengths)
                    mask = batch.mask[rows, sl]
                    total += total_loss.forward(out, batch.target[rows, sl], mask=mask)
                    count += mask.sum()
        model.train()
        metrics = {"val_loss": total / max(count, 1.0)}
        if hasattr(self.task, "metrics"):
            metrics.update(self.task.metrics(model))
        return metrics

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        cfg, task = self.config, self.task
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter() - self.elapsed
        total = cfg.epochs * task.num_batches() * self._windows_per_batch()
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        bar = tqdm(total=total, initial=self.step, disable=not cfg.progress, unit="step", dynamic_ncols=True)
        stop = False
        try:
            for epoch in range(self.epoch, cfg.epochs):
                self.optimizer.lr = self.learning_rate(epoch)
                for b, batch in enumerate(task.batches(epoch)):
                    if (epoch, b) < (self.epoch, self.batch_index):
                        continue  # resumed: this batch is done
                    windows = tbptt_windows(batch.x.shape[1], cfg.k1, cfg.k2)
                    for w, (start, end, loss_start) in enumerate(windows):
                        if (epoch, b, w) < (self.epoch, self.batch_index, self.window_index):
                            continue
                        loss, norm = self.train_window(batch, start, end, loss_start)
                        self.step += 1
                        if math.isfinite(loss):
                            self.running = (self.running[0] + loss, self.running[1] + 1)
                        # carry the state at the next window's start (detached), or start afresh
                        if w + 1 < len(windows):
                            self.carry = self.model.state_at(windows[w + 1][0] - start)
                            self.epoch, self.batch_index, self.window_index = epoch, b, w + 1
                        else:
                            self.carry = None
                            self.epoch, self.batch_index, self.window_index = epoch, b + 1, 0
                        self.elapsed = time.perf_counter() - started
                        bar.update(1)
                        if self.step % cfg.log_every == 0 and self.running[1]:
                            mean = self.running[0] / self.running[1]
                            bar.set_postfix(loss=f"{mean:.4f}")
                            self._log({"train_loss": mean, "grad_norm": norm, "lr": self.optimizer.lr})
                            self.running = (0.0, 0)
                        out_of_time = cfg.time_limit and self.elapsed >= cfg.time_limit
                        out_of_steps = cfg.max_steps and self.step >= cfg.max_steps
                        reached = False
                        if self.step % cfg.eval_every == 0 or out_of_time or out_of_steps:
                            self._validate_and_save()
                            reached = self.stop_when is not None and self.stop_when(self.last_eval)
                        if out_of_time or out_of_steps or reached:
                            stop = True
                            break
                    if stop:
                        break
                if stop:
                    break
                self.epoch, self.batch_index, self.window_index = epoch + 1, 0, 0
            if self._saved_step != self.step:
                self._validate_and_save()
        finally:
            bar.close()
        return self.history

    def learning_rate(self, epoch: int) -> float:
        """char-rnn's schedule: lr · decay^(epoch − decay_after + 1) from epoch ``decay_after`` on."""
        cfg = self.config
        return cfg.lr * cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after + 1)

    def _windows_per_batch(self) -> int:
        first = next(iter(self.task.batches(0)))
        return len(tbptt_windows(first.x.shape[1], self.config.k1, self.config.k2))

    # -- logging and checkpoints ----------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        record = {"step": self.step, "epoch": self.epoch, "time": round(self.elapsed, 3), **record}
        self.history.append(record)
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _validate_and_save(self) -> None:
        self.last_eval = self.evaluate()
        scalars = {k: float(v) for k, v in self.last_eval.items() if np.ndim(v) == 0}
        self._log(scalars)
        if self.config.progress:
            tqdm.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
        self.save()
        self._saved_step = self.step
        from .plotting import plot_losses

        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png",
                    baseline=getattr(self.task, "baseline", None))

    def meta(self) -> dict:
        return {
            "kind": getattr(self.model.config, "kind", "sequence"),
            "model": self.model.config.to_dict(),
            "task": self.task.config(),
            "train": asdict(self.config),
            "vocab": getattr(getattr(self.task, "vocab", None), "chars", None),
            **self.task_vocabularies(),
            "progress": {"step": self.step, "epoch": self.epoch, "batch": self.batch_index,
                         "window": self.window_index, "elapsed": self.elapsed, "running": list(self.running)},
            "rng": checkpoint.rng_state(self.model.generators()),
            **self.meta_extra,
        }

    def task_vocabularies(self) -> dict:
        """Token and label vocabularies of word-level tasks, stored so a checkpoint can be applied to new text."""
        out = {}
        for key, attr in (("tokens", "vocab"), ("chars_vocab", "char_vocab"), ("labels", "labels"),
                          ("target_tokens", "target_vocab")):
            value = getattr(self.task, attr, None)
            items = getattr(value, "tokens", None) or getattr(value, "labels", None)
            if items is not None:
                out[key] = list(items)
        return out

    def save(self) -> Path:
        carry = None
        if self.carry is not None:
            parts = self.carry if isinstance(self.carry, tuple) else (self.carry,)
            carry = {f"state{i}": p for i, p in enumerate(parts)}
        return checkpoint.save(self.run_dir, self.model.state_dict(), self.optimizer.state_dict(), self.meta(), carry)

    def restore(self, meta: dict, model_state: dict, optimizer_state: dict | None, carry: dict | None) -> None:
        """Continue exactly where a checkpoint of this run stopped."""
        self.model.load_state_dict(model_state)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        progress = meta["progress"]
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.batch_index, self.window_index, self.elapsed = progress["batch"], progress["window"], progress["elapsed"]
        self.running = tuple(progress.get("running", (0.0, 0)))
        checkpoint.set_rng_state(self.model.generators(), meta["rng"])
        if carry:
            parts = tuple(carry[f"state{i}"] for i in range(len(carry)))
            self.carry = parts[0] if len(parts) == 1 else parts
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.exists():  # drop records written after the checkpoint, and a line cut short by a kill
            kept = []
            for line in metrics.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record["step"] <= self.step:
                    kept.append(line)
            metrics.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            self.history = [json.loads(line) for line in kept]
