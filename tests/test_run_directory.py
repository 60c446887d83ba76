"""A run directory belongs to one run: a lock against a second process, no stale metrics, no change by a no-op
resume, and a checkpoint on SIGTERM/SIGHUP/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from rnnkit.training import checkpoint
from rnnkit.training.files import LOCK_NAME
from rnnkit.training.run_directory import RunDirectory


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    return path


def train_args(corpus, out, *extra):
    return ["train", "text", "--data", str(corpus), "--hidden-size", "8", "--num-layers", "1", "--seq-length", "10",
            "--batch-size", "4", "--out", str(out), "--no-progress", *extra]


def command(*args):
    return [sys.executable, "-m", "rnnkit", *map(str, args)]


ENV = dict(os.environ, RNNKIT_BLAS_AUTO="0", OPENBLAS_NUM_THREADS="1")


def wait_for(condition, seconds=120.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def lock_holder(out) -> str:
    try:
        return (out / LOCK_NAME).read_text().strip()
    except OSError:
        return ""


def test_a_second_run_on_the_same_directory_is_refused_with_the_first_ones_process_id(tmp_path, corpus):
    out = tmp_path / "run"
    long_run = train_args(corpus, out, "--max-steps", "1000000", "--eval-every", "1000000", "--time-limit", "100",
                          "--max-epochs", "1000000")
    first = subprocess.Popen(command(*long_run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lock_holder(out) == str(first.pid) and (out / "metrics.jsonl").exists())
        second = subprocess.run(command(*train_args(corpus, out, "--max-steps", "5")), env=ENV, capture_output=True,
                                text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second one started"
    finally:
        first.kill()
        first.wait()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr
    assert lines == [f"rnnkit: error: run directory {str(out)!r} in use by process {first.pid} (expected a directory "
                     "no other run is using; wait for it to finish or choose another --out)"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()[:-1]]
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # only the first run's records


def test_a_restart_after_a_kill_before_the_first_checkpoint_starts_the_metrics_afresh(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    long_run = train_args(corpus, out, "--max-steps", "1000000", "--eval-every", "1000000", "--time-limit", "100",
                          "--max-epochs", "1000000")
    first = subprocess.Popen(command(*long_run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= 3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not checkpoint.exists(out)
    assert run_cli(train_args(corpus, out, "--max-steps", "20", "--eval-every", "10"), capsys)[0] == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 10, 20, 20]  # a training-loss and a validation record per 10 steps, none from the kill


def run_files(out) -> dict[str, bytes]:
    """Every file of a run directory but the lock (which records the process holding it)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def test_resuming_a_finished_run_leaves_it_unchanged(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    args = train_args(corpus, out, "--max-steps", "12", "--eval-every", "5")
    assert run_cli(args, capsys)[0] == 0
    before = run_files(out)
    version = checkpoint.find(out).name
    for _ in range(2):
        code, stdout, err = run_cli(args + ["--resume"], capsys)
        assert code == 0, err
        assert "done: 12 updates" in stdout
    assert run_files(out) == before and checkpoint.find(out).name == version
    by_epochs = tmp_path / "epochs"
    args = train_args(corpus, by_epochs, "--max-epochs", "1", "--eval-every", "1000")
    assert run_cli(args, capsys)[0] == 0
    before = run_files(by_epochs)
    assert run_cli(args + ["--resume"], capsys)[0] == 0
    assert run_files(by_epochs) == before


def test_atomic_write_never_follows_a_link_planted_at_a_temporary_name(tmp_path):
    from rnnkit.training.files import atomic_write

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "v3.html"
    planted = [tmp_path / f".{target.name}.tmp-{os.getpid()}{target.suffix}", tmp_path / f".{target.name}.tmp"]
    for link in planted:
        link.symlink_to(victim)
    atomic_write(target, "<html>page</html>")
    atomic_write(target, lambda path: path.write_bytes(b"<html>again</html>"))
    assert victim.read_text() == "keep me"
    assert not target.is_symlink() and target.read_text() == "<html>again</html>"
    assert all(link.is_symlink() for link in planted)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([victim.name, target.name, *(p.name for p in planted)])
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_stop_signal_finishes_the_update_writes_a_checkpoint_and_exits_with_one_line(tmp_path, corpus, name,
                                                                                       status):
    out = tmp_path / "run"
    long_run = train_args(corpus, out, "--max-steps", "1000000", "--eval-every", "1000000", "--time-limit", "100",
                          "--max-epochs", "1000000")
    proc = subprocess.Popen(command(*long_run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: (out / "metrics.jsonl").exists())
    proc.send_signal(getattr(signal, name))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    step = checkpoint.load(out)[0]["progress"]["step"]
    assert step >= 10
    assert err.strip().splitlines()[-1] == (f"rnnkit: stopped by {name} after step {step}; checkpoint written to "
                                            f"{out / 'checkpoint'} (--resume continues it)")
    assert "Traceback" not in err
    resumed = subprocess.run(command(*train_args(corpus, out, "--resume", "--max-steps", str(step + 3))), env=ENV,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and f"done: {step + 3} updates" in resumed.stdout, resumed.stderr


def test_a_new_run_holds_its_directory_before_checking_it_for_a_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    from rnnkit.cli import train as train_command
    from rnnkit.training import files

    out, seen = tmp_path / "run", []
    real_exists = train_command.checkpoint.exists

    def exists(path):
        seen.append(out.resolve() / LOCK_NAME in files._held)
        return real_exists(path)

    monkeypatch.setattr(train_command.checkpoint, "exists", exists)
    code, _, err = run_cli(train_args(corpus, out, "--max-steps", "2", "--eval-every", "2"), capsys)
    assert code == 0, err
    assert seen and all(seen)


def test_a_run_started_while_another_sets_up_the_same_new_directory_is_refused_and_changes_nothing(tmp_path,
                                                                                                    corpus):
    big = tmp_path / "big.txt"
    big.write_text("to be or not to be, that is the question. " * 60000, encoding="utf-8")
    out = tmp_path / "run"
    slow = subprocess.Popen(command(*train_args(big, out, "--max-steps", "1000000", "--eval-every", "1000000",
                                                "--time-limit", "100")),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lock_holder(out) == str(slow.pid))
        quick = subprocess.run(command("train", "reber", "--max-steps", "1", "--eval-every", "1", "--out", out,
                                       "--no-progress"), env=ENV, capture_output=True, text=True, timeout=120)
        assert slow.poll() is None, "the slow run ended before the quick one started"
    finally:
        slow.kill()
        slow.wait()
    assert quick.returncode == 2, quick.stderr
    assert quick.stderr.strip().splitlines() == [
        f"rnnkit: error: run directory {str(out)!r} in use by process {slow.pid} (expected a directory no other run "
        "is using; wait for it to finish or choose another --out)"]
    assert checkpoint.versions(out) == [] or checkpoint.load(out)[0]["task"]["task"] == "text"


def test_a_run_refused_before_writing_anything_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "reber", "--out", str(out), "--resume"], capsys)
    assert code == 2 and err.strip().splitlines() == [f"rnnkit: error: --resume: no checkpoint in {str(out)!r}"]
    assert not out.exists()


def test_resume_with_a_task_other_than_the_runs_is_refused_instead_of_ignored(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run_cli(train_args(corpus, out, "--max-steps", "2", "--eval-every", "2"), capsys)[0] == 0
    before = sorted(p.name for p in out.iterdir())
    code, _, err = run_cli(["train", "classify", "--out", str(out), "--resume"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"rnnkit: error: --resume: {str(out)!r} holds a 'text' run, not 'classify' (omit TASK to continue it)"]
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_stop_signal_ignored_when_training_starts_stays_ignored(tmp_path, corpus):
    out = tmp_path / "run"
    long_run = train_args(corpus, out, "--max-steps", "1000000", "--eval-every", "1000000", "--time-limit", "100",
                          "--max-epochs", "1000000")
    proc = subprocess.Popen(command(*long_run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: (out / "metrics.jsonl").exists())
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None, "SIGHUP, ignored as under nohup, stopped the run"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err


def test_taking_the_lock_removes_the_temporaries_a_killed_write_left_and_nothing_else(tmp_path):
    from rnnkit.training.files import atomic_path, hold_run_directory

    with atomic_path(tmp_path / "loss.png") as tmp:  # the name a real atomic write gives its temporary
        name = tmp.name
    left = [tmp_path / name, tmp_path / ".metrics.jsonl.ab_12cd3.tmp.jsonl"]
    for path in left:
        path.write_bytes(b"half a picture")
    kept = [tmp_path / ".notes.tmp", tmp_path / "loss.png.tmp", tmp_path / "results.jsonl"]
    for path in kept:
        path.write_text("mine")
    outside = tmp_path.parent / f"outside-{tmp_path.name}"
    outside.write_text("not rnnkit's")
    link = tmp_path / ".loss.png.zz99yy88.tmp.png"
    link.symlink_to(outside)
    with hold_run_directory(tmp_path):
        assert not any(path.exists() for path in left)
    assert all(path.read_text() == "mine" for path in kept)
    assert link.is_symlink() and outside.read_text() == "not rnnkit's"


def test_truncating_the_metrics_keeps_the_records_up_to_the_checkpoint_and_drops_a_cut_line(tmp_path):
    directory = RunDirectory(tmp_path)
    for step in (1, 2, 3, 4):
        directory.append_metrics({"step": step, "train_loss": 1.0 / step})
    with open(directory.metrics, "a", encoding="utf-8") as file:
        file.write('{"step": 5, "trai')  # a line cut short by a kill
    kept = directory.truncate_metrics(3)
    assert [r["step"] for r in kept] == [1, 2, 3]
    lines = directory.metrics.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == kept


def test_truncating_metrics_that_are_all_kept_leaves_the_file_untouched(tmp_path):
    directory = RunDirectory(tmp_path)
    assert directory.truncate_metrics(0) == []  # no file yet
    directory.append_metrics({"step": 1, "val_loss": 0.5})
    before = directory.metrics.stat().st_mtime_ns
    assert directory.truncate_metrics(1) == [{"step": 1, "val_loss": 0.5}]
    assert directory.metrics.stat().st_mtime_ns == before
