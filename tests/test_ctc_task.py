"""The `ctc` task and the `Transcriber`: generated frames, the label error rate, gradients, and `rnnkit train ctc`."""

import json

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, run_cli
from rnnkit.ctc import ctc_loss
from rnnkit.errors import ConfigError
from rnnkit.gradcheck import gradcheck
from rnnkit.models.transcriber import Transcriber, TranscriberConfig
from rnnkit.tasks.ctc import FrameTranscriptionTask, edit_distance, label_errors
from rnnkit.training.checkpoint import load_model


@pytest.fixture(scope="module")
def task():
    return FrameTranscriptionTask(batch_size=8, batches_per_epoch=3, val_size=40)


def test_every_generated_sequence_has_enough_frames_for_its_labels(task):
    """T_b ≥ S_b + repeated neighbours, so no CTC loss is infinite; labels are 1..K, padding 0, blank never."""
    for batch in [*task.batches(0), *task.val]:
        repeats = ((batch.target[:, 1:] == batch.target[:, :-1]) & (batch.target[:, 1:] > 0)).sum(axis=1)
        assert (batch.lengths >= batch.target_lengths + repeats).all()
        inside = np.arange(batch.target.shape[1]) < batch.target_lengths[:, None]
        assert (batch.target[inside] >= 1).all() and (batch.target[inside] <= task.num_symbols).all()
        assert (batch.target[~inside] == 0).all() and batch.x.shape[2] == task.features
        losses = ctc_loss(np.log(np.full((batch.x.shape[1], len(batch.x), task.output_size), 0.1)), batch.target,
                          batch.lengths, batch.target_lengths, reduction="none")
        assert np.isfinite(losses).all()


def test_the_same_seed_and_epoch_give_the_same_batches_and_other_epochs_differ(task):
    again = FrameTranscriptionTask(batch_size=8, batches_per_epoch=3, val_size=40)
    first, repeat, other = next(task.batches(0)), next(again.batches(0)), next(task.batches(1))
    np.testing.assert_array_equal(first.x, repeat.x)
    np.testing.assert_array_equal(first.target, repeat.target)
    assert first.x.shape != other.x.shape or not np.array_equal(first.x, other.x)


def test_edit_distance_counts_insertions_deletions_and_substitutions():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 3], [1, 2, 3]) == 1
    assert edit_distance([1, 2, 2, 3], [1, 2, 3]) == 1
    assert edit_distance([3, 2, 1], [1, 2, 3]) == 2
    assert edit_distance([], [4, 4]) == 2


def test_label_errors_sum_edit_distances_over_true_labels(task):
    batch = task.val[0]
    truths = [batch.target[b, :n] for b, n in enumerate(batch.target_lengths)]
    assert label_errors(truths, batch) == (0, int(batch.target_lengths.sum()), len(truths))
    assert label_errors([t[1:] for t in truths], batch)[0] == len(truths)


def test_transcriber_backward_passes_gradcheck_for_frames_and_every_parameter(task):
    batch = task.val[0]
    config = TranscriberConfig(task.input_size, task.output_size, hidden_size=3, dtype="float64")
    model = Transcriber(config, rng=0)
    frames, lengths = batch.x[:3, :7].astype(np.float64), np.minimum(batch.lengths[:3], 7)
    lengths[0] = 7

    def log_probs(x):
        return model.forward(x, lengths)

    assert gradcheck(log_probs, frames, backward=model.backward, params=model) < GRADCHECK_TOL


def test_transcriber_parameter_count_is_that_of_the_built_model(task):
    for cell, layers in (("lstm", 1), ("gru", 2)):
        config = TranscriberConfig.for_task(task, cell=cell, hidden_size=5, num_layers=layers)
        assert config.parameter_count() == Transcriber(config, rng=0).num_parameters()


def test_train_ctc_on_the_command_line_learns_then_resumes_and_transcribes(tmp_path, capsys):
    out = tmp_path / "ctc"
    args = ["train", "ctc", "--hidden-size", "24", "--batch-size", "16", "--lr", "1e-2", "--eval-every", "40",
            "--out", str(out), "--no-progress"]
    code, stdout, err = run_cli([*args, "--max-steps", "80"], capsys)
    assert code == 0, err
    first = float(stdout.split("label_error_rate ")[1].split(",")[0])
    assert first < 0.6  # far below an untrained model's rate (above 1: it inserts labels everywhere)
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["kind"] == "transcriber" and meta["task"]["task"] == "ctc" and meta["symbols"][0] == "<blank>"
    code, stdout, err = run_cli([*args, "--max-steps", "120", "--resume"], capsys)
    assert code == 0 and "120 updates" in stdout, err
    _, model = load_model(out, "transcriber")
    batch = FrameTranscriptionTask(val_size=8).val[0]
    greedy, beam = model.transcribe(batch.x, batch.lengths), model.transcribe(batch.x, batch.lengths, beam_width=4)
    assert len(greedy) == len(beam) == 8 and all(b.dtype == np.int64 for b in beam)
    code, stdout, err = run_cli(["transcribe", str(out), "--count", "5", "--beam-width", "3"], capsys)
    assert code == 0 and len(stdout.splitlines()) == 5 and "label error rate" in err, err
    for line in stdout.splitlines():  # 'true<TAB>decoded' symbol strings
        truth, tab, decoded = line.partition("\t")
        assert tab and truth and set(truth + decoded) <= set("".join(meta["symbols"][1:]))


@pytest.mark.parametrize("flags, words", [(["--data", "x.txt"], "--data"),
                                          (["--embedding-size", "4"], "not a setting of task 'ctc'"),
                                          (["--cell", "jordan"], "recurrent encoder cell")])
def test_train_ctc_refuses_data_files_and_settings_of_other_models(tmp_path, capsys, flags, words):
    code, _, err = run_cli(["train", "ctc", *flags, "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_a_transcriber_config_whose_symbols_do_not_name_its_classes_is_refused():
    with pytest.raises(ConfigError, match="symbols must name its 4 classes"):
        TranscriberConfig(5, 4, symbols=["<blank>", "a", "b"])


def test_a_checkpoint_describes_a_ctc_task_by_the_rules_the_task_itself_checks(task):
    from rnnkit.errors import CheckpointError
    from rnnkit.models.registry import _check_task

    stored = task.config()
    assert stored["max_symbols"] > stored["max_frames"]  # frames are per symbol: the defaults describe a valid task
    _check_task(dict(stored))
    for name, value, words in [("min_frames", stored["max_frames"] + 1, "min_frames <= max_frames"),
                               ("max_silence", 0, "max_silence >= 1"),
                               ("max_symbols", 10**9, "do not fit in this machine's memory")]:
        with pytest.raises(CheckpointError, match=words):
            _check_task({**stored, name: value})
