"""A 2-layer LSTM-256 character model on tinyshakespeare with and without each recurrent regulariser, equal time.

    python benchmarks/regularizers_shakespeare.py --data tinyshakespeare.txt --seconds 150 --out docs/regularizers

Every variant trains through ``rnnkit train text`` (a subprocess each, one after the other, so they never share
the cores) for the same wall-clock budget, with the same data, seed, batch (50 streams × 50 characters, char-rnn's
defaults) and Adam 2e-3; validation loss (nats per character, the last 5% of the file) every ``--eval-every``
updates. Variants: the plain LSTM; variational dropout (input and recurrent, 0.25 each); zoneout (h 0.05, c 0.5,
Krueger et al.'s character-level rates); weight drop 0.5 on W_hh (AWD-LSTM's); the layer-normalised LSTM. Writes
``OUT.png`` (validation loss against time, one curve per variant) and ``OUT.md`` (a table: updates done, updates per
second, best and final validation loss). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "LSTM": [],
    "+ variational dropout 0.25/0.25": ["--dropout-input", "0.25", "--dropout-recurrent", "0.25"],
    "+ zoneout h 0.05, c 0.5": ["--zoneout", "0.05", "--zoneout-cell", "0.5"],
    "+ weight drop 0.5": ["--weight-drop", "0.5"],
    "layer-norm LSTM": ["--cell", "lnlstm"],
}


def train(name: str, extra: list[str], data: str, seconds: float, eval_every: int, runs: Path) -> list[dict]:
    out = runs / name.replace(" ", "_").replace("/", "-").replace(",", "")
    argv = [sys.executable, "-m", "rnnkit", "train", "text", "--data", data, "--cell", "lstm", "--hidden-size",
            "256", "--num-layers", "2", "--time-limit", str(seconds), "--eval-every", str(eval_every),
            "--max-epochs", "1000", "--seed", "0", "--no-progress", "--out", str(out), *extra]
    subprocess.run(argv, check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_loss" in r]


def plot(curves: dict[str, list[dict]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, records in curves.items():
        ax.plot([r["time"] for r in records], [r["val_loss"] for r in records], marker=".", label=name)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("2-layer LSTM-256 on tinyshakespeare, equal time budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def table(curves: dict[str, list[dict]]) -> str:
    lines = ["| variant | updates | updates/s | best val loss | final val loss |", "|---|---:|---:|---:|---:|"]
    for name, records in curves.items():
        last = records[-1]
        best = min(r["val_loss"] for r in records)
        lines.append(f"| {name} | {last['step']} | {last['step'] / last['time']:.2f} | {best:.4f} | "
                     f"{last['val_loss']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--out", default="regularizers")
    parser.add_argument("--only", action="append", help="Run only these variants (names as in the table).")
    args = parser.parse_args()
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            curves[name] = train(name, extra, args.data, args.seconds, args.eval_every, Path(tmp))
            print(f"{name}: {curves[name][-1]}", flush=True)
    out = Path(args.out)
    plot(curves, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(table(curves) + "\n", encoding="utf-8")
    print(table(curves))


if __name__ == "__main__":
    main()
