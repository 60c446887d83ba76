"""`rnnkit bench --variants`: the step time of the newer cells and of the regularisers relative to the plain cell.

Each variant is timed against its base (the plain LSTM, GRU or RNN of the same sizes) in one rnnkit worker process
with its thread pools pinned to ``--threads`` (`rnnkit.training.bench_processes`), in turns (base, variant, base,
variant, ...) after warm-up, one untimed and one timed call per turn, median (and minimum) of the repeats; "train"
is one forward and backward of a one-layer, unidirectional layer in training mode (so that dropout masks are
drawn), "infer" a forward under ``rnnkit.no_grad`` in evaluation mode. ``ratio`` = variant ms / base ms: 1.10
means 10% slower. The goals of the engine issue: layer norm and every regulariser ≤ 1.15×.
"""

from __future__ import annotations

import statistics

from .bench import MODES, available_cores, steal_by_library, turns_of
from .bench_processes import Workers, alternate

REGULARIZED = {"dropout_input": 0.25, "dropout_recurrent": 0.25, "zoneout": 0.1, "weight_drop": 0.5}
#: variant → (base cell, its cell in the catalogue, layer options, `regularize` options)
VARIANTS = {
    **{f"lstm+{k}": ("lstm", "lstm", {}, {k: v}) for k, v in REGULARIZED.items()},
    "lstm+all four": ("lstm", "lstm", {}, REGULARIZED),
    **{f"gru+{k}": ("gru", "gru", {}, {k: v}) for k, v in REGULARIZED.items()},
    "lnlstm": ("lstm", "lnlstm", {}, {}),
    "lngru": ("gru", "lngru", {}, {}),
    "mingru": ("gru", "mingru", {}, {}),
    "mingru scan": ("gru", "mingru", {"mode": "scan"}, {}),
    "minlstm": ("lstm", "minlstm", {}, {}),
    "indrnn": ("rnn", "indrnn", {}, {}),
}


def cases(name: str, batch: int, hidden: int, steps: int, mode: str) -> dict[str, dict]:
    """The worker cases of variant ``name`` and of its base, keyed ``"base"`` and ``"variant"``."""
    base, cell, options, rates = VARIANTS[name]
    sizes = {"batch": batch, "hidden": hidden, "steps": steps, "mode": mode}
    return {"base": {"cell": base, **sizes},
            "variant": {"cell": cell, "options": options, "regularize": rates, **sizes}}


def _spread(samples: list[dict], key: str) -> tuple[float, float]:
    times = [s["ms"] for s in samples if s["key"] == key]
    return statistics.median(times), min(times)


def run(variants=tuple(VARIANTS), batches=(16,), hiddens=(256,), steps: int = 100, repeats: int = 5,
        warmup: int = 2, threads: int | None = None, kernels: str | None = None, meta: dict | None = None):
    """Yield one dict per (variant, B, H, mode): its time, its base's time and the ratio."""
    threads = threads or available_cores()
    with Workers(("rnnkit",), threads, kernels) as workers:
        worker = workers["rnnkit"]
        if meta is not None:
            meta.update(threads=threads, **workers.meta())
        for batch in batches:
            for hidden in hiddens:
                for name in variants:
                    for mode in MODES:
                        by_key = cases(name, batch, hidden, steps, mode)
                        samples = list(alternate([(worker, "base"), (worker, "variant")], repeats, warmup, by_key))
                        (base_ms, base_min), (variant_ms, variant_min) = (_spread(samples, k) for k in by_key)
                        yield {"variant": name, "base": by_key["base"]["cell"], "mode": mode, "batch": batch,
                               "hidden": hidden, "steps": steps, "variant_ms": variant_ms,
                               "variant_min_ms": variant_min, "base_ms": base_ms, "base_min_ms": base_min,
                               "ratio": variant_ms / base_ms, "pid": worker.pid,
                               "steal_ms": steal_by_library(samples), "turns": turns_of(samples)}


def format_table(records: list[dict]) -> str:
    header = f"{'variant':<24}{'base':<6}{'B':>4}{'H':>5} {'mode':<7}{'variant ms':>11}{'base ms':>9}{'ratio':>7}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(f"{r['variant']:<24}{r['base']:<6}{r['batch']:>4}{r['hidden']:>5} {r['mode']:<7}"
                     f"{r['variant_ms']:11.2f}{r['base_ms']:9.2f}{r['ratio']:7.2f}")
    return "\n".join(lines)
