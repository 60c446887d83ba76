"""`rnnkit experiment NAME`: small, repeatable comparisons of cells on the memory benchmarks.

Each experiment trains every (cell, length, seed) combination with the same budget, stops a run early once the
task's success criterion holds, and reports per (cell, length): success rate over seeds, mean final validation
loss against the trivial baseline, and mean time — printed, written as Markdown, and plotted as a PNG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .memory_tasks import Adding1997Task, CopyTask, ReberTask
from .models import ModelConfig, SequenceModel
from .plotting import save_figure
from .tasks import AddingTask
from .trainer import TrainConfig, Trainer


@dataclass
class Experiment:
    name: str
    description: str
    cells: tuple[str, ...]
    lengths: tuple[int, ...]
    seeds: int
    hidden_size: int
    lr: float
    epochs: int
    eval_every: int
    make_task: object  # (length, seed) → task
    published: str = ""
    extra: dict = field(default_factory=dict)


EXPERIMENTS = {
    "reber": Experiment(
        "reber", "Embedded Reber grammar (Hochreiter & Schmidhuber 1997, Exp. 1): 256 train / 256 test strings",
        ("rnn", "lstm", "gru"), (0,), 5, 16, 1e-2, 300, 160, lambda length, seed: ReberTask(seed=seed),
        published="1997, Table 1: Elman nets 0% success; RTRL ≤ 33%; LSTM 97–100% of trials."),
    "adding": Experiment(
        "adding", "Adding problem, two-channel variant (target X1 + X2, trivial MSE 1/6; solved: MSE < 5% of it)",
        ("rnn", "lstm", "gru"), (20, 50), 2, 64, 1e-3, 100, 500,
        lambda length, seed: AddingTask(seq_length=length, seed=seed),
        published="Le et al. 2015: tanh RNN fails beyond T ≈ 100–150; LSTM solves T = 150–400."),
    "adding1997": Experiment(
        "adding1997", "Adding problem as in 1997, Exp. 4 (|error| < 0.04 on all test sequences)",
        ("rnn", "lstm", "gru"), (20, 50), 2, 32, 3e-3, 60, 500,
        lambda length, seed: Adding1997Task(seq_length=length, seed=seed),
        published="1997, Table 7: LSTM solves T = 100 (2560 test sequences, 1 error at most)."),
    "copy": Experiment(
        "copy", "Copying memory (Arjovsky et al. 2016): recall 10 symbols after T blanks",
        ("rnn", "lstm", "gru"), (10, 50), 2, 64, 3e-3, 40, 500,
        lambda length, seed: CopyTask(seq_length=length, seed=seed),
        published="Arjovsky et al. 2016: LSTM and tanh RNN stay at the baseline for T = 100–500 (uRNN solves it)."),
}


def run_one(exp: Experiment, cell: str, length: int, seed: int, out_dir: Path, time_budget: float) -> dict:
    task = exp.make_task(length, seed)
    config = ModelConfig(task.input_size, task.output_size, tokens=task.tokens, cell=cell,
                         hidden_size=exp.hidden_size, forget_bias=1.0 if cell == "lstm" else None)
    model = SequenceModel(config, rng=np.random.default_rng(seed))
    trainer = Trainer(model, task, TrainConfig(lr=exp.lr, epochs=exp.epochs, eval_every=exp.eval_every, seed=seed,
                                               time_limit=time_budget, progress=False),
                      out_dir / f"{cell}-T{length}-seed{seed}")
    trainer.stop_when = lambda metrics: metrics.get("success", 0.0) == 1.0
    started = time.perf_counter()
    trainer.fit()
    metrics = trainer.last_eval
    return {"cell": cell, "length": length, "seed": seed, "success": float(metrics.get("success", 0.0)),
            "val_loss": float(metrics["val_loss"]), "baseline": getattr(task, "baseline", None),
            "steps": trainer.step, "seconds": time.perf_counter() - started,
            **{k: float(v) for k, v in metrics.items() if k not in ("success", "val_loss") and np.ndim(v) == 0}}


def summarize(exp: Experiment, runs: list[dict]) -> list[dict]:
    rows = []
    for cell in exp.cells:
        for length in exp.lengths:
            mine = [r for r in runs if r["cell"] == cell and r["length"] == length]
            if not mine:
                continue
            rows.append({"cell": cell, "length": length, "seeds": len(mine),
                         "success_rate": float(np.mean([r["success"] for r in mine])),
                         "val_loss": float(np.mean([r["val_loss"] for r in mine])), "baseline": mine[0]["baseline"],
                         "seconds": float(np.mean([r["seconds"] for r in mine]))})
    return rows


def markdown(exp: Experiment, rows: list[dict]) -> str:
    lines = [f"# Experiment: {exp.name}", "", exp.description, "",
             "| cell | T | seeds | success rate | final val loss | trivial baseline | mean time (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['baseline']:.4f}" if r["baseline"] is not None else "–"
        length = r["length"] or "–"
        lines.append(f"| {r['cell']} | {length} | {r['seeds']} | {r['success_rate']:.0%} | {r['val_loss']:.4f} | "
                     f"{base} | {r['seconds']:.1f} |")
    if exp.published:
        lines += ["", f"Published: {exp.published}"]
    return "\n".join(lines) + "\n"


def plot(exp: Experiment, rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    labels = [f"{r['cell']}" + (f" T={r['length']}" if r["length"] else "") for r in rows]
    axes[0].bar(labels, [r["success_rate"] for r in rows], color="tab:green")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("success rate over seeds")
    axes[1].bar(labels, [r["val_loss"] for r in rows], color="tab:blue", label="final validation loss")
    base = [r["baseline"] for r in rows]
    if all(b is not None for b in base):
        axes[1].plot(labels, base, "k_", ms=30, mew=2, label="trivial baseline")
    axes[1].set_ylabel("loss")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.suptitle(exp.description, fontsize=9)
    save_figure(fig, png)


def run_experiment(name: str, out_dir: Path, seeds: int | None = None, lengths=None, cells=None,
                   time_budget: float = 60.0, log=print) -> list[dict]:
    """Run all combinations; write ``<name>.md`` and ``<name>.png`` into ``out_dir``; return the summary rows."""
    exp = EXPERIMENTS[name]  # the shared definition stays as it is; overrides make a copy
    exp = replace(exp, lengths=tuple(lengths) if lengths else exp.lengths, cells=tuple(cells) if cells else exp.cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for length in exp.lengths:
        for cell in exp.cells:
            for seed in range(seeds or exp.seeds):
                r = run_one(exp, cell, length, seed, out_dir / "runs", time_budget)
                runs.append(r)
                log(f"{cell:>5} T={length:<4} seed {seed}: success {r['success']:.0f}  val loss {r['val_loss']:.4f}  "
                    f"{r['steps']} steps  {r['seconds']:.1f} s")
    rows = summarize(exp, runs)
    (out_dir / f"{name}.md").write_text(markdown(exp, rows), encoding="utf-8")
    plot(exp, rows, out_dir / f"{name}.png")
    return rows
