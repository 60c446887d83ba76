"""Regression tests of the reliability issue: internal errors, non-finite flags, --k1 on tasks without carried
state, the data a resumed run reads, and tampered checkpoint descriptions."""

import os

import pytest

from conftest import run_cli


def _raise_a_bug(*args, **kwargs):
    raise ValueError("not a user error")


def test_a_plain_value_error_is_an_internal_error_whose_traceback_goes_to_a_file_in_the_run_directory(
        monkeypatch, capsys, tmp_path):
    import rnnkit.cli.train as train_module

    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)
    monkeypatch.setattr(train_module, "train_run", _raise_a_bug)
    out = tmp_path / "run"
    out.mkdir()
    code, _, err = run_cli(["train", "adding", "--out", str(out)], capsys)
    assert code == 70, err
    assert len(err.strip().splitlines()) == 1 and "internal error" in err, err
    (report,) = out.glob("internal-error-*.txt")
    assert str(report) in err
    text = report.read_text(encoding="utf-8")
    assert "Traceback" in text and "ValueError: not a user error" in text


def test_an_internal_error_without_a_run_directory_writes_its_traceback_to_a_temporary_file(monkeypatch, capsys):
    import rnnkit.machine

    monkeypatch.delenv("RNNKIT_DEBUG", raising=False)
    monkeypatch.setattr(rnnkit.machine, "report", _raise_a_bug)
    code, _, err = run_cli(["info"], capsys)
    assert code == 70 and len(err.strip().splitlines()) == 1, err
    path = err.strip().rsplit(" ", 1)[-1]
    try:
        assert "Traceback" in open(path, encoding="utf-8").read()
    finally:
        os.unlink(path)


def test_rnnkit_debug_still_re_raises_an_internal_error(monkeypatch, capsys, tmp_path):
    import rnnkit.cli.train as train_module

    monkeypatch.setenv("RNNKIT_DEBUG", "1")
    monkeypatch.setattr(train_module, "train_run", _raise_a_bug)
    with pytest.raises(ValueError, match="not a user error"):
        run_cli(["train", "adding", "--out", str(tmp_path / "r")], capsys)


def _float_flags():
    from rnnkit.cli.options import field_type, option_table
    from rnnkit.models.configs import flag

    return [flag(name) for name, (cls, f) in option_table().items() if field_type(cls, f) is float]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_every_float_flag_of_train_refuses_a_non_finite_value_in_one_line_naming_the_flag(capsys, tmp_path, value):
    flags = _float_flags()
    assert {"--weight-decay", "--momentum", "--forget-bias", "--lr"} <= set(flags)
    for name in flags:
        code, _, err = run_cli(["train", "adding", f"{name}={value}", "--out", str(tmp_path / "r")], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert name in err and "finite" in err, (name, err)
        assert not (tmp_path / "r").exists()


def test_a_model_config_with_a_nan_forget_bias_is_refused_by_the_library():
    from rnnkit.errors import ConfigError
    from rnnkit.models.sequence import ModelConfig
    from rnnkit.training.trainer import TrainConfig

    with pytest.raises(ConfigError, match="forget_bias must be a finite number"):
        ModelConfig(input_size=2, output_size=2, cell="lstm", forget_bias=float("nan"))
    with pytest.raises(ConfigError, match="weight_decay must be a finite number"):
        TrainConfig(weight_decay=float("inf"))


def _whole_sequence_data(task, tmp_path):
    if task == "seq2seq":
        return []
    path = tmp_path / f"{task}.txt"
    if task == "classify":
        path.write_text("pos\tgood fun nice\nneg\tbad awful sad\n" * 20, encoding="utf-8")
    else:
        path.write_text("the DET\ncat NOUN\nsat VERB\n\n" * 20, encoding="utf-8")
    return ["--data", str(path)]


@pytest.mark.parametrize("task", ["classify", "tagging", "seq2seq"])
@pytest.mark.parametrize("k1", ["2", "1000"])
def test_k1_with_a_whole_sequence_task_is_a_one_line_config_error_before_training(capsys, tmp_path, task, k1):
    out = tmp_path / "r"
    code, stdout, err = run_cli(["train", task, *_whole_sequence_data(task, tmp_path), "--k1", k1, "--max-steps",
                                 "1", "--no-progress", "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--k1" in err and f"task {task!r}" in err, err
    assert "training" not in err and not stdout
    assert not (out / "metrics.jsonl").exists()


def _corpus(path, words):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(words * 200), encoding="utf-8")
    return path


def _text_run(data, out, steps, *extra):
    return ["train", "text", *(["--data", str(data)] if data else []), "--hidden-size", "8", "--seq-length", "10",
            "--batch-size", "4", "--max-steps", str(steps), "--eval-every", "2", "--no-progress", "--out", str(out),
            *extra]


def test_resume_from_another_directory_reads_the_checkpoints_data_file_by_its_absolute_path(
        capsys, tmp_path, monkeypatch):
    from rnnkit.training import checkpoint
    from rnnkit.training.data import file_sha256

    original = _corpus(tmp_path / "a" / "data.txt", ["to", "be", "or", "not"])
    _corpus(tmp_path / "b" / "data.txt", ["xyz", "qqq"])  # same name, other content, other directory
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "a")
    code, _, err = run_cli(_text_run("data.txt", out, 2), capsys)
    assert code == 0, err
    task = checkpoint.load(out)[0]["task"]
    assert task["data_path"] == str(original.resolve()) and task["data_sha256"] == file_sha256(original)
    monkeypatch.chdir(tmp_path / "b")
    code, _, err = run_cli(_text_run(None, out, 4, "--resume"), capsys)
    assert code == 0, err
    assert checkpoint.load(out)[0]["task"]["data_sha256"] == file_sha256(original)
    code, _, err = run_cli(_text_run("data.txt", out, 6, "--resume"), capsys)  # b/data.txt: another file
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data" in err, err
    assert "--allow-other-data" in err


def test_resume_refuses_a_data_file_whose_content_changed_unless_other_data_is_allowed(capsys, tmp_path):
    from rnnkit.training import checkpoint
    from rnnkit.training.data import file_sha256

    data = _corpus(tmp_path / "data.txt", ["to", "be", "or", "not"])
    out = tmp_path / "run"
    assert run_cli(_text_run(data, out, 2), capsys)[0] == 0
    _corpus(data, ["or", "not", "to", "be"])  # the same characters, another content
    code, _, err = run_cli(_text_run(data, out, 4, "--resume"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "changed since the checkpoint" in err and "--allow-other-data" in err
    assert checkpoint.load(out)[0]["progress"]["step"] == 2
    code, _, err = run_cli(_text_run(data, out, 4, "--resume", "--allow-other-data"), capsys)
    assert code == 0, err
    meta = checkpoint.load(out)[0]
    assert meta["progress"]["step"] == 4 and meta["task"]["data_sha256"] == file_sha256(data)


def test_resume_with_a_different_data_flag_is_refused_unless_other_data_is_allowed(capsys, tmp_path):
    from rnnkit.training import checkpoint

    first = _corpus(tmp_path / "one.txt", ["to", "be", "or", "not"])
    second = _corpus(tmp_path / "two.txt", ["not", "or", "be", "to"])
    out = tmp_path / "run"
    assert run_cli(_text_run(first, out, 2), capsys)[0] == 0
    code, _, err = run_cli(_text_run(second, out, 4, "--resume"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data" in err, err
    code, _, err = run_cli(_text_run(second, out, 4, "--resume", "--allow-other-data"), capsys)
    assert code == 0, err
    assert checkpoint.load(out)[0]["task"]["data_path"] == str(second.resolve())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from rnnkit.cli import main

    out = tmp_path_factory.mktemp("tamper") / "run"
    try:
        main(["train", "adding", "--hidden-size", "4", "--max-steps", "1", "--eval-every", "1", "--no-progress",
              "--out", str(out)])
    except SystemExit as e:
        assert not e.code
    return out


def _tampered_copy(run, tmp_path, change):
    """A copy of ``run`` whose meta.json is changed by ``change`` (the manifest is updated to match)."""
    import hashlib
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=True)
    version = (copy / "checkpoint").resolve()
    meta = json.loads((version / "meta.json").read_text())
    data = json.dumps(change(meta)).encode("utf-8")
    (version / "meta.json").write_bytes(data)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["meta.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (version / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _set(section, key, value):
    def change(meta):
        meta[section][key] = value
        return meta
    return change


def _replace(section, value):
    def change(meta):
        meta[section] = value
        return meta
    return change


TAMPERED = {
    "model []": (_replace("model", []), "must be a JSON object"),
    "model 42": (_replace("model", 42), "must be a JSON object"),
    "task []": (_replace("task", []), "checkpoint task"),
    "train 42": (_replace("train", 42), "training settings"),
    "kind []": (_replace("kind", []), "unknown model kind"),
    "batch_size 0": (_set("task", "batch_size", 0), "batch_size"),
    "batch_size text": (_set("task", "batch_size", "8"), "batch_size"),
    "hidden_size 10**400": (_set("model", "hidden_size", 10**400), "hidden_size"),
    "hidden_size 10**12": (_set("model", "hidden_size", 10**12), "hidden_size"),
    "hidden_size -3": (_set("model", "hidden_size", -3), "hidden_size"),
    "hidden_size true": (_set("model", "hidden_size", True), "hidden_size"),
    "hidden_size 2.5": (_set("model", "hidden_size", 2.5), "hidden_size"),
    "num_layers 10**7": (_set("model", "num_layers", 10**7), "num_layers"),
    "dropout nan-like": (_set("model", "dropout", 1e400), "dropout"),
    "dropout text": (_set("model", "dropout", "0.1"), "dropout"),
    "cell 7": (_set("model", "cell", 7), "cell"),
    "cell unknown": (_set("model", "cell", "transformer"), "cell"),
    "lr text": (_set("train", "lr", "fast"), "lr"),
    "missing input_size": (lambda m: {**m, "model": {k: v for k, v in m["model"].items() if k != "input_size"}},
                           "input_size"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_meta_json_is_a_one_line_checkpoint_error_before_anything_is_allocated(
        trained_run, tmp_path, capsys, case):
    change, message = TAMPERED[case]
    copy = _tampered_copy(trained_run, tmp_path, change)
    for argv in (["train", "adding", "--resume", "--out", str(copy), "--max-steps", "2", "--no-progress"],
                 None if case.split()[0] in ("task", "train", "batch_size", "lr") else ["sample", str(copy)]):
        if argv is None:
            continue
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv[0], err)
        assert message in err and "checkpoint" in err, (argv[0], err)


def test_an_lstm_with_a_nan_forget_bias_is_refused_by_the_layer():
    import rnnkit
    from rnnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="forget_bias must be a finite number, got nan"):
        rnnkit.LSTM(3, 4, forget_bias=float("nan"))
