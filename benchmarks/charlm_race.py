"""Character language model race: rnnkit's ``rnnkit train text`` against the same model in torch, equal wall time.

    python benchmarks/charlm_race.py --data tinyshakespeare.txt --seconds 180 [--threads 2]

Model (both): Embedding 64 → LSTM 256 → Linear; batch 32 streams, truncated BPTT over 100 characters with the
state carried between chunks (char-rnn's scheme, which `rnnkit train text` uses); Adam 2e-3, global-norm clip 5;
first 90% of the file for training, last 10% for validation. rnnkit trains through its command line (a
subprocess, with its checkpoint at the end); torch trains in this process with the same batching. Both validation
losses are computed the same way afterwards: mean cross-entropy (nats per character) with a fresh state on each
non-overlapping 100-character window of the validation text. Both train under rnnkit's malloc policy
(`rnnkit.allocator`), as in `rnnkit bench`. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEQ, BATCH, EMBED, HIDDEN, LR, CLIP, VAL = 100, 32, 64, 256, 2e-3, 5.0, 0.1


def read_ids(path: Path) -> tuple[np.ndarray, list[str]]:
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index[c] for c in text], np.int64), chars


def validation_windows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the non-overlapping 100-character windows of the last 10%: (N, 100) each."""
    val = ids[len(ids) - int(len(ids) * VAL):]
    n = (len(val) - 1) // SEQ
    return val[:n * SEQ].reshape(n, SEQ), val[1:n * SEQ + 1].reshape(n, SEQ)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def run_rnnkit(data: Path, seconds: float, threads: int | None) -> dict:
    """Train with the rnnkit command for ``seconds``; return updates, training time and validation loss."""
    import rnnkit
    from rnnkit.training.checkpoint import load_model

    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-m", "rnnkit", "train", "text", "--data", str(data), "--cell", "lstm",
           "--hidden-size", str(HIDDEN), "--num-layers", "1", "--embedding-size", str(EMBED), "--batch-size",
           str(BATCH), "--seq-length", str(SEQ), "--lr", str(LR), "--grad-clip", str(CLIP), "--val-fraction",
           str(VAL), "--time-limit", str(seconds), "--eval-every", "1000000", "--no-progress", "--out", str(out)]
    cmd += ["--threads", str(threads)] if threads else []
    subprocess.run(cmd, check=True)
    meta, model = load_model(out)
    x, y = validation_windows(read_ids(data)[0])
    with rnnkit.no_grad():
        model.eval()
        logits = np.concatenate([model.forward(x[i:i + 256])[0] for i in range(0, len(x), 256)])
    progress = meta["progress"]
    return {"updates": progress["step"], "seconds": progress["elapsed"], "val_loss": cross_entropy(logits, y)}


def run_torch(data: Path, seconds: float, threads: int | None) -> dict:
    """The same model and batching in torch, trained for ``seconds``."""
    import torch

    from rnnkit.allocator import keep_large_blocks

    # torch trains under the malloc policy rnnkit's process has (`rnnkit.allocator`: large blocks reused, not mapped
    # afresh), as in `rnnkit bench`. It held here before by accident — the validation forward above loads rnnkit's
    # kernels, which apply it — and it matters: torch's update took 44 – 48 ms with it, 62 ms without (this model).
    keep_large_blocks()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    ids, chars = read_ids(data)
    train = ids[:len(ids) - int(len(ids) * VAL)]
    width = (len(train) - 1) // BATCH
    xs = torch.from_numpy(train[:BATCH * width].reshape(BATCH, width))
    ys = torch.from_numpy(train[1:BATCH * width + 1].reshape(BATCH, width))
    embed, lstm = torch.nn.Embedding(len(chars), EMBED), torch.nn.LSTM(EMBED, HIDDEN, batch_first=True)
    head = torch.nn.Linear(HIDDEN, len(chars))
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    state, start, updates, t0 = None, 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if start + SEQ > width:
            state, start = None, 0
        x, y = xs[:, start:start + SEQ], ys[:, start:start + SEQ]
        out, state = lstm(embed(x), state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        start, updates = start + SEQ, updates + 1
    elapsed = time.perf_counter() - t0
    vx, vy = validation_windows(ids)
    with torch.no_grad():
        logits = head(lstm(embed(torch.from_numpy(vx)))[0]).numpy()
    return {"updates": updates, "seconds": elapsed, "val_loss": cross_entropy(logits, vy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {"rnnkit": run_rnnkit(args.data, args.seconds, args.threads),
               "torch": run_torch(args.data, args.seconds, args.threads)}
    for name, r in results.items():
        print(f"{name:>7}: {r['updates']:5d} updates in {r['seconds']:6.1f} s = {r['updates'] / r['seconds']:5.2f}/s, "
              f"validation loss {r['val_loss']:.4f} nats/char")
    speed = (results["rnnkit"]["updates"] / results["rnnkit"]["seconds"]) / (
        results["torch"]["updates"] / results["torch"]["seconds"])
    print(f"updates/s ratio rnnkit/torch {speed:.2f}; loss difference rnnkit − torch "
          f"{results['rnnkit']['val_loss'] - results['torch']['val_loss']:+.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
