"""The command line of defined cells: ``rnnkit derive`` prints the backward, ``rnnkit train --cell-file`` trains the
example cells, and checkpoints keep the definition's text (sample, eval, --resume rebuild it; no code is run)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli as run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cells"
CELLS = {"cifg": "CIFG", "mgu": "MGU", "janet": "JANET"}


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(["to be ", "or not ", "that is "], 200)), encoding="utf-8")
    return path


def reference(module: str) -> str:
    return f"{EXAMPLES / module}.py:{CELLS[module]}"


@pytest.mark.parametrize("module", CELLS)
def test_derive_prints_the_backward_of_each_example_cell(module, capsys):
    code, stdout, _ = run(["derive", reference(module)], capsys)
    assert code == 0 and "backward:" in stdout and "δh₋₁" in stdout


def test_derive_prints_latex_and_the_generated_numpy_step(capsys):
    code, stdout, _ = run(["derive", reference("cifg"), "--latex", "--code", "numpy"], capsys)
    assert code == 0 and r"\delta a_{i}" in stdout and "def backward(" in stdout


def train_args(corpus, out, cell_file, steps=4):
    return ["train", "text", "--data", str(corpus), "--cell-file", cell_file, "--hidden-size", "6", "--seq-length",
            "8", "--batch-size", "4", "--max-steps", str(steps), "--eval-every", "2", "--out", str(out),
            "--no-progress"]


@pytest.mark.parametrize("module", CELLS)
def test_each_example_cell_trains_from_the_command_line_and_stores_its_definition_text(module, tmp_path, corpus,
                                                                                       capsys):
    out = tmp_path / module
    code, stdout, err = run(train_args(corpus, out, reference(module)), capsys)
    assert code == 0, err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["cell"] == "defined" and meta["model"]["definition"]["name"] == module
    assert "σ(a_" in meta["model"]["definition"]["equations"]


def test_a_defined_cell_survives_resume_sample_and_eval_without_its_file(tmp_path, corpus, capsys):
    cell_file = tmp_path / "mine.py"
    cell_file.write_text((EXAMPLES / "cifg.py").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "run"
    assert run(train_args(corpus, out, f"{cell_file}:CIFG", steps=2), capsys)[0] == 0
    cell_file.unlink()  # the checkpoint holds the definition's text: the file is no longer needed
    resume = [a for a in train_args(corpus, out, "x", steps=4) if a not in ("--cell-file", "x")] + ["--resume"]
    code, _, err = run(resume, capsys)
    assert code == 0, err
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["progress"]["step"] == 4
    code, stdout, _ = run(["sample", str(out), "--length", "20", "--prime", "to", "--seed", "1"], capsys)
    assert code == 0 and stdout.startswith("to")
    code, stdout, err = run(["eval", str(out), "--data", str(corpus)], capsys)
    assert code == 0, err


def test_a_stored_definition_is_parsed_never_run_and_a_bad_one_is_a_one_line_checkpoint_error(tmp_path, corpus,
                                                                                               capsys):
    from rnnkit.errors import CheckpointError
    from rnnkit.models.sequence import ModelConfig

    out = tmp_path / "run"
    assert run(train_args(corpus, out, reference("janet"), steps=2), capsys)[0] == 0
    model = json.loads((out / "checkpoint" / "meta.json").read_text())["model"]
    assert ModelConfig.from_dict(model).definition == model["definition"]
    model["definition"]["equations"] = "h = __import__('os').system('touch hacked')"
    with pytest.raises(CheckpointError, match="unsupported function") as info:
        ModelConfig.from_dict(model)
    assert "\n" not in str(info.value) and not Path("hacked").exists()


@pytest.mark.parametrize("argv, message", [
    (["--cell", "defined"], "--cell defined needs --cell-file"),
    (["--cell-file", "nowhere.py:X"], "does not exist"),
    (["--cell-file", "cells.txt"], "FILE.py:NAME"),
    (["--cell", "lstm", "--cell-file", "x.py:X"], "cannot be combined with --cell lstm"),
])
def test_bad_cell_file_flags_are_one_line_errors(argv, message, tmp_path, corpus, capsys):
    code, _, err = run(["train", "text", "--data", str(corpus), "--max-steps", "1", "--out", str(tmp_path / "r"),
                        "--batch-size", "2", "--seq-length", "8", "--no-progress", *argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoint").exists()


def test_to_torch_refuses_a_defined_cell_in_one_line():
    from rnnkit import define, to_torch
    from rnnkit.define.cells import EXAMPLE
    from rnnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="got DefinedRNN") as info:
        to_torch(define.DefinedRNN(3, 4, EXAMPLE))
    assert "\n" not in str(info.value)


def test_experiment_compares_a_defined_cell_beside_a_catalogue_cell_under_its_definitions_name(tmp_path, capsys,
                                                                                               monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNELS", "numpy")  # the pool's processes: nothing to compile
    out = tmp_path / "exp"
    code, stdout, err = run(["experiment", "reber", "--cell", "rnn", "--cell-file", reference("janet"), "--seeds",
                             "1", "--max-steps", "3", "--jobs", "1", "--out", str(out)], capsys)
    assert code == 0, err
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    assert sorted(r["cell"] for r in runs) == ["janet", "rnn"]
    meta = json.loads((out / "runs" / "janet-T0-seed0" / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["cell"] == "defined" and meta["model"]["definition"]["name"] == "janet"
    assert "| janet |" in stdout


def test_experiment_refuses_a_defined_cell_named_like_a_catalogue_cell(tmp_path, capsys):
    cell_file = tmp_path / "mine.py"
    cell_file.write_text('from rnnkit.define import cell\nX = cell("gru", gates="n", states="h", '
                         'equations="h = tanh(a_n)")\n', encoding="utf-8")
    code, _, err = run(["experiment", "reber", "--cell-file", f"{cell_file}:X", "--out", str(tmp_path / "e")],
                       capsys)
    assert code == 2 and "named 'gru'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_search_trains_its_trials_with_a_defined_cell(tmp_path, capsys, monkeypatch):
    pytest.importorskip("optuna")
    monkeypatch.setenv("RNNKIT_KERNELS", "numpy")
    out = tmp_path / "search"
    code, _, err = run(["search", "reber", "--cell-file", reference("cifg"), "--trials", "1", "--space",
                        "lr=log(1e-2,1e-1)", "--hidden-size", "4", "--max-steps", "2", "--jobs", "1", "--out",
                        str(out)], capsys)
    assert code == 0, err
    metas = list((out / "trials").glob("*/checkpoint/meta.json"))
    assert len(metas) == 1
    assert json.loads(metas[0].read_text())["model"]["definition"]["name"] == "cifg"
