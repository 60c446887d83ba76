"""Training from Python: the README's snippets as printed, `rnnkit.fit` / `predict` / `evaluate`, and recurrent
layers inside `Sequential`."""

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rnnkit
from rnnkit import GRU, LSTM, RNN, Embedding, Linear, OneHot, Sequential
from rnnkit.errors import ConfigError
from rnnkit.models.sequence import ModelConfig, SequenceModel
from rnnkit.training.fit import ArrayTask

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    """The README's Python blocks, dedented (a block inside a list item is indented with it)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^ *```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def fit_example() -> str:
    (block,) = [b for b in readme_python_blocks() if "rnnkit.fit(" in b]
    return block


def test_the_readme_fit_example_takes_at_most_15_lines_and_learns(capsys):
    code = fit_example()
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 15
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    history = namespace["history"]
    final = history[-1]
    assert final["epoch"] == 14 and final["step"] == 75
    first_train = next(r["train_loss"] for r in history if "train_loss" in r)
    assert final["val_loss"] < 0.5 * first_train, "the LSTM learns the repeated sentence"
    assert namespace["predicted"].shape == (40,)
    assert "'val_loss'" in capsys.readouterr().out


def test_the_readme_hand_written_loop_runs_as_printed_after_the_fit_example():
    (loop,) = [b for b in readme_python_blocks() if "loss_fn.backward()" in b]
    namespace = {}
    exec(compile(fit_example().replace("epochs=15", "epochs=1"), "README.md", "exec"), namespace)
    before = rnnkit.evaluate(namespace["model"], namespace["x"], namespace["y"])["loss"]
    exec(compile(loop, "README.md", "exec"), namespace)
    assert rnnkit.evaluate(namespace["model"], namespace["x"], namespace["y"])["loss"] < before


def test_every_readme_python_snippet_runs_as_printed_in_order():
    namespace = {}
    for block in readme_python_blocks():
        if "to_torch" in block:
            pytest.importorskip("torch")
        exec(compile(block, "README.md", "exec"), namespace)


def char_data(rng, n=12, steps=10, vocab=5):
    ids = rng.integers(0, vocab, size=(n, steps + 1))
    return ids[:, :-1], ids[:, 1:]


def test_fit_writes_nothing_without_a_run_directory(tmp_path, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    x, y = char_data(rng)
    model = Sequential(Embedding(5, 4, rng=0), GRU(4, 6, return_state=False, rng=1), Linear(6, 5, rng=2))
    history = rnnkit.fit(model, x, y, val=(x, y), epochs=2, batch_size=4, progress=False)
    assert [r["step"] for r in history if "val_loss" in r] == [3, 6]
    assert list(tmp_path.iterdir()) == []


def test_fit_with_a_run_directory_writes_metrics_and_a_checkpoint_and_never_overwrites_it(tmp_path, rng):
    x, y = char_data(rng)
    model = Sequential(Embedding(5, 4, rng=0), LSTM(4, 6, return_state=False, rng=1), Linear(6, 5, rng=2))
    rnnkit.fit(model, x, y, epochs=1, batch_size=4, progress=False, run_dir=tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3
    from rnnkit.training.checkpoint import load

    _, weights, _, _ = load(tmp_path / "run")
    fresh = Sequential(Embedding(5, 4), LSTM(4, 6, return_state=False), Linear(6, 5))
    fresh.load_state_dict(weights)
    np.testing.assert_array_equal(rnnkit.predict(fresh, x), rnnkit.predict(model, x))
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        rnnkit.fit(model, x, y, epochs=1, progress=False, run_dir=tmp_path / "run")


def test_truncated_bptt_through_a_sequential_equals_the_sequence_model_on_the_same_data(rng):
    """The carried state of the recurrent layer inside Sequential follows the trainer's windows exactly as the
    built-in SequenceModel's does (k1 = 3, k2 = 5 over 10 steps)."""
    x, y = char_data(rng)
    reference = SequenceModel(ModelConfig(5, 5, tokens=True, cell="rnn", hidden_size=6, dtype="float64"), rng=0)
    model = Sequential(OneHot(5, dtype=np.float64), RNN(5, 6, return_state=False, dtype=np.float64),
                       Linear(6, 5, dtype=np.float64))
    model.load_state_dict({"1." + k[4:] if k.startswith("rnn.") else "2." + k[5:]: v
                           for k, v in reference.state_dict().items()})
    for m in (reference, model):
        rnnkit.fit(m, x, y, epochs=2, batch_size=4, k1=3, k2=5, progress=False)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-10, atol=1e-12, err_msg=name)


def test_fit_takes_ragged_batches_with_lengths_and_many_to_one_targets(rng):
    x = rng.normal(size=(16, 7, 3))
    lengths = rng.integers(1, 8, size=16)
    y = (x[np.arange(16), lengths - 1, 0] > 0).astype(np.int64)  # the sign of the last valid step

    class LastStep(rnnkit.Module):
        """Logits from the last layer's final hidden state: a many-to-one model in a dozen lines."""

        def __init__(self):
            super().__init__()
            self.rnn, self.head = GRU(3, 8, rng=0), Linear(8, 2, rng=1)

        def forward(self, x, lengths=None):
            _, h = self.rnn.forward(x, lengths=lengths)
            return self.head.forward(h[-1])

        def backward(self, dlogits):
            dh = self.head.backward(dlogits)
            return self.rnn.backward(None, dh[None])[0]

    model = LastStep()
    history = rnnkit.fit(model, x, y, lengths=lengths, val=(x, y, lengths), epochs=30, batch_size=8, lr=2e-2,
                         progress=False)
    assert history[-1]["accuracy"] > 0.9
    assert rnnkit.predict(model, x, lengths).shape == (16, 2)


def test_fit_shows_a_progress_bar_only_on_a_terminal(rng, capsys, monkeypatch):
    x, y = char_data(rng)
    model = Sequential(Embedding(5, 4, rng=0), RNN(4, 6, return_state=False, rng=1), Linear(6, 5, rng=2))
    rnnkit.fit(model, x, y, val=(x, y), epochs=3, batch_size=2)
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out and "step/s" not in captured.err
    # progress output (the bar and the lines above it) is on standard error: one validation line per epoch there,
    # nothing else; standard output is left to the caller
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 3 and all(re.match(r"step \d+: val_loss ", line) for line in lines)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rnnkit.fit(model, x, y, val=(x, y), epochs=1, batch_size=2)
    captured = capsys.readouterr()
    assert "\r" in captured.err and "step/s" in captured.err and captured.out == ""  # a bar, drawn and cleared


def test_predict_and_evaluate_save_nothing_and_agree_with_the_loss(rng):
    x, y = char_data(rng)
    model = Sequential(Embedding(5, 4, rng=0), LSTM(4, 6, return_state=False, rng=1), Linear(6, 5, rng=2))
    logits = rnnkit.predict(model, x, batch_size=5)
    assert sum(m.pending_backwards for m in model.modules()) == 0
    np.testing.assert_allclose(logits, rnnkit.predict(model, x), rtol=1e-6)
    scores = rnnkit.evaluate(model, x, y, batch_size=5)
    assert scores["loss"] == pytest.approx(rnnkit.CrossEntropyLoss()(logits, y), rel=1e-5)
    assert scores["accuracy"] == pytest.approx((logits.argmax(-1) == y).mean())


def test_a_recurrent_layer_that_returns_its_state_is_refused_by_sequential_with_the_fix_named():
    with pytest.raises(ConfigError, match="return_state=False"):
        Sequential(Embedding(5, 4), LSTM(4, 6), Linear(6, 5))


def test_sequential_passes_lengths_to_its_recurrent_layers(rng):
    x, lengths = rng.normal(size=(3, 6, 2)), np.array([6, 2, 4])
    lstm = LSTM(2, 4, return_state=False, dtype=np.float64, rng=0)
    model = Sequential(Linear(2, 2, dtype=np.float64, rng=1), lstm)
    direct = lstm.forward(model[0].forward(x), lengths=lengths)
    np.testing.assert_array_equal(model.forward(x, lengths=lengths), direct)
    assert np.all(direct[1, 2:] == 0)


def test_array_task_checks_its_arrays_with_one_line_errors():
    with pytest.raises(ValueError, match="rows"):
        ArrayTask(np.zeros((3, 4), np.int64), np.zeros((2, 4), np.int64))
    with pytest.raises(ConfigError, match="batch_size"):
        ArrayTask(np.zeros((3, 4), np.int64), np.zeros((3, 4), np.int64), batch_size=0)
    with pytest.raises(ConfigError, match="loss must be one of"):
        rnnkit.fit(Linear(2, 2), np.zeros((3, 4, 2)), np.zeros((3, 4), np.int64), loss="hinge")


def test_recurrent_layers_inside_sequential_pass_gradcheck_with_and_without_lengths(rng):
    model = Sequential(Linear(3, 4, rng=0), rnnkit.Tanh(), LSTM(4, 5, return_state=False, rng=1),
                       GRU(5, 3, bidirectional=True, return_state=False, rng=2), Linear(6, 2, rng=3))
    x = rng.normal(size=(2, 4, 3))
    assert rnnkit.gradcheck(model, x) < 1e-6
    assert rnnkit.gradcheck(model, x, lengths=np.array([4, 2])) < 1e-6


def test_a_float32_model_converted_to_float64_converts_its_one_hot_encoder_too():
    model = SequenceModel(ModelConfig(5, 5, tokens=True, cell="lstm", hidden_size=4), rng=0).to(np.float64)
    out, _ = model.forward(np.array([[1, 2, 3]]))
    assert model.encoder.dtype == np.float64 and out.dtype == np.float64


def test_a_checkpoint_in_the_middle_of_truncated_bptt_windows_keeps_the_carried_state(tmp_path, rng):
    x, y = char_data(rng)
    model = Sequential(Embedding(5, 4, rng=0), LSTM(4, 6, return_state=False, rng=1), GRU(6, 3, return_state=False,
                                                                                          rng=2), Linear(3, 5, rng=3))
    rnnkit.fit(model, x, y, epochs=1, batch_size=4, k1=3, max_steps=2, progress=False, run_dir=tmp_path / "run")
    from rnnkit.training.checkpoint import load

    _, _, _, carry = load(tmp_path / "run")
    assert sorted(carry) == ["state0", "state1", "state2"]  # the LSTM's (h, c) and the GRU's h after 2 windows
    assert carry["state0"].shape == (1, 4, 6) and carry["state2"].shape == (1, 4, 3)


def test_fit_and_evaluate_take_one_unbatched_sequence_as_a_batch_of_one(rng):
    ids = rng.integers(0, 5, size=11)

    def make():
        return Sequential(Embedding(5, 4, rng=0), GRU(4, 6, return_state=False, rng=1), Linear(6, 5, rng=2))

    one, batched = make(), make()
    rnnkit.fit(one, ids[:-1], ids[1:], epochs=3, progress=False)
    rnnkit.fit(batched, ids[None, :-1], ids[None, 1:], epochs=3, progress=False)
    for (name, p), q in zip(one.named_parameters(), batched.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert rnnkit.evaluate(one, ids[:-1], ids[1:]) == rnnkit.evaluate(batched, ids[None, :-1], ids[None, 1:])
