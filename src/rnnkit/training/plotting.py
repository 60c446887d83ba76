"""Plots as PNG files (headless Agg backend), written atomically: loss curves, attention heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_path


def plot_losses(metrics_path: str | Path, png_path: str | Path, baseline: float | None = None) -> Path:
    """Plot training and validation loss against the step from a metrics.jsonl file (titled with the run
    directory's name)."""
    records = [json.loads(line) for line in Path(metrics_path).read_text(encoding="utf-8").splitlines() if line]
    title = f"{Path(png_path).resolve().parent.name}: loss per update step"
    return save_figure(loss_figure(records, baseline, title), png_path)


def loss_figure(records: list[dict], baseline: float | None = None, title: str = "loss"):
    """The loss curves of metrics records, on a log scale (the first steps' high losses would flatten the rest of a
    linear axis) when every value is positive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("update step")
    ax.set_ylabel("loss (log scale)" if ax.get_yscale() == "log" else "loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(target_tokens), len(source_tokens)
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * cols, 1.0 + 0.42 * rows), dpi=110)
    image = ax.imshow(weights[:rows, :cols], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=source_tokens)
    ax.set_yticks(range(rows), labels=target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.05)
    return save_figure(fig, png_path)
