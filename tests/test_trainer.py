"""The trainer: truncated-BPTT windows, learning, exact resume, and the non-finite guard."""

import dataclasses
import json
import signal
import time

import numpy as np
import pytest

from rnnkit.errors import TrainingInterrupted
from rnnkit.models.sequence import ModelConfig, SequenceModel
from rnnkit.tasks import AddingTask, TextTask
from rnnkit.training import plotting
from rnnkit.training.trainer import TrainConfig, Trainer, TrainingError, tbptt_windows


def test_windows_full_bptt_and_chunks():
    assert tbptt_windows(8, 0, 0) == [(0, 8, 0)]
    assert tbptt_windows(7, 3, 3) == [(0, 3, 0), (3, 6, 3), (6, 7, 6)]
    assert tbptt_windows(7, 3, 5) == [(0, 3, 0), (1, 6, 3), (4, 7, 6)]


def test_windows_k2_greater_than_k1_backpropagate_further_than_they_update():
    # every 2 steps an update; the gradient of the 2 newest losses flows back 4 steps
    assert tbptt_windows(8, 2, 4) == [(0, 2, 0), (0, 4, 2), (2, 6, 4), (4, 8, 6)]


def test_config_rejects_k2_below_k1_and_bad_settings():
    with pytest.raises(ValueError, match="k2"):
        TrainConfig(k1=4, k2=2)
    with pytest.raises(ValueError, match="learning rate"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")


def small_text(tmp_path, n=3000):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. "]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(words, n // 3)), encoding="utf-8")
    return path


def make_trainer(tmp_path, run, max_steps, k1=10, k2=0, seed=0, dropout=0.2):
    task = TextTask(small_text(tmp_path), seq_length=10, batch_size=4)
    config = ModelConfig(input_size=task.input_size, output_size=task.output_size, tokens=True, hidden_size=16,
                         num_layers=2, dropout=dropout)
    model = SequenceModel(config, rng=np.random.default_rng(seed))
    train = TrainConfig(lr=1e-2, epochs=3, max_steps=max_steps, k1=k1, k2=k2, eval_every=5, log_every=1,
                        progress=False)
    return Trainer(model, task, train, tmp_path / run)


def test_text_model_learns_with_truncated_bptt(tmp_path):
    trainer = make_trainer(tmp_path, "run", max_steps=60, k1=5, k2=10)
    history = trainer.fit()
    val = [r["val_loss"] for r in history if "val_loss" in r]
    assert val[-1] < val[0] - 0.3
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()


def slow_drawings(monkeypatch, seconds: float) -> list[int]:
    """Make each drawing of loss.png take ``seconds`` more; the list gets the validations each drawing showed."""
    shown, draw = [], plotting.plot_losses

    def slow(metrics_path, png_path, **kwargs):
        time.sleep(seconds)
        shown.append(sum("val_loss" in line for line in open(metrics_path, encoding="utf-8")))
        return draw(metrics_path, png_path, **kwargs)

    monkeypatch.setattr(plotting, "plot_losses", slow)
    return shown


def test_loss_png_is_redrawn_at_validations_only_when_due_and_shows_every_one_when_training_ends(tmp_path,
                                                                                                 monkeypatch):
    shown = slow_drawings(monkeypatch, 0.2)  # a drawing of 0.2 s and more: the next is due 3.8 s after it
    history = make_trainer(tmp_path, "run", max_steps=60).fit()
    validations = sum("val_loss" in r for r in history)
    assert validations == 12 and shown[0] == 1 and shown[-1] == validations
    assert len(shown) < validations  # the 60 updates take far less than 3.8 s: the drawings between were skipped


def stop_by_signal(trainer):
    trainer.stop_signal = signal.SIGTERM


def stop_by_infinite_bias(trainer):
    trainer.model.head.bias.data[0] = np.inf  # the next update's loss is not finite


@pytest.mark.parametrize(("stop", "error", "message"), [
    (stop_by_signal, TrainingInterrupted, "stopped by SIGTERM after step 21"),
    (stop_by_infinite_bias, TrainingError, "non-finite loss .* at step 21")])
def test_a_run_stopped_by_a_signal_or_an_error_leaves_loss_png_with_its_last_validation(tmp_path, monkeypatch, stop,
                                                                                      error, message):
    shown = slow_drawings(monkeypatch, 0.2)
    trainer = make_trainer(tmp_path, "run", max_steps=60)
    trainer.stop_when = lambda metrics: trainer.updates == 20 and stop(trainer)  # at the fourth validation
    with pytest.raises(error, match=message):
        trainer.fit()
    assert shown == [1, 4]  # the first validation's drawing, then one with the fourth (step 20) as the run stopped


def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path, "straight", max_steps=12)
    straight.fit()
    first = make_trainer(tmp_path, "resumed", max_steps=7)
    first.fit()
    from rnnkit.training import checkpoint

    second = make_trainer(tmp_path, "resumed", max_steps=12, seed=99)  # different init: all must come from disk
    second.restore(*checkpoint.load(tmp_path / "resumed"))
    second.fit()

    def losses(run):  # every training loss, and the scheduled validations (the stop at step 7 adds one)
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in map(json.loads, lines)
                if "train_loss" in r or r["step"] % 5 == 0]

    assert losses("straight") == losses("resumed")
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(value, second.model.state_dict()[name])


def test_adding_task_beats_the_baseline(tmp_path):
    task = AddingTask(seq_length=10, batch_size=32, batches_per_epoch=100, val_size=200)
    config = ModelConfig(input_size=2, output_size=1, hidden_size=32)
    trainer = Trainer(SequenceModel(config, rng=np.random.default_rng(0)), task,
                      TrainConfig(lr=3e-3, epochs=15, eval_every=1500, progress=False), tmp_path / "adding")
    trainer.fit()
    assert trainer.evaluate()["val_loss"] < task.baseline / 5


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, "nan", max_steps=10)
    trainer.fit()
    saved = (tmp_path / "nan" / "checkpoint" / "model.safetensors").read_bytes()
    trainer.config.max_steps = 20
    trainer.model.head.bias.data[0] = np.inf
    with pytest.raises(TrainingError, match="non-finite loss .* at step 11"):
        trainer.fit()
    assert (tmp_path / "nan" / "checkpoint" / "model.safetensors").read_bytes() == saved


def test_an_update_that_makes_a_parameter_infinite_stops_naming_the_step_and_the_parameter(tmp_path):
    trainer = make_trainer(tmp_path, "huge", max_steps=10)
    trainer.fit()
    saved = (tmp_path / "huge" / "checkpoint" / "model.safetensors").read_bytes()
    trainer.config.max_steps = 12
    trainer.learning_rate = lambda epoch: 1e308  # the loop sets the optimizer's rate from this each epoch
    with pytest.raises(TrainingError, match=r"^non-finite parameter [\w.]+ after the update at step 11 "):
        trainer.fit()
    assert (tmp_path / "huge" / "checkpoint" / "model.safetensors").read_bytes() == saved


def test_train_with_a_learning_rate_of_1e308_stops_with_the_trainer_message_not_a_layer_input_error(tmp_path,
                                                                                                   capsys):
    from conftest import run_cli

    code, _, err = run_cli(["train", "reber", "--lr", "1e308", "--max-steps", "5", "--out", str(tmp_path / "r")],
                           capsys)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("rnnkit: error: non-finite parameter ") and "at step 1 " in line
    assert "Linear input" not in err


def test_skip_nonfinite_skips_the_bad_update_and_continues(tmp_path):
    trainer = make_trainer(tmp_path, "skip", max_steps=12)
    trainer.config.skip_nonfinite = True
    real_forward, calls = trainer.model.objective.forward, {"n": 0}

    def flaky(*args, **kwargs):  # the 5th update's loss is NaN
        calls["n"] += 1
        value = real_forward(*args, **kwargs)
        return float("nan") if calls["n"] == 5 else value

    trainer.model.objective.forward = flaky
    before = {n: v.copy() for n, v in trainer.model.state_dict().items()}
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_update"] for r in records if "skipped_update" in r] == ["non-finite loss (nan)"]
    assert trainer.updates == 12 and all(np.isfinite(r.get("train_loss", 0.0)) for r in records)
    assert any(not np.array_equal(before[n], v) for n, v in trainer.model.state_dict().items())
    assert all(m.pending_backwards == 0 for m in trainer.model.modules())  # the skipped forward was discarded


def test_the_trainer_does_not_change_its_config(tmp_path):
    """The text task trains in windows of --seq-length when k1 is 0; the trainer derives that, the config stays."""
    config = TrainConfig(lr=1e-2, epochs=1, max_steps=3, eval_every=3, progress=False)
    before = dataclasses.asdict(config)
    task = TextTask(small_text(tmp_path), seq_length=10, batch_size=4)
    model = SequenceModel(ModelConfig(task.input_size, task.output_size, tokens=True, hidden_size=8), rng=0)
    trainer = Trainer(model, task, config, tmp_path / "run")
    trainer.fit()
    assert dataclasses.asdict(config) == before and config.k1 == 0
    assert trainer.k1 == 10 and trainer.updates == 3


def test_a_sequence_model_trains_through_the_same_protocol_as_the_others(tmp_path):
    from rnnkit.models import TrainableModel

    task = AddingTask(seq_length=6, batch_size=4, batches_per_epoch=2, val_size=8)
    model = SequenceModel(ModelConfig(2, 1, hidden_size=4), rng=0, loss=task.loss)
    assert isinstance(model, TrainableModel)
    batch = next(task.batches(0))
    model.zero_grad()
    loss = model.train_batch(batch)
    assert np.isfinite(loss) and model.pending_backwards == 0
    assert any(np.abs(p.grad).sum() > 0 for p in model.parameters())
    assert set(model.evaluate(task)) == {"val_loss"}


def test_char_rnn_learning_rate_decay_schedule(tmp_path):
    trainer = make_trainer(tmp_path, "decay", max_steps=0)
    trainer.config.lr_decay, trainer.config.lr_decay_after = 0.5, 2
    assert [trainer.learning_rate(e) for e in range(4)] == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3])
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=0.0)
