"""Progress and run endings: the run lock file is removed when a run ends; the one progress helper; early stop on a
task's success; a finished run resumed says that nothing was done; the bar of a time-limited run keeps its total."""

import os

from rnnkit.training import files
from rnnkit.training.files import LOCK_NAME, hold_run_directory


def test_the_lock_file_is_removed_when_the_run_directory_is_released(tmp_path):
    with hold_run_directory(tmp_path):
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_taken_on_a_file_removed_meanwhile_is_taken_again_on_the_new_file(tmp_path, monkeypatch):
    lock = tmp_path / LOCK_NAME
    real = files._open_and_lock
    calls = []

    def open_then_lose_the_race(path, run_dir):
        fd = real(path, run_dir)
        if not calls:  # the first time: the previous holder removes the file after we opened it
            os.unlink(path)
        calls.append(fd)
        return fd

    monkeypatch.setattr(files, "_open_and_lock", open_then_lose_the_race)
    with hold_run_directory(tmp_path):
        assert len(calls) == 2 and lock.exists()
        assert os.path.samestat(os.fstat(calls[1]), os.stat(lock))
    assert not lock.exists()


def _reber_run(tmp_path, capsys, *flags):
    from conftest import run_cli

    return run_cli(["train", "reber", "--out", str(tmp_path / "run"), "--hidden-size", "8", "--eval-every", "50",
                    "--max-epochs", "30", "--no-progress", *flags], capsys)


def _reber_trainer(cell: str = "rnn", **train):
    import numpy as np

    from rnnkit.models.sequence import ModelConfig, SequenceModel
    from rnnkit.tasks.memory import ReberTask
    from rnnkit.training.trainer import TrainConfig, Trainer

    task = ReberTask(seed=0)
    model = SequenceModel(ModelConfig(task.input_size, task.output_size, cell=cell, hidden_size=4),
                          rng=np.random.default_rng(0), loss=task.loss)
    return Trainer(model, task, TrainConfig(progress=False, **train), None)


def test_a_task_with_a_success_criterion_stops_once_validation_meets_it():
    trainer = _reber_trainer(epochs=3, eval_every=10)
    trainer.task.metrics = lambda model: {"success": 1.0}  # solved from the first validation on
    trainer.fit()
    assert trainer.updates == 10 and trainer.finished()


def test_no_early_stop_trains_on_past_the_tasks_success():
    trainer = _reber_trainer(epochs=5, eval_every=10, max_steps=30, early_stop=False)
    trainer.task.metrics = lambda model: {"success": 1.0}
    trainer.fit()
    assert trainer.updates == 30


def test_resuming_a_finished_run_says_that_nothing_was_done(tmp_path, capsys):
    code, _, err = _reber_run(tmp_path, capsys, "--max-steps", "20")
    assert code == 0 and "nothing to do" not in err
    code, out, err = _reber_run(tmp_path, capsys, "--resume")
    assert code == 0 and "nothing to do: the run in" in err and "done: 20 updates" in out


def test_the_bar_of_a_time_limited_run_counts_seconds_and_its_total_never_changes(monkeypatch):
    from rnnkit.training import progress
    from rnnkit.training import trainer as trainer_module

    bars, totals = [], []

    class Shown(progress.tqdm):  # as on a terminal
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False})
            bars.append(self)

    def tick(self, bar):
        original(self, bar)
        totals.append(bar.total)

    original = trainer_module.Trainer._tick
    monkeypatch.setattr(progress, "tqdm", Shown)
    monkeypatch.setattr(trainer_module.Trainer, "_tick", tick)
    _reber_trainer("rnn", epochs=1000, eval_every=1000, time_limit=1.0, early_stop=False).fit()
    assert bars[0].unit == "s" and set(totals) == {1} and len(totals) > 1
