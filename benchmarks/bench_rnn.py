"""Benchmark RNN / LSTM / GRU against torch: the same code as `rnnkit bench`, runnable from a checkout.

    python benchmarks/bench_rnn.py --threads 2 --json benchmarks/results.json
"""

from rnnkit.cli import main

if __name__ == "__main__":
    import sys

    main(["bench", *sys.argv[1:]])
