"""The long-range memory benchmarks, with their published definitions: data generated from a seed, and scores.

* `AddingTask` — the adding problem, two-channel variant: each step holds (value ~ U(0, 1), marker ∈ {0, 1});
  exactly two markers are set, one in each half; the target, read at the last step, is the sum of the two marked
  values. Predicting the mean (1) gives MSE 1/6, the trivial baseline.
* `ReberTask` — the embedded Reber grammar (Hochreiter & Schmidhuber 1997, Experiment 1). Strings are
  B (T|P) <Reber string> (same T|P) E over 7 symbols; the input is the current symbol (one-hot), the target the set
  of symbols that may come next (multi-hot, sigmoid outputs with binary cross-entropy). A string is processed
  correctly when at every step exactly the possible next symbols have outputs above 0.5; this includes the
  second-to-last symbol, which must repeat the second one across the whole inner string. Success = every string
  of both the 256 training and the 256 test strings correct.
* `Adding1997Task` — the adding problem as in Experiment 4: pairs (value ∈ [−1, 1], marker ∈ {−1, 0, 1});
  lengths vary in [T, T + T/10]; one of the first ten pairs and one of the first T/2 − 1 pairs are marked; the
  first and last markers are −1; the target at the end is 0.5 + (X1 + X2)/4; a sequence is correct when the
  absolute error is below 0.04. (The two-channel variant with target X1 + X2 is `AddingTask`.)
* `CopyTask` — the copying-memory task (Arjovsky et al. 2016): 10 symbols from 8, T − 1 blanks, a delimiter,
  10 blanks; the output must be blank until the last 10 steps, which repeat the 10 symbols. Predicting blanks
  and then uniformly random symbols costs 10·ln 8 / (T + 20) nats per step (the trivial baseline).
"""

from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from ..errors import DataError
from ..module import inference
from .base import Batch, GeneratedTask, TaskBase


def outputs(model, batch: Batch) -> np.ndarray:
    """The model's outputs (B, T, O) for a validation batch, in evaluation mode and without saving anything."""
    x = batch.x.astype(model.dtype) if batch.x.dtype.kind == "f" else batch.x
    with inference(model):
        out, _ = model.forward(x, lengths=batch.lengths)
    return out


def refuse_data(options, name: str) -> None:
    if options.data:
        raise DataError(f"task {name!r} generates its own data; --data is for text, classify, tagging and seq2seq")


REBER_SYMBOLS = "BTPSXVE"
# Reber grammar: state → [(symbol, next state)]; state 6 emits E and ends.
REBER_GRAPH = {0: [("B", 1)], 1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)], 3: [("T", 3), ("V", 5)],
               4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)], 6: [("E", None)]}


def reber_string(rng: np.random.Generator) -> tuple[str, list[set[str]]]:
    """One Reber string and, for each position, the set of symbols that may follow it."""
    state, symbols, follow = 0, [], []
    while state is not None:
        options = REBER_GRAPH[state]
        symbol, state = options[int(rng.integers(len(options)))]
        symbols.append(symbol)
        follow.append({s for s, _ in REBER_GRAPH[state]} if state is not None else set())
    return "".join(symbols), follow


def embedded_reber_string(rng: np.random.Generator) -> tuple[str, list[set[str]]]:
    outer = "TP"[int(rng.integers(2))]
    inner, inner_follow = reber_string(rng)
    text = "B" + outer + inner + outer + "E"
    follow = [{"T", "P"}, {"B"}] + inner_follow[:-1] + [{outer}, {"E"}, set()]
    return text, follow


def _reber_batch(strings) -> Batch:
    n, steps = len(strings), max(len(s) for s, _ in strings) - 1
    x = np.zeros((n, steps, 7), np.float32)
    target = np.zeros((n, steps, 7), np.float32)
    lengths = np.array([len(s) - 1 for s, _ in strings])
    for b, (text, follow) in enumerate(strings):
        for t, symbol in enumerate(text[:-1]):
            x[b, t, REBER_SYMBOLS.index(symbol)] = 1.0
            for s in follow[t]:
                target[b, t, REBER_SYMBOLS.index(s)] = 1.0
    mask = np.arange(steps)[None, :] < lengths[:, None]
    return Batch(x, target, mask, lengths)


def _rows(encoded: Batch, index: np.ndarray) -> Batch:
    """The strings ``index`` of the encoded set ``encoded``, as `_reber_batch` encodes them on their own: cut to the
    longest of them."""
    lengths = encoded.lengths[index]
    steps = int(lengths.max())
    return Batch(encoded.x[index, :steps], encoded.target[index, :steps], encoded.mask[index, :steps], lengths)


class ReberTask(TaskBase):
    name = "reber"
    success_metric = "success"
    loss = "bce"
    loss_unit = "nats per symbol and step"
    tokens = False
    stream = False
    seq_length = 0
    input_size = output_size = 7
    baseline = None
    cli_defaults = {"cell": "lstm", "seq_length": 0, "batch_size": 16, "hidden_size": 16, "num_layers": 1,
                    "lr": 1e-2, "eval_every": 160, "epochs": 300}

    def __init__(self, batch_size: int = 16, seed: int = 0, train_size: int = 256, test_size: int = 256):
        rng = np.random.default_rng([seed, 97])
        self.batch_size, self.seed = batch_size, seed
        self.train_strings = [embedded_reber_string(rng) for _ in range(train_size)]
        self.test_strings = [embedded_reber_string(rng) for _ in range(test_size)]
        self.train_set, self.test_set = _reber_batch(self.train_strings), _reber_batch(self.test_strings)
        self.val = [self.test_set]

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None):
        """The task for `rnnkit train NAME` from a `DataConfig` (it generates its own data)."""
        refuse_data(options, cls.name)
        return cls(batch_size=options.batch_size, seed=seed)

    def batches(self, epoch: int):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_strings))
        for start in range(0, len(order), self.batch_size):
            yield _rows(self.train_set, order[start:start + self.batch_size])

    def num_batches(self) -> int:
        return -(-len(self.train_strings) // self.batch_size)

    def metrics(self, model) -> dict:
        """Share of training and test strings processed correctly; success when both are 1."""
        shares = {}
        for name, batch in (("train", self.train_set), ("test", self.test_set)):
            out = outputs(model, batch)
            right = ((sigmoid(out) > 0.5) == (batch.target > 0.5)).all(axis=2) | ~batch.mask
            shares[f"{name}_strings_correct"] = float(right.all(axis=1).mean())
        shares["success"] = float(shares["train_strings_correct"] == 1.0 and shares["test_strings_correct"] == 1.0)
        return shares

    def config(self) -> dict:
        return {"task": self.name, "batch_size": self.batch_size, "seed": self.seed, "seq_length": 0}


class AddingTask(GeneratedTask):
    name = "adding"
    success_metric = "success"
    data_options = ("seq_length", "batch_size")
    loss = "mse"
    loss_unit = "squared error"
    tokens = False
    stream = False
    baseline = 1.0 / 6.0
    cli_defaults = {"cell": "rnn", "seq_length": 20, "batch_size": 32, "hidden_size": 64, "num_layers": 1,
                    "lr": 1e-3, "eval_every": 1000, "epochs": 100}

    def __init__(self, seq_length: int = 50, batch_size: int = 32, batches_per_epoch: int = 100,
                 val_size: int = 1000, seed: int = 0, dtype=np.float32):
        if seq_length < 2:
            raise DataError(f"the adding problem needs --seq-length >= 2, got {seq_length}")
        self.seq_length, self.batch_size, self.batches_per_epoch = seq_length, batch_size, batches_per_epoch
        self.seed, self.dtype = seed, np.dtype(dtype)
        self.input_size, self.output_size = 2, 1
        self.check_fits(max(val_size, batch_size))
        self.val = [self._make(np.random.default_rng([seed, 10**6]), val_size)]

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None):
        """The task for `rnnkit train NAME` from a `DataConfig` (it generates its own data)."""
        refuse_data(options, cls.name)
        return cls(seq_length=options.seq_length, batch_size=options.batch_size, seed=seed, dtype=np.dtype(dtype))

    def _make(self, rng: np.random.Generator, n: int) -> Batch:
        steps = self.seq_length
        x = np.zeros((n, steps, 2), self.dtype)
        x[:, :, 0] = rng.random((n, steps))
        half = steps // 2
        first = rng.integers(0, half, n)
        second = rng.integers(half, steps, n)
        rows = np.arange(n)
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        target = np.zeros((n, steps, 1), self.dtype)
        target[:, -1, 0] = x[rows, first, 0] + x[rows, second, 0]
        mask = np.zeros((n, steps), bool)
        mask[:, -1] = True
        return Batch(x, target, mask)

    def metrics(self, model) -> dict:
        """Solved when the validation MSE is below 5% of the trivial baseline 1/6 (≈ 0.0083)."""
        batch = self.val[0]
        out = outputs(model, batch)
        mse = float(((out[:, -1, 0] - batch.target[:, -1, 0]) ** 2).mean())
        return {"success": float(mse < 0.05 * self.baseline)}

    def config(self) -> dict:
        return {"task": self.name, "seq_length": self.seq_length, "batch_size": self.batch_size,
                "batches_per_epoch": self.batches_per_epoch, "seed": self.seed}


class Adding1997Task(GeneratedTask):
    name = "adding1997"
    success_metric = "success"
    data_options = ("seq_length", "batch_size")
    loss = "mse"
    loss_unit = "squared error"
    tokens = False
    stream = False
    input_size, output_size = 2, 1
    cli_defaults = {"cell": "lstm", "seq_length": 100, "batch_size": 32, "hidden_size": 32, "num_layers": 1,
                    "lr": 3e-3, "eval_every": 500, "epochs": 60}

    def __init__(self, seq_length: int = 100, batch_size: int = 32, batches_per_epoch: int = 100,
                 val_size: int = 2560, seed: int = 0):
        if seq_length < 4:
            raise DataError(f"the adding problem (1997) needs --seq-length >= 4, got {seq_length}")
        self.seq_length, self.batch_size, self.batches_per_epoch, self.seed = seq_length, batch_size, \
            batches_per_epoch, seed
        self.check_fits(max(val_size, batch_size))
        self.val = [self._make(np.random.default_rng([seed, 10**6]), val_size)]
        # predicting the mean target 0.5 everywhere: MSE = Var(X1 + X2)/16 = (2/3)/16
        self.baseline = (2.0 / 3.0) / 16.0

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None):
        """The task for `rnnkit train NAME` from a `DataConfig` (it generates its own data)."""
        refuse_data(options, cls.name)
        return cls(seq_length=options.seq_length, batch_size=options.batch_size, seed=seed)

    def _make(self, rng, n) -> Batch:
        t_min = self.seq_length
        lengths = rng.integers(t_min, t_min + t_min // 10 + 1, n)
        steps = int(lengths.max())
        x = np.zeros((n, steps, 2), np.float32)
        x[:, :, 0] = rng.uniform(-1, 1, (n, steps))
        rows = np.arange(n)
        first = rng.integers(0, 10, n)
        second = np.array([rng.choice([i for i in range(t_min // 2 - 1) if i != f]) for f in first])
        x[rows, 0, 1] = -1.0
        x[rows, lengths - 1, 1] = -1.0
        x[rows, first, 1] = 1.0
        x[rows, second, 1] = 1.0
        x[rows[first == 0], 0, 0] = 0.0  # "in the rare case where the first pair gets marked, X1 = 0"
        total = x[rows, first, 0] + x[rows, second, 0]
        target = np.zeros((n, steps, 1), np.float32)
        target[rows, lengths - 1, 0] = 0.5 + total / 4.0
        mask = np.zeros((n, steps), bool)
        mask[rows, lengths - 1] = True
        return Batch(x, target, mask, lengths)

    def metrics(self, model) -> dict:
        batch = self.val[0]
        out = outputs(model, batch)
        rows = np.arange(len(batch.lengths))
        error = np.abs(out[rows, batch.lengths - 1, 0] - batch.target[rows, batch.lengths - 1, 0])
        share = float((error < 0.04).mean())
        return {"correct": share, "success": float(share == 1.0)}

    def config(self) -> dict:
        return {"task": self.name, "seq_length": self.seq_length, "batch_size": self.batch_size, "seed": self.seed}


class CopyTask(GeneratedTask):
    name = "copy"
    success_metric = "success"
    data_options = ("seq_length", "batch_size")
    loss = "ce"
    loss_unit = "nats/step"
    tokens = True
    stream = False
    input_size = output_size = 10  # 0 blank, 1-8 symbols, 9 delimiter
    cli_defaults = {"cell": "lstm", "seq_length": 50, "batch_size": 32, "hidden_size": 64, "num_layers": 1,
                    "lr": 3e-3, "eval_every": 500, "epochs": 40}

    def __init__(self, seq_length: int = 100, batch_size: int = 32, batches_per_epoch: int = 100,
                 val_size: int = 1000, seed: int = 0):
        if seq_length < 1:
            raise DataError(f"the copy task needs --seq-length >= 1 (the delay T), got {seq_length}")
        self.seq_length, self.batch_size, self.batches_per_epoch, self.seed = seq_length, batch_size, \
            batches_per_epoch, seed
        self.baseline = 10 * np.log(8) / (seq_length + 20)
        self.check_fits(max(val_size, batch_size))
        self.val = [self._make(np.random.default_rng([seed, 10**6]), val_size)]

    @classmethod
    def from_options(cls, options, seed: int, dtype: str, meta: dict | None = None):
        """The task for `rnnkit train NAME` from a `DataConfig` (it generates its own data)."""
        refuse_data(options, cls.name)
        return cls(seq_length=options.seq_length, batch_size=options.batch_size, seed=seed)

    def _make(self, rng, n) -> Batch:
        delay, steps = self.seq_length, self.seq_length + 20
        symbols = rng.integers(1, 9, (n, 10))
        x = np.zeros((n, steps), np.int64)
        x[:, :10] = symbols
        x[:, 10 + delay - 1] = 9
        target = np.zeros((n, steps), np.int64)
        target[:, -10:] = symbols
        return Batch(x, target, np.ones((n, steps), bool))

    def metrics(self, model) -> dict:
        batch = self.val[0]
        out = outputs(model, batch)
        recalled = float((out[:, -10:].argmax(axis=2) == batch.target[:, -10:]).mean())
        return {"recall_accuracy": recalled, "success": float(recalled > 0.99)}

    def config(self) -> dict:
        return {"task": self.name, "seq_length": self.seq_length, "batch_size": self.batch_size, "seed": self.seed}
