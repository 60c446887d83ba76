"""How much of an LSTM training step is GEMM time: replay the step's GEMMs alone and compare with the whole step.

    python benchmarks/gemm_share.py --batch 64 --hidden 512 [--steps 100] [--kernels compiled|numpy]

An LSTM training step (one layer, input size = H, T steps) runs these GEMMs, in this order:

* forward: XP = X W_ihᵀ (T·B × H by H × 4H), then per step h_{t-1} W_hhᵀ (B × H by H × 4H);
* backward: per step δh_{t-1} = δa W_hh (B × 4H by 4H × H), then δW_ih = δXPᵀ X, δW_hh = δXPᵀ H_prev
  (4H × T·B by T·B × H) and δX = δXP W_ih (T·B × 4H by 4H × H).

The replay runs exactly those products, with ``out=`` buffers as the runner does, on the same BLAS and threads;
"share" = replay time / measured step time (medians). Everything else — pointwise math, Python, copies — is the
rest. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gemm_replay(batch: int, hidden: int, steps: int):
    """A function running the GEMMs of one LSTM training step."""
    rng = np.random.default_rng(0)
    g, rows = 4 * hidden, steps * batch
    x = rng.standard_normal((rows, hidden), dtype=np.float32)
    w_ih_t, w_hh_t = (rng.standard_normal((hidden, g), dtype=np.float32) for _ in range(2))
    w_hh = np.ascontiguousarray(w_hh_t.T)
    h = rng.standard_normal((steps + 1, batch, hidden), dtype=np.float32)
    gates = np.empty((steps, batch, g), np.float32)
    dxp = rng.standard_normal((steps, batch, g), dtype=np.float32)
    dh = np.empty((batch, hidden), np.float32)

    def run():
        _ = x @ w_ih_t
        for t in range(steps):
            np.matmul(h[t], w_hh_t, out=gates[t])
        for t in reversed(range(steps)):
            np.matmul(dxp[t], w_hh, out=dh)
        flat = dxp.reshape(rows, g)
        _ = flat.T @ x
        _ = flat.T @ h[:-1].reshape(rows, hidden)
        _ = flat @ w_ih_t.T

    return run


def lstm_step(batch: int, hidden: int, steps: int):
    import rnnkit

    layer = rnnkit.LSTM(hidden, hidden, rng=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    dy = rng.standard_normal((batch, steps, hidden), dtype=np.float32)

    def run():
        layer.forward(x)
        layer.backward(dy)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--kernels", choices=["compiled", "numpy"], default=None)
    args = parser.parse_args()
    if args.kernels:
        os.environ["RNNKIT_KERNELS"] = args.kernels
    whole = median_time(lstm_step(args.batch, args.hidden, args.steps), args.repeats)
    gemms = median_time(gemm_replay(args.batch, args.hidden, args.steps), args.repeats)
    print(f"LSTM B={args.batch} H={args.hidden} T={args.steps}: training step {1e3 * whole:.1f} ms, its GEMMs alone "
          f"{1e3 * gemms:.1f} ms: {100 * gemms / whole:.0f}% of the step inside GEMMs")


if __name__ == "__main__":
    main()
