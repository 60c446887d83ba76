"""Crash safety: a training process killed with SIGKILL at an arbitrary moment resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnkit.training import checkpoint


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(["to be ", "or not ", "that is ", "the question. "], 3000)), encoding="utf-8")
    return path


def train_command(corpus, out, *extra, max_steps=300):
    return [sys.executable, "-m", "rnnkit", "train", "text", "--data", str(corpus), "--hidden-size", "48",
            "--num-layers", "2", "--dropout", "0.2", "--seq-length", "25", "--batch-size", "8", "--max-steps",
            str(max_steps), "--eval-every", "7", "--out", str(out), "--no-progress", *extra]


def train_losses(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"]) for r in map(json.loads, lines) if "train_loss" in r]


def latest_step(run) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except json.JSONDecodeError:  # a line being written
            continue
    return 0


def test_sigkill_then_resume_continues_with_identical_losses(tmp_path, corpus):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")  # the same BLAS partitioning in every process
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train_command(corpus, straight), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(train_command(corpus, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and latest_step(killed) < 100:  # anywhere, not aligned with checkpoints
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    saved_step = checkpoint.load(killed)[0]["progress"]["step"]
    assert 0 < saved_step < 300
    subprocess.run(train_command(corpus, killed, "--resume"), check=True, env=env, capture_output=True)
    assert train_losses(killed) == train_losses(straight)
    assert not list(killed.glob(".checkpoint.tmp-*"))
    final = checkpoint.load(killed)[1], checkpoint.load(straight)[1]
    for name, value in final[0].items():
        np.testing.assert_array_equal(value, final[1][name])


def test_a_metrics_line_cut_by_a_kill_is_ignored_on_resume(tmp_path, corpus):
    out = tmp_path / "run"
    subprocess.run(train_command(corpus, out, max_steps=14), check=True, capture_output=True)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 15, "train_lo')  # a kill in the middle of a write
    result = subprocess.run(train_command(corpus, out, "--resume", max_steps=20), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [s for s, _ in train_losses(out)] == [10, 20]
