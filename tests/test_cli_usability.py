"""The commands as a new user meets them: diagnose on every task, export without onnx, translate's unknown
characters, no progress-bar stream into logs, a readable loss plot."""

import re
import sys

import numpy as np
import pytest

import rnnkit
from conftest import run_cli
from rnnkit.errors import DependencyError, ShapeError

run = run_cli
SMALL = ["--hidden-size", "8", "--eval-every", "2", "--no-progress"]


def trained(tmp_path, capsys, task: str, *extra: str):
    out = tmp_path / task
    code, stdout, err = run(["train", task, "--max-steps", "2", *SMALL, "--out", str(out), *extra], capsys)
    assert code == 0, err
    return out


@pytest.mark.parametrize("task", ["reber", "adding", "adding1997", "copy"])
def test_diagnose_runs_on_fresh_cells_of_every_task(task, tmp_path, capsys):
    out = tmp_path / "diag"
    code, stdout, err = run(["diagnose", "--cell", "rnn", "--cell", "lstm", "--task", task, "--seq-length", "20",
                             "--hidden-size", "8", "--out", str(out)], capsys)
    assert code == 0, err
    assert "lstm (initial)" in stdout and (out / "grad_norms.png").exists() and (out / "saturation.png").exists()
    assert "nan" not in stdout  # the signal at the loss is measured on steps some sequence reaches


@pytest.mark.parametrize("task", ["reber", "copy"])
def test_diagnose_runs_on_a_checkpoint_of_the_task(task, tmp_path, capsys):
    run_dir = trained(tmp_path, capsys, task)
    code, stdout, err = run(["diagnose", str(run_dir), "--out", str(tmp_path / "diag")], capsys)
    assert code == 0, err
    assert f"{task} (lstm)" in stdout


def test_a_failed_diagnose_leaves_no_empty_out_directory(tmp_path, capsys, monkeypatch):
    from rnnkit.training import diagnostics

    def broken(model, task, rows=64):
        raise ShapeError("something about the data")

    monkeypatch.setattr(diagnostics, "state_gradient_norms", broken)
    out = tmp_path / "diag"
    code, _, err = run(["diagnose", "--cell", "rnn", "--task", "adding", "--seq-length", "10", "--out", str(out)],
                       capsys)
    assert code == 2 and "something about the data" in err
    assert not out.exists()


def test_export_without_onnx_installed_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    run_dir = trained(tmp_path, capsys, "adding")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were not installed
    code, _, err = run(["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert code == 2
    assert err.strip().splitlines() == ["rnnkit: error: ONNX export needs the onnx package: pip install 'rnnkit[onnx]'"]
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ImportError, match="pip install") as info:
        rnnkit.export_onnx(rnnkit.LSTM(2, 3), tmp_path / "m.onnx")
    assert isinstance(info.value, DependencyError)


def test_translate_refuses_unknown_characters_as_sample_does(tmp_path, capsys):
    run_dir = trained(tmp_path, capsys, "seq2seq")
    code, stdout, err = run(["translate", str(run_dir), "12zz3"], capsys)
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == ["rnnkit: error: characters not in the model's source vocabulary: 'z'"]
    code, stdout, _ = run(["translate", str(run_dir), "123"], capsys)
    assert code == 0 and len(stdout.splitlines()) == 1


def test_training_writes_no_progress_bar_updates_when_stderr_is_not_a_terminal(tmp_path, capsys):
    code, stdout, err = run(["train", "adding", "--max-steps", "40", "--eval-every", "20", "--hidden-size", "8",
                             "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert "\r" not in err and "step/s" not in err and len(err) < 2000


def test_the_loss_plot_has_a_title_and_a_log_scale_when_losses_are_positive():
    from rnnkit.training.plotting import loss_figure

    records = [{"step": s, "train_loss": 3.0 / s} for s in range(1, 50)] + [{"step": 49, "val_loss": 0.1}]
    fig = loss_figure(records, baseline=0.5, title="run: loss per update step")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "run: loss per update step"
    records = [{"step": 1, "train_loss": -1.0}, {"step": 2, "train_loss": 0.5}]
    assert loss_figure(records).axes[0].get_yscale() == "linear"


def test_the_bundled_shakespeare_corpus_trains_a_character_model(tmp_path, capsys):
    from rnnkit.tasks.text import BUNDLED

    assert BUNDLED["shakespeare"].stat().st_size < 300_000
    out = tmp_path / "run"
    code, stdout, err = run(["train", "text", "--data", "shakespeare", "--cell", "lstm", "--hidden-size", "8",
                             "--num-layers", "1", "--seq-length", "20", "--batch-size", "4", "--max-steps", "2",
                             "--eval-every", "2", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    code, stdout, _ = run(["sample", str(out), "--prime", "ROMEO:", "--length", "20", "--seed", "0"], capsys)
    assert code == 0 and stdout.startswith("ROMEO:")
    code, _, err = run(["train", "text", "--out", str(tmp_path / "r2")], capsys)
    assert code == 2 and "--data shakespeare" in err


def small_trainer(rng, **config):
    from rnnkit.training import TrainConfig, Trainer
    from rnnkit.training.fit import ArrayTask, ModuleModel

    ids = rng.integers(0, 4, size=(8, 7))
    model = rnnkit.Sequential(rnnkit.OneHot(4), rnnkit.RNN(4, 5, return_state=False), rnnkit.Linear(5, 4))
    task = ArrayTask(ids[:, :-1], ids[:, 1:], batch_size=2)
    return Trainer(ModuleModel(model), task, TrainConfig(progress=False, **config), None)


def test_time_limit_on_a_resumed_run_means_that_many_more_seconds(rng):
    trainer = small_trainer(rng, epochs=5, time_limit=1000.0, max_steps=6)
    trainer.elapsed = 5000.0  # as restored from a checkpoint of a run that already trained 5000 s
    trainer.fit()
    assert trainer.updates == 6  # not stopped after one update by the earlier run's time


def test_eval_reports_loss_bits_per_character_and_perplexity_with_carried_or_fresh_state(tmp_path, capsys):
    import math

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 30, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run(["train", "text", "--data", str(corpus), "--hidden-size", "8", "--num-layers", "1",
                        "--seq-length", "10", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2",
                        "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    numbers = {}
    for mode in ([], ["--fresh-state"]):
        code, stdout, err = run(["eval", str(out), "--data", str(corpus), *mode], capsys)
        assert code == 0, err
        found = re.search(r"loss ([\d.]+) nats/char, ([\d.]+) bits/char, perplexity ([\d.]+)", stdout)
        loss, bits, ppl = (float(v) for v in found.groups())
        assert bits == pytest.approx(loss / math.log(2), abs=1e-3) and ppl == pytest.approx(math.exp(loss), rel=1e-3)
        numbers[bool(mode)] = loss
        assert ("zero state" in stdout) == bool(mode)
    assert numbers[True] != numbers[False]
    bad = tmp_path / "bad.txt"
    bad.write_text("to be or not to be? #", encoding="utf-8")
    code, _, err = run(["eval", str(out), "--data", str(bad)], capsys)
    assert code == 2 and err.startswith("rnnkit: error: characters not in the model's vocabulary")


def test_classify_prints_a_label_for_each_line_and_the_accuracy_of_labelled_lines(tmp_path, capsys):
    data = tmp_path / "reviews.txt"
    lines = [f"pos\tgood great fine {i}" if i % 2 else f"neg\tbad awful poor {i}" for i in range(40)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run(["train", "classify", "--data", str(data), "--hidden-size", "8", "--max-steps", "2",
                        "--eval-every", "2", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    code, stdout, err = run(["classify", str(out), "--input", str(data)], capsys)
    assert code == 0, err
    rows = [line.split("\t") for line in stdout.splitlines()]
    assert len(rows) == 40 and {label for label, _ in rows} <= {"pos", "neg"}
    assert [text for _, text in rows] == [line.split("\t")[1] for line in lines]
    assert re.match(r"accuracy [\d.]+ \(\d+ of 40\)", err.strip())
    unlabelled = tmp_path / "new.txt"
    unlabelled.write_text("good great\nbad awful\n", encoding="utf-8")
    code, stdout, err = run(["classify", str(out), "--input", str(unlabelled)], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2 and "accuracy" not in err


@pytest.mark.parametrize("reset_state", ["epoch", "never"])
def test_epochwise_training_starts_each_epoch_afresh_and_continuous_training_never(reset_state, tmp_path):
    """Which windows start from a zero state: the first of each epoch (epochwise) or only the very first one."""
    from rnnkit.models.sequence import ModelConfig, SequenceModel
    from rnnkit.tasks.text import TextTask
    from rnnkit.training import TrainConfig, Trainer

    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefgh " * 60, encoding="utf-8")
    task = TextTask(corpus, seq_length=10, batch_size=4)
    model = SequenceModel(ModelConfig.for_task(task, cell="gru", hidden_size=6), rng=0)
    fresh, original = [], model.train_batch

    def recording(batch, window=None, state=None):
        fresh.append(state is None)
        return original(batch, window, state)

    model.train_batch = recording
    trainer = Trainer(model, task, TrainConfig(epochs=3, reset_state=reset_state, progress=False), None)
    trainer.fit()
    per_epoch = len(fresh) // 3
    assert per_epoch > 1 and len(fresh) == 3 * per_epoch
    expected = [0, per_epoch, 2 * per_epoch] if reset_state == "epoch" else [0]
    assert [i for i, f in enumerate(fresh) if f] == expected


def test_continuous_training_is_refused_for_tasks_of_independent_sequences(rng):
    with pytest.raises(ValueError, match="stream tasks"):
        small_trainer(rng, reset_state="never")


def test_experiment_appends_each_run_as_it_finishes_and_labels_rows_without_t_0(tmp_path):
    import json

    from rnnkit.training.experiments import run_experiment

    out, logged = tmp_path / "exp", []

    def log(line):  # called after each run: its result and the table are already on disk
        logged.append(line)
        records = (out / "results.jsonl").read_text().splitlines()[1:]  # after the header line
        assert len(records) == len(logged) and json.loads(records[-1])["cell"] in ("rnn", "gru")
        assert f"| {json.loads(records[-1])['cell']} |" in (out / "reber.md").read_text()

    rows = run_experiment("reber", out, seeds=1, cells=("rnn", "gru"), time_budget=1.0, jobs=1, log=log)
    assert len(logged) == 2 and len(rows) == 2
    assert not any("T=0" in line for line in logged)
    assert (out / "reber.png").exists() and (out / "reber.json").exists()


def test_experiment_uses_all_cores_by_default():
    from rnnkit.cli.study import experiment

    (jobs,) = [p for p in experiment.params if p.name == "jobs"]
    assert jobs.default is None and "all cores" in jobs.help


def test_help_names_the_task_argument_without_breaking_words_and_bench_takes_trains_flag_names(capsys):
    code, stdout, _ = run(["train", "--help"], capsys)
    assert code == 0 and "Usage: rnnkit train [OPTIONS] [TASK]" in stdout
    assert "'reber' (the embedded Reber grammar, default)" in " ".join(stdout.split())
    code, stdout, _ = run(["bench", "--help"], capsys)
    flat = " ".join(stdout.split())
    assert code == 0 and "--cell" in flat and "--batch-size" in flat and "--hidden-size" in flat
    assert "'ratio' = torch ms / rnnkit ms" in flat and "'ceil %'" in flat
    from rnnkit.cli.check import bench

    ctx = bench.make_context("bench", ["--cell", "lstm", "--batch-size", "2", "--hidden-size", "8"])
    assert (ctx.params["cells"], ctx.params["batches"], ctx.params["hiddens"]) == ("lstm", "2", "8")


def test_diagnose_counts_gate_saturation_only_at_the_valid_steps_of_ragged_sequences(tmp_path):
    """A fresh LSTM's gates sit near 0.5; the zeros past each Reber string's end must not count as saturated."""
    from rnnkit.models.sequence import ModelConfig, SequenceModel
    from rnnkit.tasks.memory import ReberTask
    from rnnkit.training.diagnostics import diagnose

    task = ReberTask(seed=0)
    model = SequenceModel(ModelConfig.for_task(task, cell="lstm", hidden_size=8, forget_bias=1.0), rng=0, loss="bce")
    summary = diagnose({"lstm": model}, task, tmp_path / "d")
    assert max(summary["lstm"]["saturation"].values()) < 0.05
    assert np.isfinite(summary["lstm"]["grad_norm_last_step"])
