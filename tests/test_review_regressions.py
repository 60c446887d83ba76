"""Regressions from a review of this round's code: each test reproduces a defect the review confirmed (a raw
exception on user input, a wrong default, a file overwritten, a test passed by exiting) and asserts the fix."""

import json

import numpy as np
import pytest

from conftest import run_cli
from rnnkit.errors import ConfigError, DataError, ShapeError


def test_switching_a_regularised_min_layer_to_the_scan_is_a_config_error_not_a_type_error():
    from rnnkit.recurrent import MinGRU

    layer = MinGRU(3, 4)
    layer.regularize(zoneout=0.2)
    with pytest.raises(ConfigError, match="mode='scan'"):
        layer.mode = "scan"
    assert layer.mode == "sequential" and layer.forward(np.ones((2, 5, 3)))[0].shape == (2, 5, 4)


def test_ctc_refuses_ragged_nested_lists_and_a_non_bool_zero_infinity_in_one_line():
    from rnnkit.activations import log_softmax
    from rnnkit.ctc import ctc_loss

    lp = log_softmax(np.random.default_rng(0).normal(size=(4, 2, 3)))
    with pytest.raises(ShapeError, match="targets must be a rectangular array"):
        ctc_loss(lp, [[1, 2], [1]], [4, 4], [2, 1])
    with pytest.raises(ShapeError, match="input_lengths must be a rectangular array"):
        ctc_loss(lp, [[1, 2], [1, 1]], [[2], [2, 1]], [2, 1])
    with pytest.raises(ConfigError, match="zero_infinity must be True or False, got str 'no'"):
        ctc_loss(lp[:, :1], [[1, 1, 1]], [2], [3], zero_infinity="no")


def test_grading_a_function_that_exits_fails_the_exercise_instead_of_passing_silently():
    from rnnkit import teaching

    exiting = "# %% tags=[\"exercise\"]\ndef linear_backward(dy, x, weight):\n    raise SystemExit(0)\n"
    (result,) = [g for g in teaching.grade(exiting) if g.name == "linear_backward"]
    assert not result.passed and "SystemExit" in result.message
    at_top = "# %% tags=[\"exercise\"]\nimport sys\nsys.exit(0)\ndef linear_backward(dy, x, weight):\n    pass\n"
    assert not any(g.passed for g in teaching.grade(at_top) if g.name == "linear_backward")


@pytest.mark.parametrize("objective, direction", [("val_loss", "minimize"), ("label_error_rate", "minimize"),
                                                  ("val_accuracy", "maximize"), ("success", "maximize")])
def test_a_search_objective_implies_its_direction_only_when_its_name_says_so(objective, direction):
    from rnnkit.cli.search import objective_direction

    assert objective_direction(objective, None) == direction
    assert objective_direction(objective, "maximize") == "maximize"


def test_a_search_objective_whose_name_is_silent_needs_a_direction_and_a_misspelt_one_is_refused_first(
        tmp_path, capsys):
    pytest.importorskip("optuna")
    from rnnkit.cli.search import objective_direction

    with pytest.raises(ConfigError, match="add --direction minimize or --direction maximize"):
        objective_direction("sequence_score", None)
    code, _, err = run_cli(["search", "reber", "--trials", "1", "--space", "lr=log(1e-3,1e-2)", "--objective",
                            "val_los", "--jobs", "1", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'val_los' is not a validation metric" in err, err
    assert not (tmp_path / "s").exists()  # refused before the study recorded anything


def test_a_search_never_overwrites_a_search_md_that_it_did_not_write(tmp_path, capsys):
    pytest.importorskip("optuna")
    (tmp_path / "search.md").write_text("my notes")
    code, _, err = run_cli(["search", "reber", "--trials", "1", "--space", "lr=log(1e-3,1e-2)", "--max-steps", "2",
                            "--jobs", "1", "--out", str(tmp_path)], capsys)
    assert code == 2 and "search.md" in err, err
    assert (tmp_path / "search.md").read_text() == "my notes"


@pytest.mark.parametrize("argv", [["experiment", "reber", "--seeds", "1", "--max-steps", "2", "--jobs", "1"],
                                  ["teach", "student", "notebooks"]])
def test_an_output_directory_under_a_file_is_a_one_line_error(tmp_path, capsys, argv, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parents[1])
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "file" / "sub")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot create" in err, err


def test_a_results_record_missing_fields_or_a_non_utf8_file_is_a_data_error(tmp_path):
    from rnnkit.training.results import read_results

    path = tmp_path / "results.jsonl"
    header = json.dumps({"rnnkit_results": 1, "experiment": "reber", "definition": {}, "options": {}})
    path.write_text(header + "\n" + json.dumps({"key": "lstm/T0/seed5"}) + "\n")
    with pytest.raises(DataError, match="line 2 is damaged: a run record lacks cell"):
        read_results(path)
    path.write_bytes(b"\xff\xfe garbage\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_results(path)


def test_a_transcriber_config_whose_symbols_do_not_name_its_classes_is_refused():
    from rnnkit.models.transcriber import TranscriberConfig

    with pytest.raises(ConfigError, match="symbols must name its 4 classes"):
        TranscriberConfig(5, 4, symbols=["<blank>", "a", "b"])


def test_the_float32_scan_agrees_with_the_sequential_loop_over_a_thousand_steps():
    from rnnkit.recurrent import MinGRU, MinLSTM

    x = np.random.default_rng(0).normal(size=(2, 1000, 3)).astype(np.float32)
    for cls in (MinGRU, MinLSTM):
        sequential, scan = cls(3, 4, rng=0), cls(3, 4, rng=0, mode="scan")
        np.testing.assert_allclose(scan.forward(x)[0], sequential.forward(x)[0], rtol=0, atol=2e-6)


def test_a_trial_left_running_by_a_killed_search_is_marked_failed_and_not_counted(tmp_path):
    optuna = pytest.importorskip("optuna")
    import subprocess
    import sys

    from rnnkit.training.search import counted_trials, fail_orphans, open_study, owner

    study = open_study(tmp_path, {"task": "reber", "space": [], "fixed": {}, "objective": "val_loss",
                                  "direction": "minimize", "prune": False})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, alive = study.ask(), study.ask()
    orphan.set_user_attr("owner", {**owner(), "pid": dead.pid})
    alive.set_user_attr("owner", owner())
    fail_orphans(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {orphan.number: optuna.trial.TrialState.FAIL, alive.number: optuna.trial.TrialState.RUNNING}
    assert counted_trials(study) == 1
