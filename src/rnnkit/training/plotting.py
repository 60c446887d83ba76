"""Plots as PNG files (headless Agg backend), written atomically: loss curves, attention heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_path


def plot_losses(metrics_path: str | Path, png_path: str | Path, baseline: float | None = None,
                unit: str | None = None) -> Path:
    """Plot training and validation loss against the step from a metrics.jsonl file (titled with the run
    directory's name; ``unit``: the loss's unit, e.g. nats/char)."""
    records = [json.loads(line) for line in Path(metrics_path).read_text(encoding="utf-8").splitlines() if line]
    title = f"{Path(png_path).resolve().parent.name}: loss per update step"
    return save_figure(loss_figure(records, baseline, title, unit), png_path)


def loss_figure(records: list[dict], baseline: float | None = None, title: str = "loss", unit: str | None = None):
    """The loss curves of metrics records, on a log scale (the first steps' high losses would flatten the rest of a
    linear axis) when every value is positive, its ticks in plain decimals."""
    plt = pyplot()
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", lw=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", lw=1.5, ms=3)
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"trivial baseline ({baseline:.3g})")
    values = [v for _, v in train + val] + ([baseline] if baseline is not None else [])
    if values and min(values) > 0:
        decimal_log_axis(ax, min(values), max(values))
    ax.set_title(title)
    ax.set_xlabel("update step")
    shown = f"loss ({unit})" if unit else "loss"
    ax.set_ylabel(f"{shown}, log scale" if ax.get_yscale() == "log" else shown)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decimal_log_axis(ax, low: float, high: float) -> None:
    """A log scale on the y axis of ``ax`` whose tick labels are plain decimals (``3``, ``0.25``, never ``3×10⁰``).
    Within a factor of 4 (no power of ten in sight) the ticks are evenly spaced values (2, 2.5, 3); within two
    decades the ticks 2, 3 and 5 between powers of ten are labelled too; wider, only the powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    ax.set_yscale("log")
    axis = ax.yaxis
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(NullFormatter())
    if high / low <= 4:
        axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        axis.set_minor_locator(NullLocator())
    elif high / low < 100:
        axis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
        axis.set_minor_formatter(plain)


def save_figure(fig, png_path: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(png_path)


def plot_attention(weights, source_tokens: list[str], target_tokens: list[str], png_path: str | Path) -> Path:
    """Heatmap of attention weights (target steps × source positions), written atomically."""
    return save_figure(attention_figure(weights, source_tokens, target_tokens), png_path)


VISIBLE_SPACES = {" ": "␣", "\t": "⇥", "\n": "⏎"}


def visible(token: str) -> str:
    """A token as a tick label: spaces, tabs and line ends drawn as ␣ ⇥ ⏎ (a blank label reads as a missing one)."""
    return "".join(VISIBLE_SPACES.get(ch, ch) for ch in token)


def attention_figure(weights, source_tokens: list[str], target_tokens: list[str]):
    """The attention heatmap: one row per output token, one column per source token, titled with the source."""
    plt = pyplot()
    rows, cols = len(target_tokens), len(source_tokens)
    fig, ax = plt.subplots(figsize=(2.0 + 0.42 * cols, 1.6 + 0.42 * rows), dpi=110)
    image = ax.imshow(weights[:rows, :cols], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=[visible(t) for t in source_tokens])
    ax.set_yticks(range(rows), labels=[visible(t) for t in target_tokens])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    shown = "".join(source_tokens) if all(len(t) == 1 for t in source_tokens) else " ".join(source_tokens)
    ax.set_title(f"attention while decoding {shown[:40]!r}" + ("…" if len(shown) > 40 else ""), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, label="attention weight")
    return fig
