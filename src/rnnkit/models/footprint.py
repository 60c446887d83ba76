"""How much memory a model will need, computed from its description before anything is allocated.

``rnnkit train`` (a new run, a resumed one, ``--init-from``) and every command that loads a checkpoint check
the description first, so that a size which cannot fit (``--hidden-size 100000``, ``--num-layers 1000000``, a
tampered ``meta.json``) is one line naming the estimate and the machine's memory, not an allocation traceback
or a minute of silence followed by the out-of-memory killer.

The estimate (bytes, in the model's dtype):

* parameters: counted exactly from the config (`parameter_count`; a test compares it with built models) — held
  four times while training: the weights, their gradients and two optimizer moments (Adam);
* activations of one training batch: every recurrent layer and direction keeps, per step and row, about six
  arrays as wide as its fused gates (pre-activations, activations, their gradients, the state history).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

GIB = 2.0 ** 30
#: copies of every parameter a training run holds: weights, gradients, and Adam's two moments
TRAINING_COPIES = 4
#: arrays as wide as the fused gates that one step of one layer keeps per row while training (rough)
ACTIVATION_ARRAYS = 6


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the cgroup limit where one is set, else the physical memory."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit.isdigit():
            return int(limit)
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class Footprint:
    """An estimate of a model's memory: ``parameters`` (a count), bytes of ``weights`` (held once) and of
    ``training`` (weights, gradients, optimizer state and one batch's activations)."""

    parameters: int
    weights: int
    training: int


def recurrent_parts(config) -> list[tuple[type, int, int, bool, dict]]:
    """The recurrent layers a config builds, as (layer class, input size, layers, bidirectional, cell options)."""
    from .sequence import RECURRENT_LAYERS

    cell = getattr(config, "cell", None)
    layer = RECURRENT_LAYERS.get(cell)
    if layer is None:
        return []
    options = config.cell_options() if hasattr(config, "cell_options") else {}
    if cell == "jordan":
        options = {"output_size": config.output_size}
    return [(layer, _recurrent_input(config), getattr(config, "num_layers", 1), _bidirectional(config), options)]


def _recurrent_input(config) -> int:
    if getattr(config, "tokens", True) is False:
        return config.input_size
    return getattr(config, "embedding_size", 0) or getattr(config, "input_size", 0)


def _bidirectional(config) -> bool:
    return config.bidirectional


def footprint(config, batch: int = 0, steps: int = 0) -> Footprint:
    """The estimate for ``config`` (a model config with ``parameter_count()``) training on batches of ``batch``
    sequences of ``steps`` steps (0: parameters only)."""
    itemsize = np.dtype(getattr(config, "dtype", "float32")).itemsize
    count = config.parameter_count()
    width = 0
    for layer, _, layers, bidirectional, options in recurrent_parts(config):
        gates = max(layer.cell_class.num_gates * config.hidden_size,  # at least the fused gates (cells without W_hh)
                    layer.cell_class.parameter_count(0, config.hidden_size, bias=False, **options) // max(
                        layer.cell_class.output_width(config.hidden_size, **options), 1))
        width += layers * (2 if bidirectional else 1) * (gates + config.hidden_size)
    activations = ACTIVATION_ARRAYS * batch * steps * width
    return Footprint(count, count * itemsize, (TRAINING_COPIES * count + activations) * itemsize)


def check_fits(config, batch: int = 0, steps: int = 0, what: str = "the model", hint: str = "",
               error: type[Exception] = ConfigError) -> Footprint:
    """``error`` (one line: the estimate and the machine's memory) unless the model, trained on batches of
    ``batch`` × ``steps`` (0: only its weights), fits in this machine's memory; returns the estimate."""
    estimate = footprint(config, batch, steps)
    available = machine_memory()
    need = estimate.training if batch else estimate.weights
    if available is not None and need > available:
        subject = f"{what} ({estimate.parameters:,} parameters)"
        if batch:
            subject = f"training {subject} on batches of {batch}" + (f" × {steps} steps" if steps else "")
        raise error(f"{subject} needs about {need / GIB:,.1f} GiB; this machine has {available / GIB:,.1f} GiB of "
                    "memory" + (f" — {hint}" if hint else ""))
    return estimate
