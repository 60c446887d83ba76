"""Time per training step (forward + backward) of minGRU by parallel scan, minGRU step by step, rnnkit.GRU of the
same size, and torch.nn.GRU when torch is installed — at B = 16, H = 256 (input size H), T = 100 and 1000.

    python benchmarks/min_rnn_scan.py                      # median of --repeats steps after one warm-up
    python benchmarks/min_rnn_scan.py --repeats 1 --steps 100 --json out.json

Run it on a quiet machine: the numbers are medians of wall-clock times. float32, compiled kernels where rnnkit has
them (RNNKIT_KERNELS=numpy for the NumPy code); torch runs with the same number of threads as NumPy's BLAS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import rnnkit


def time_steps(step, repeats: int) -> float:
    """Median seconds of ``step()`` over ``repeats`` calls after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def rnnkit_step(layer, x):
    """One forward + backward of an rnnkit layer (gradients accumulate, as in training)."""
    def step():
        y, _ = layer.forward(x)
        layer.backward(np.ones_like(y))
    return step


def torch_step(module, x):
    import torch

    xt = torch.from_numpy(x).requires_grad_(True)

    def step():
        y, _ = module(xt)
        y.sum().backward()
    return step


def contenders(batch: int, hidden: int, steps: int) -> dict:
    """Name → one training step, all on the same input."""
    x = np.random.default_rng(0).normal(size=(batch, steps, hidden)).astype(np.float32)
    found = {
        "minGRU scan": rnnkit_step(rnnkit.MinGRU(hidden, hidden, mode="scan", rng=0), x),
        "minGRU sequential": rnnkit_step(rnnkit.MinGRU(hidden, hidden, mode="sequential", rng=0), x),
        "rnnkit.GRU": rnnkit_step(rnnkit.GRU(hidden, hidden, rng=0), x),
    }
    try:
        import torch
    except ImportError:
        return found
    found["torch.nn.GRU"] = torch_step(torch.nn.GRU(hidden, hidden, batch_first=True), x)
    return found


def run(batch: int, hidden: int, lengths: list[int], repeats: int) -> list[dict]:
    rows = []
    for steps in lengths:
        times = {name: time_steps(step, repeats) for name, step in contenders(batch, hidden, steps).items()}
        reference = times.get("torch.nn.GRU")
        for name, seconds in times.items():
            row = {"T": steps, "B": batch, "H": hidden, "model": name, "ms_per_step": 1e3 * seconds}
            if reference:
                row["ratio_to_torch_gru"] = seconds / reference
            rows.append(row)
            ratio = f"  ({row['ratio_to_torch_gru']:.2f}× torch.nn.GRU)" if reference else ""
            print(f"T={steps:5d}  {name:18s} {1e3 * seconds:9.2f} ms{ratio}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000], help="sequence lengths T")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per contender (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and torch threads (0: leave as they are)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    print(f"rnnkit {rnnkit.__version__}, kernels: {rnnkit.kernels.describe()}", flush=True)
    rows = run(args.batch, args.hidden, args.steps, args.repeats)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
