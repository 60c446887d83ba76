"""`rnnkit bench --variants`: the step time of the newer cells and of the regularisers relative to the plain cell.

Each variant is timed against its base (the plain LSTM, GRU or RNN of the same sizes) in the same process,
interleaved (base, variant, base, variant, ...) after warm-up, median of the repeats; "train" is one forward and
backward of a one-layer, unidirectional layer in training mode (so that dropout masks are drawn), "infer" a
forward under ``rnnkit.no_grad`` in evaluation mode. ``ratio`` = variant ms / base ms: 1.10 means 10% slower.
The goals of the cells issue: layer norm ≤ 1.3×, the dropout variants ≤ 1.1×.
"""

from __future__ import annotations

import numpy as np

from ..module import no_grad
from .bench import _median_interleaved

REGULARIZED = {"dropout_input": 0.25, "dropout_recurrent": 0.25, "zoneout": 0.1, "weight_drop": 0.5}
#: variant → (base cell, layer class name in rnnkit.recurrent, layer options, `regularize` options)
VARIANTS = {
    **{f"lstm+{k}": ("lstm", "LSTM", {}, {k: v}) for k, v in REGULARIZED.items()},
    "lstm+all four": ("lstm", "LSTM", {}, REGULARIZED),
    **{f"gru+{k}": ("gru", "GRU", {}, {k: v}) for k, v in REGULARIZED.items()},
    "lnlstm": ("lstm", "LayerNormLSTM", {}, {}),
    "lngru": ("gru", "LayerNormGRU", {}, {}),
    "mingru": ("gru", "MinGRU", {}, {}),
    "mingru scan": ("gru", "MinGRU", {"mode": "scan"}, {}),
    "minlstm": ("lstm", "MinLSTM", {}, {}),
    "indrnn": ("rnn", "IndRNN", {}, {}),
}
BASES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _layer(class_name: str, hidden: int, options: dict, rates: dict):
    from .. import recurrent

    layer = getattr(recurrent, class_name)(hidden, hidden, rng=0, **options)
    return layer.regularize(**rates) if rates else layer


def _timers(layer, x, dy):
    def train():
        layer.train()
        layer.forward(x)
        layer.backward(dy)

    def infer():
        layer.eval()
        with no_grad():
            layer.forward(x)
    return train, infer


def run(variants=tuple(VARIANTS), batch: int = 16, hidden: int = 256, steps: int = 100, repeats: int = 5,
        warmup: int = 2):
    """Yield one dict per (variant, mode): its time, its base's time and the ratio."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    dy = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    for name in variants:
        base, class_name, options, rates = VARIANTS[name]
        ours = _timers(_layer(class_name, hidden, options, rates), x, dy)
        plain = _timers(_layer(BASES[base], hidden, {}, {}), x, dy)
        for mode, k in (("train", 0), ("infer", 1)):
            base_ms, variant_ms = _median_interleaved([plain[k], ours[k]], repeats, warmup)
            yield {"variant": name, "base": base, "mode": mode, "batch": batch, "hidden": hidden, "steps": steps,
                   "variant_ms": variant_ms, "base_ms": base_ms, "ratio": variant_ms / base_ms}


def format_table(records: list[dict]) -> str:
    header = f"{'variant':<24}{'base':<6}{'mode':<7}{'variant ms':>11}{'base ms':>9}{'ratio':>7}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(f"{r['variant']:<24}{r['base']:<6}{r['mode']:<7}{r['variant_ms']:11.2f}{r['base_ms']:9.2f}"
                     f"{r['ratio']:7.2f}")
    return "\n".join(lines)
