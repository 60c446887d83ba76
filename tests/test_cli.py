"""The rnnkit command: training, sampling, resuming, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli, validation_losses

run = run_cli


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(["to be ", "or not ", "that is ", "the question. "], 600)), encoding="utf-8")
    return path


def test_train_text_then_sample(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(["train", "text", "--data", str(corpus), "--hidden-size", "16", "--num-layers", "1",
                           "--seq-length", "12", "--batch-size", "4", "--max-steps", "30", "--eval-every", "10",
                           "--out", str(out), "--no-progress"], capsys)
    assert code == 0, stdout
    assert "validation loss" in stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20, 30]
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["hidden_size"] == 16
    assert meta["vocab"] == sorted(set(corpus.read_text(encoding="utf-8")))  # char-rnn's sorted characters
    code, stdout, _ = run(["sample", str(out), "--length", "40", "--prime", "to be", "--seed", "1"], capsys)
    assert code == 0 and stdout.startswith("to be") and len(stdout.rstrip("\n")) == 45


def test_resume_continues_and_refuses_to_overwrite(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    common = ["train", "text", "--data", str(corpus), "--hidden-size", "8", "--num-layers", "1", "--seq-length",
              "10", "--batch-size", "4", "--eval-every", "5", "--out", str(out), "--no-progress"]
    assert run(common + ["--max-steps", "5"], capsys)[0] == 0
    before = (out / "checkpoint" / "model.safetensors").read_bytes()
    code, _, err = run(common + ["--max-steps", "10"], capsys)
    assert code == 2 and "already holds a checkpoint" in err and len(err.strip().splitlines()) == 1
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == before
    code, _, err = run(common + ["--max-steps", "10", "--resume", "--hidden-size", "9"], capsys)
    assert code == 2 and "--hidden-size 9 (checkpoint: 8)" in err
    assert run(common + ["--max-steps", "10", "--resume"], capsys)[0] == 0
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["progress"]["step"] == 10


def test_adding_task_runs_with_defaults_shortened(tmp_path, capsys):
    code, stdout, _ = run(["train", "adding", "--max-steps", "20", "--eval-every", "10", "--out",
                           str(tmp_path / "a"), "--no-progress"], capsys)
    assert code == 0 and "trivial baseline 0.1667" in stdout
    assert (tmp_path / "a" / "loss.png").exists()


def test_threads_and_learning_rate_decay_flags(tmp_path, capsys):
    code, _, err = run(["train", "adding", "--threads", "1", "--lr-decay", "0.5", "--lr-decay-after", "0",
                        "--epochs", "2", "--max-steps", "150", "--eval-every", "150", "--out", str(tmp_path / "a"),
                        "--no-progress"], capsys)
    assert code == 0, err
    rates = [json.loads(line)["lr"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
             if '"lr"' in line]
    assert rates[0] == pytest.approx(5e-4) and rates[-1] == pytest.approx(2.5e-4)


def test_detach_state_flag_is_stored_in_the_checkpoint_and_kept_on_resume(tmp_path, capsys):
    common = ["train", "reber", "--cell", "rnn", "--detach-state", "--eval-every", "10", "--out", str(tmp_path / "e"),
              "--no-progress"]
    assert run(common + ["--max-steps", "10"], capsys)[0] == 0
    meta = json.loads((tmp_path / "e" / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["detach_state"] is True
    assert run(common + ["--max-steps", "20", "--resume"], capsys)[0] == 0


def test_default_task_is_the_embedded_reber_grammar_with_an_lstm(tmp_path, capsys):
    code, stdout, err = run(["train", "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 0, err
    assert "LSTM" in err and "'reber'" in err
    assert "train_strings_correct 1.0000" in stdout and "test_strings_correct 1.0000" in stdout


@pytest.mark.parametrize("make_file, message", [
    (None, "does not exist"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00"), "binary"),
    (lambda p: p.write_bytes("caf\u00e9".encode("latin-1") * 100), "not valid UTF-8"),
    (lambda p: p.write_text("tiny"), "needs at least"),
])
def test_bad_data_files_give_one_line_and_exit_2(tmp_path, capsys, make_file, message):
    path = tmp_path / "data.txt"
    if make_file:
        make_file(path)
    code, _, err = run(["train", "text", "--data", str(path), "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "text"], "needs --data"),
    (["train", "--hidden-size", "0"], "0 is not in the range x>=1"),
    (["train", "--lr", "-1"], "-1.0 is not in the range x>0"),
    (["train", "--cell", "tcn"], "Invalid value for '--cell': 'tcn'"),
    (["train", "--k1", "5", "--k2", "2"], "k2 (steps backpropagated) must be >= k1"),
    (["train", "--resume"], "--resume needs --out"),
    (["train", "--data", "x.txt"], "generates its own data"),
    (["train", "--nonsense"], "No such option '--nonsense'"),
    (["sample", "/nonexistent/run"], "does not exist"),
])
def test_bad_flags_give_one_line_and_exit_2(argv, message, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_gradcheck_command_passes(capsys):
    code, stdout, _ = run(["gradcheck"], capsys)
    assert code == 0 and "worst relative error" in stdout and "FAIL" not in stdout


def test_console_script_has_no_traceback_on_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "train", "text", "--data", str(tmp_path / "missing.txt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "jordan", "rhn", "mogrifier"])
@pytest.mark.parametrize("task", ["reber", "adding", "adding1997", "copy", "text"])
def test_every_cell_trains_on_every_sequence_task(tmp_path, corpus, capsys, cell, task):
    """Each cell learns each task a little: the checkpoint holds that cell and the validation loss falls."""
    out = tmp_path / "run"
    argv = ["train", task, "--cell", cell, "--hidden-size", "8", "--max-steps", "30", "--eval-every", "5",
            "--lr", "1e-2", "--out", str(out), "--no-progress"]
    if task == "text":
        argv += ["--data", str(corpus), "--seq-length", "10", "--batch-size", "4"]
    elif task in ("adding1997", "copy"):
        argv += ["--seq-length", "10"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["model"]["cell"] == cell and meta["progress"]["step"] == 30
    losses = validation_losses(out)
    assert len(losses) == 6 and min(losses[1:]) < losses[0], losses
    if task == "text":
        assert run(["sample", str(out), "-n", "5", "--seed", "0"], capsys)[0] == 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--cell", "lstm", "--reset-before"], "--reset-after/--reset-before applies to --cell gru"),
    (["train", "adding", "--cell", "gru", "--depth", "2"], "--depth applies to --cell rhn, not to --cell gru"),
    (["train", "text", "--nonlinearity", "relu", "--cell", "lstm"], "--nonlinearity applies to --cell rnn"),
    (["train", "reber", "--peephole"], None),  # the default reber cell is an LSTM: allowed
    (["train", "classify", "--depth", "2"], "--depth is not a setting of task 'classify'"),
    (["train", "text", "--pooling", "max"], "--pooling is not a setting of task 'text'"),
])
def test_options_given_for_a_cell_or_task_they_do_not_belong_to_are_refused(tmp_path, capsys, argv, message):
    code, _, err = run(argv + ["--max-steps", "1", "--eval-every", "1", "--out", str(tmp_path / "r"),
                               "--no-progress"], capsys)
    if message is None:
        assert code == 0, err
    else:
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()


def test_model_options_are_fields_of_the_model_config():
    """Every ModelConfig option is a flag of ``rnnkit train`` and reaches the config under its field name."""
    from dataclasses import fields

    from rnnkit.cli import cli
    from rnnkit.models.sequence import ModelConfig

    train_params = {p.name for p in cli.commands["train"].params}
    options = {f.name for f in fields(ModelConfig) if f.metadata.get("cli")}
    assert options <= train_params
    assert {"hidden_size", "reset_after", "depth", "rank", "detach_state"} <= options


def test_the_cli_package_has_no_import_cycle():
    """No module of rnnkit.cli imports a module that imports it back (``__init__`` included: a submodule that
    took a name from the package would close a cycle), and each module imports on its own."""
    import ast
    import pathlib

    import rnnkit.cli

    package = pathlib.Path(rnnkit.cli.__file__).parent
    modules = {path.stem for path in package.glob("*.py")}
    imports = {}
    for module in modules:
        imported = set()
        for node in ast.walk(ast.parse((package / f"{module}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import y / from . import x
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                imported.update(n if n in modules else "__init__" for n in names)
        imports[module] = imported
    assert imports["__init__"] >= {"train", "apply", "study", "check"}
    for module, imported in imports.items():
        for other in imported:
            assert module not in imports[other], f"{module} and {other} import each other"
    for module in sorted(modules):
        name = "rnnkit.cli" if module == "__init__" else f"rnnkit.cli.{module}"
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_a_bug_keeps_its_traceback_while_a_user_error_is_one_line(monkeypatch, capsys, tmp_path):
    """A bug is re-raised under RNNKIT_DEBUG=1; otherwise its traceback is kept in a file (exit status 70)."""
    import rnnkit.cli.train as train_module

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(train_module, "make_task", broken)
    monkeypatch.setenv("RNNKIT_DEBUG", "1")
    with pytest.raises(ValueError, match="a bug"):
        run(["train", "adding", "--max-steps", "1", "--out", str(tmp_path / "r")], capsys)
    monkeypatch.delenv("RNNKIT_DEBUG")
    tmp_path.joinpath("r2").mkdir()
    code, _, err = run(["train", "adding", "--max-steps", "1", "--out", str(tmp_path / "r2")], capsys)
    assert code == 70 and len(err.strip().splitlines()) == 1, err
    (report,) = (tmp_path / "r2").glob("internal-error-*.txt")
    assert "ValueError: a bug" in report.read_text() and "Traceback" in report.read_text()


@pytest.mark.parametrize("task, content, message", [
    ("tagging", "word\n\n", "expected CoNLL columns ('token ... tag'"),
    ("tagging", "\n\n\n", "is empty"),
    ("seq2seq", "only source\nx\ty\n", "expected 'source<TAB>target'"),
    ("classify", "\tno label\nb\tc\n", "expected 'label<TAB>text'"),
    ("text", "\ufeff" * 3, "is empty (nothing but whitespace)"),
])
def test_malformed_files_of_every_task(tmp_path, capsys, task, content, message):
    path = tmp_path / "data.txt"
    path.write_text(content, encoding="utf-8")
    code, _, err = run(["train", task, "--data", str(path), "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_large_text_file_loads(tmp_path, capsys):
    path = tmp_path / "big.txt"
    path.write_text("all work and no play makes jack a dull boy\n" * 120_000, encoding="utf-8")  # ~5 MB
    code, out, err = run(["train", "text", "--data", str(path), "--hidden-size", "8", "--num-layers", "1",
                          "--max-steps", "3", "--eval-every", "3", "--out", str(tmp_path / "r"), "--no-progress"],
                         capsys)
    assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["train", "--resume", "--init-from", "x", "--out", "y"], "cannot be combined"),
    (["train", "--val-fraction", "0.7", "--data", "x", "text"], "--val-fraction must be in (0, 0.5)"),
    (["train", "--cell", "jordan", "--num-layers", "2"], "one unidirectional layer"),
    (["train", "seq2seq", "--cell", "rhn"], "seq2seq supports --cell rnn, lstm or gru"),
    (["tag", "/nonexistent", "--input", "x"], "does not exist"),
    (["translate", "/nonexistent", "123"], "does not exist"),
    (["experiment", "nonsense"], "'nonsense' is not one of"),
    (["bench", "--batch", "1,x"], "comma-separated integers"),
])
def test_conflicting_and_bad_flags(argv, message, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, err = run(["train", "--out", str(target), "--no-progress"], capsys)
    assert code == 2 and "is a file" in err and target.read_text() == "keep me"


def test_bench_writes_a_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "bench", "--cells", "rnn,gru", "--batch", "2",
                           "--hidden", "8", "--steps", "5", "--repeats", "1", "--threads", "1", "--no-memory",
                           "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rnnkit ms" in proc.stdout and "GFLOP/s" in proc.stdout
    records = json.loads(out.read_text())["results"]
    assert {(r["cell"], r["mode"]) for r in records} == {("rnn", "train"), ("rnn", "infer"), ("gru", "train"),
                                                         ("gru", "infer")}
    assert all(r["rnnkit_ms"] > 0 and 0 < r["ceiling_fraction"] for r in records)


@pytest.mark.parametrize("argv", [["experiment", "reber", "--seeds", "1", "--max-steps", "2", "--jobs", "1"],
                                  ["teach", "student", "notebooks"]])
def test_an_output_directory_under_a_file_is_a_one_line_error(tmp_path, capsys, argv, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parents[1])
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "file" / "sub")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot create" in err, err
