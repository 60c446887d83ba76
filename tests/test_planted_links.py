"""No file rnnkit writes, appends to or locks is opened through a link planted in its directory: a run, an
experiment and a search directory each get a link (dangling, or to a file outside) at every name rnnkit writes
there; the command stops with one line and the file outside is unchanged (a dangling link's target is not made)."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli

RUN = ["train", "reber", "--hidden-size", "4", "--max-steps", "2", "--eval-every", "1", "--no-progress"]
EXPERIMENT = ["experiment", "reber", "--cell", "rnn", "--seeds", "1", "--max-steps", "2", "--jobs", "1"]
SEARCH = ["search", "reber", "--trials", "1", "--space", "lr=log(1e-2,1e-1)", "--hidden-size", "4", "--max-steps",
          "2", "--eval-every", "1", "--jobs", "1", "--no-progress"]
WRITTEN = {  # command → the names it writes in its --out directory
    "train": (RUN, ["metrics.jsonl", "loss.png", ".rnnkit.lock", "checkpoint", "checkpoint-000001"]),
    "experiment": (EXPERIMENT, ["results.jsonl", "reber.md", "reber.json", "reber.png", ".rnnkit.lock"]),
    "search": (SEARCH, ["journal.log", ".search.lock", "search.md"]),
}
CASES = [(command, name, target) for command, (_, names) in WRITTEN.items() for name in names
         for target in ("dangling", "outside file")]


@pytest.mark.parametrize("command, name, target", CASES)
def test_a_link_planted_where_rnnkit_writes_is_refused_in_one_line_and_its_target_is_unchanged(
        tmp_path, capsys, monkeypatch, command, name, target):
    if command == "search":
        pytest.importorskip("optuna")
    monkeypatch.chdir(tmp_path)
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    if target == "outside file":
        outside.write_text("precious\n")
    os.symlink(outside, out / name)
    argv, _ = WRITTEN[command]
    code, _, err = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("rnnkit: error: ")]
    assert len(errors) == 1 and name in errors[0] and "Traceback" not in err, err
    if target == "outside file":
        assert outside.read_text() == "precious\n"
    else:
        assert not outside.exists()
    assert os.readlink(out / name) == str(outside)  # the link itself is left for its owner to look at


@pytest.mark.parametrize("name", [".checkpoint.tmp-000001", ".checkpoint.pointer-tmp", ".checkpoint.del-x"])
def test_a_link_planted_at_a_temporary_name_of_a_save_is_removed_never_followed(tmp_path, capsys, name):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("precious\n")
    os.symlink(outside, out / name)
    code, _, err = run_cli([*RUN, "--out", str(out)], capsys)
    assert code == 0, err
    assert (outside / "keep.txt").read_text() == "precious\n" and not (out / name).is_symlink()


def test_a_fifo_planted_at_metrics_jsonl_is_refused_without_blocking(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "metrics.jsonl")
    code, _, err = run_cli([*RUN, "--out", str(out)], capsys)
    errors = [line for line in err.splitlines() if line.startswith("rnnkit: error: ")]
    assert code == 2 and len(errors) == 1 and "metrics.jsonl" in errors[0], err
