"""Hyperparameter search in one process: the objective's direction, files it never overwrites, and trials left
running by a killed search."""

import pytest

from conftest import run_cli
from rnnkit.errors import ConfigError


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
