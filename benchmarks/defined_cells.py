"""Defined cells against the hand-written ones: time per call of the same layer written both ways, training
(forward + backward) and inference (forward under no_grad), float32, compiled kernels.

    python benchmarks/defined_cells.py                         # B = 32, H = 128, T = 50, 30 rounds
    python benchmarks/defined_cells.py --rounds 100 --batch 64 --hidden 256 --json out.json

The two layers of a pair run in alternation in one process (A, B, A, B, ...; the first of each round alternates
too), so a loaded machine slows both alike; the ratio printed is median(defined) / median(hand-written). Run it on
a quiet machine for numbers to quote. The definitions are the ones tests/test_defined_cells.py proves equal to the
hand-written cells.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import rnnkit
from rnnkit import define

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
#: the definitions and hand-written layers of the equality tests, so that what is timed is what is proven equal
from test_defined_cells import HAND_WRITTEN, SPECS, defined_name  # noqa: E402


def layer_pair(name: str, size: int):
    """(hand-written layer, defined layer) of ``name`` in float32, with the same weights."""
    make, renames = HAND_WRITTEN[name]
    hand = make(input_size=size, hidden_size=size, rng=0)
    mine = define.DefinedRNN(size, size, define.cell(name, **SPECS[name]))
    mine.load_state_dict({defined_name(k, renames): v for k, v in hand.state_dict().items()})
    return hand, mine


def calls(layer, x, dy):
    """(training call, inference call) of ``layer`` on ``x``."""
    def train():
        out, _ = layer.forward(x)
        layer.backward(dy)

    def infer():
        with rnnkit.no_grad():
            layer.forward(x)

    return train, infer


def race(a, b, rounds: int) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()`` called in alternation for ``rounds`` rounds after one warm-up each."""
    a(), b()
    times = ([], [])
    for r in range(rounds):
        order = ((0, a), (1, b)) if r % 2 == 0 else ((1, b), (0, a))
        for k, fn in order:
            started = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cells", nargs="+", choices=sorted(SPECS), default=sorted(SPECS))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.steps, args.hidden)).astype(np.float32)
    dy = rng.normal(size=(args.batch, args.steps, args.hidden)).astype(np.float32)
    print(f"kernels: {rnnkit.kernels.describe()}; B = {args.batch}, H = {args.hidden}, T = {args.steps}, "
          f"{args.rounds} rounds, medians in ms")
    print(f"{'cell':16} {'mode':9} {'hand':>9} {'defined':>9} {'ratio':>6}")
    rows = []
    for name in args.cells:
        hand, mine = layer_pair(name, args.hidden)
        for mode, (h_call, d_call) in zip(("training", "inference"), zip(calls(hand, x, dy), calls(mine, x, dy))):
            t_hand, t_mine = race(h_call, d_call, args.rounds)
            rows.append({"cell": name, "mode": mode, "hand_ms": 1e3 * t_hand, "defined_ms": 1e3 * t_mine,
                         "ratio": t_mine / t_hand})
            print(f"{name:16} {mode:9} {1e3 * t_hand:9.2f} {1e3 * t_mine:9.2f} {t_mine / t_hand:6.2f}")
    if args.json:
        with open(args.json, "x", encoding="utf-8") as f:
            json.dump({"batch": args.batch, "hidden": args.hidden, "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
