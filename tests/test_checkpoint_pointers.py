"""A checkpoint pointer is confined to its run directory and a checkpoint file is read only as a regular file of
the size its manifest records: a foreign or escaping pointer, a version that is a link, a FIFO or a device in place
of a file is one line, and nothing is deleted or read without bound; experiment records are checked by type."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_cli
from rnnkit.errors import CheckpointError, DataError
from rnnkit.training import checkpoint

TRAIN = ["train", "reber", "--hidden-size", "4", "--eval-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rnnkit.cli import main

    root = tmp_path_factory.mktemp("pointers")
    for name, steps in (("run", "2"), ("other", "1")):
        try:
            main([*TRAIN, "--max-steps", steps, "--out", str(root / name)])
        except SystemExit as e:
            assert not e.code
    return root


def _copy(runs, tmp_path):
    shutil.copytree(runs / "run", tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def _commands(run, tmp_path):
    return {"--resume": [*TRAIN, "--max-steps", "4", "--out", str(run), "--resume"],
            "--init-from": [*TRAIN, "--max-steps", "4", "--init-from", str(run), "--out", str(tmp_path / "new")]}


POINTERS = {"absolute, another run": lambda runs: str(runs / "other" / "checkpoint-000001"),
            "relative, escaping": lambda runs: "../../other/checkpoint-000001",
            "not a version name": lambda runs: "somewhere"}


@pytest.mark.parametrize("pointer", list(POINTERS))
def test_a_pointer_leading_out_of_the_run_directory_is_one_line_and_deletes_nothing(runs, tmp_path, capsys,
                                                                                     pointer):
    run = _copy(runs, tmp_path)
    own = os.readlink(run / "checkpoint")
    os.unlink(run / "checkpoint")
    os.symlink(POINTERS[pointer](runs), run / "checkpoint")
    before = sorted(p.name for p in run.iterdir())
    other = sorted(p.name for p in (runs / "other").iterdir())
    for command, argv in _commands(run, tmp_path).items():
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "checkpoint pointer" in err and len(err.strip().splitlines()) == 1, (command, err)
    assert sorted(p.name for p in run.iterdir()) == before and (run / own).is_dir()
    assert sorted(p.name for p in (runs / "other").iterdir()) == other
    with pytest.raises(CheckpointError, match="checkpoint pointer"):
        checkpoint.load_model(run)


def test_a_version_entry_that_is_a_link_is_refused_instead_of_followed_or_renamed_over(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path)
    following = f"checkpoint-{checkpoint.versions(run)[-1] + 1:06d}"  # the name the next save would take
    os.symlink(runs / "other" / "checkpoint-000001", run / following)
    code, _, err = run_cli([*TRAIN, "--max-steps", "4", "--out", str(run), "--resume"], capsys)
    assert code == 2 and "is a symbolic link" in err and len(err.strip().splitlines()) == 1, err
    assert (runs / "other" / "checkpoint-000001" / "meta.json").is_file()


@pytest.mark.parametrize("name", ["meta.json", "model.safetensors"])
@pytest.mark.parametrize("special", ["fifo", "link to /dev/zero"])
def test_a_checkpoint_file_that_is_not_a_regular_file_is_refused_without_reading_it(runs, tmp_path, capsys, name,
                                                                                     special):
    run = _copy(runs, tmp_path)
    path = checkpoint.find(run) / name
    path.unlink()
    if special == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    code, _, err = run_cli(["sample", str(run), "-n", "3"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "not a regular file" in err or "symbolic link" in err, err


def test_a_checkpoint_file_grown_past_its_manifest_size_is_damaged_and_read_only_that_far(runs, tmp_path):
    run = _copy(runs, tmp_path)
    path = checkpoint.find(run) / "model.safetensors"
    with open(path, "ab") as f:
        f.write(b"\0" * 1000)
    with pytest.raises(CheckpointError, match="more bytes, the manifest records"):
        checkpoint.load(path.parent)


HEADER = {"rnnkit_results": 1, "experiment": "reber", "definition": {}, "options": {}}
GOOD = {"key": "rnn/T0/seed0", "cell": "rnn", "length": 0, "seed": 0, "success": 0.0, "val_loss": 1.5,
        "baseline": 2.0, "steps": 3, "seconds": 0.5}


@pytest.mark.parametrize("field, value", [("key", ["rnn"]), ("success", "yes"), ("val_loss", None), ("seed", "0"),
                                          ("length", -1), ("steps", 1.5), ("key", "gru/T0/seed0")])
def test_a_results_record_of_the_wrong_type_is_a_data_error_naming_its_line(tmp_path, field, value):
    from rnnkit.training.results import read_results

    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(HEADER) + "\n" + json.dumps(GOOD) + "\n" + json.dumps({**GOOD, field: value}) + "\n")
    with pytest.raises(DataError, match=f"line 3 is damaged: .*{field}"):
        read_results(path)


def test_report_of_a_tampered_results_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(HEADER) + "\n" + json.dumps({**GOOD, "val_loss": None}) + "\n")
    code, _, err = run_cli(["experiment", "reber", "--report", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "line 2 is damaged: val_loss" in err, err
