"""Training and studying models: the `Trainer`, checkpoints, experiments, diagnostics, sampling, plots,
benchmarks, the hidden-unit page, the gradient-check suite, and `atomic_write` for every file a command writes.

Modules that pull in matplotlib or torch import them only when called, so importing this package stays light.
"""

from .data import DataConfig
from .files import atomic_write
from .trainer import TrainConfig, Trainer, TrainingError, tbptt_windows

__all__ = ["DataConfig", "TrainConfig", "Trainer", "TrainingError", "atomic_write", "tbptt_windows"]
