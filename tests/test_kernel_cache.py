"""The compiled whole-sequence loops are cached on disk: a new process loads every family's loop entries
(`rnnkit.kernels.sequence_loop`) from numba's cache instead of compiling them again, and numba never refuses to
cache one ("uses dynamic globals": a jitted step passed as a value to a skeleton that is not inlined)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="numba is not installed: the compiled loop is not available")

#: one process: a forward and backward call of every cell family on the loop skeleton, float32, ragged and
#: bidirectional; prints the cache counters of every loop entry that ran
PROBE = """
import json
import numpy as np
import rnnkit
from rnnkit import kernels
from rnnkit.kernels import gru, indrnn, lstm, minimal, rnn

layers = [rnnkit.RNN(3, 4, bidirectional=True), rnnkit.LSTM(3, 4, bidirectional=True),
          rnnkit.GRU(3, 4, bidirectional=True), rnnkit.GRU(3, 4, reset_after=False, bidirectional=True),
          rnnkit.IndRNN(3, 4, bidirectional=True), rnnkit.MinGRU(3, 4, bidirectional=True),
          rnnkit.MinLSTM(3, 4, bidirectional=True)]
x, lengths = np.ones((2, 5, 3), np.float32), np.array([5, 3])
with kernels.using("compiled"):
    for layer in layers:
        y, _ = layer.forward(x, lengths=lengths)
        layer.backward(np.ones_like(y))
entries = {}
for module in (gru, indrnn, lstm, minimal, rnn):
    for name in dir(module):
        entry = getattr(module, name)
        if name.endswith(("_sequence_forward", "_sequence_backward")) and entry.signatures:
            entries[f"{module.__name__}.{name}"] = {"hits": sum(entry.stats.cache_hits.values()),
                                                    "misses": sum(entry.stats.cache_misses.values())}
print(json.dumps(entries))
"""

#: the loop entries of every cell family (forward and backward)
FAMILIES = {"rnn.rnn", "lstm.lstm", "gru.gru_reset_after", "gru.gru_reset_before", "indrnn.indrnn",
            "minimal.min"}


def probe() -> tuple[dict, str]:
    env = {**os.environ, "RNNKIT_KERNELS": "compiled"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_second_process_loads_every_loop_entry_from_the_disk_cache_without_compiling():
    probe()  # fills the cache where it is empty (or already loads from it)
    entries, stderr = probe()
    expected = {f"rnnkit.kernels.{family}_sequence_{way}" for family in FAMILIES for way in ("forward", "backward")}
    assert set(entries) == expected
    compiled = {name: counts for name, counts in entries.items() if counts["misses"] or not counts["hits"]}
    assert not compiled, f"compiled again instead of loaded from the cache: {compiled}"
    assert "Cannot cache" not in stderr

