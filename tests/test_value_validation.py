"""One check per kind of value: the library's arguments and the command's flags refuse the same values in one line."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from conftest import run_cli
from rnnkit import validate
from rnnkit.errors import ConfigError, DataError, DTypeError
from rnnkit.models.seq2seq import Seq2SeqConfig
from rnnkit.models.tagger import TaggerConfig
from rnnkit.sequences import pad_sequences
from rnnkit.tasks.text import read_text

COMMAND_FLAGS = [
    (["sample", "RUN", "--seed", "-1"], "--seed"),
    (["transcribe", "RUN", "--seed", "-1"], "--seed"),
    (["diagnose", "--cell", "rnn", "--seed", "-1"], "--seed"),
    (["train", "reber", "--seed", "-1"], "--seed"),
    (["sample", "RUN", "-t", "nan"], "--temperature"),
    (["sample", "RUN", "-t", "inf"], "--temperature"),
    (["sample", "RUN", "-n", str(10**12)], "10000000"),
    (["translate", "RUN", "a", "--beam-size", str(10**6)], "1000"),
    (["transcribe", "RUN", "--beam-width", str(10**6)], "1000"),
    (["gradcheck", "--tol", "inf"], "--tol"),
    (["gradcheck", "--tol", "nan"], "--tol"),
    (["gradcheck", "--tol", "-1"], "--tol"),
    (["experiment", "reber", "--scheduler", "tcp://127.0.0.1:notaport"], "tcp://HOST:PORT"),
    (["search", "reber", "--scheduler", "http://127.0.0.1:8786"], "tcp://HOST:PORT"),
]


@pytest.mark.parametrize("argv, named", COMMAND_FLAGS, ids=[" ".join(a) for a, _ in COMMAND_FLAGS])
def test_every_command_refuses_a_bad_value_flag_in_one_line_naming_it(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("rnnkit: error:") and err.count("\n") == 1 and named in err
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_a_malformed_scheduler_is_refused_before_the_experiment_writes_anything(capsys, tmp_path):
    code, _, _ = run_cli(["experiment", "reber", "--scheduler", "tcp://h:0", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and not (tmp_path / "x").exists()


def test_bench_refuses_to_overwrite_an_existing_json_file(capsys, tmp_path):
    existing = tmp_path / "b.json"
    existing.write_text("keep")
    code, _, err = run_cli(["bench", "--json", str(existing)], capsys)
    assert code == 2 and "already exists" in err and existing.read_text() == "keep"


@pytest.mark.parametrize("argv", [["bench", "--hidden", "1000000"], ["diagnose", "--cell", "rnn", "--hidden-size",
                                  "200000"], ["diagnose", "--cell", "rnn", "--seq-length", "100000000"],
                                  ["train", "adding", "--seq-length", "10000000"]])
def test_sizes_that_cannot_fit_are_one_line_errors_naming_the_machines_memory(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "GiB of memory" in err and err.count("\n") == 1


@pytest.mark.parametrize("build", [lambda: rnnkit.Linear(10**6, 10**6), lambda: rnnkit.LSTM(10, 10**6),
                                   lambda: rnnkit.CRF(10**6), lambda: rnnkit.Embedding(10**7, 10**5)],
                         ids=["Linear", "LSTM", "CRF", "Embedding"])
def test_constructors_refuse_parameters_that_cannot_fit_before_allocating(build):
    with pytest.raises(ConfigError, match="GiB of memory"):
        build()


def test_the_recurrent_layers_parameter_count_before_building_equals_the_built_layers():
    layer = rnnkit.LSTM(5, 7, num_layers=3, bidirectional=True)
    expected = rnnkit.LSTM._parameter_count(5, 7, 3, True, True, {})
    assert expected == sum(p.data.size for p in layer.parameters())


def test_the_memory_check_counts_float64_as_eight_bytes():
    with pytest.raises(ConfigError, match="numbers of 8 bytes"):
        validate.fits_in_memory(10**15, 8, "x")


@pytest.mark.parametrize("value", [-1, 2**63, 1.5, "3", True, None])
def test_a_seed_is_an_integer_from_zero_to_the_largest_seed(value):
    with pytest.raises(ConfigError, match="seed"):
        validate.seed(value)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_temperatures_and_tolerances_are_finite_and_positive(value):
    for check in (validate.temperature, validate.tolerance, validate.step_size):
        with pytest.raises(ConfigError):
            check(value)


def test_fit_predict_and_evaluate_refuse_a_negative_seed_or_a_zero_batch_size():
    model = rnnkit.Linear(2, 3)
    x, y = np.ones((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ConfigError, match="seed"):
        rnnkit.fit(model, x, y, seed=-1, progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        rnnkit.predict(model, x, batch_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        rnnkit.evaluate(model, x, y, batch_size=0)


@pytest.mark.parametrize("make", [
    lambda p: rnnkit.SGD(p, momentum=-0.5), lambda p: rnnkit.RMSprop(p, eps=-1e-8), lambda p: rnnkit.Adam(p, eps=-1),
    lambda p: rnnkit.Adam(p, betas=(1.0, 0.999)), lambda p: rnnkit.Adam(p, betas=0.9)],
    ids=["sgd-momentum", "rmsprop-eps", "adam-eps", "adam-beta1", "adam-betas-not-a-pair"])
def test_optimizers_refuse_the_values_pytorch_refuses(make):
    with pytest.raises(ConfigError):
        make(rnnkit.Linear(2, 2).parameters())


def test_gradcheck_refuses_a_zero_step():
    with pytest.raises(ConfigError, match="eps"):
        rnnkit.gradcheck(rnnkit.Linear(2, 2, dtype="float64"), np.ones((1, 2)), eps=0.0)


def test_pad_sequences_names_a_sequence_that_is_none():
    with pytest.raises(DTypeError, match="sequence 1"):
        pad_sequences([np.ones(3), None])


def test_tagger_tag_names_must_be_one_distinct_name_per_tag():
    with pytest.raises(ConfigError, match="each of the 3 tags"):
        TaggerConfig(vocab_size=5, num_tags=3, tag_names=["O"])
    with pytest.raises(ConfigError, match="distinct"):
        TaggerConfig(vocab_size=5, num_tags=2, tag_names=["O", "O"])


def test_seq2seq_refuses_a_non_positive_max_length_and_a_target_vocabulary_without_eos():
    with pytest.raises(ConfigError, match="max_length"):
        Seq2SeqConfig(source_vocab_size=5, target_vocab_size=5, max_length=0)
    with pytest.raises(ConfigError, match="<eos>"):
        Seq2SeqConfig(source_vocab_size=5, target_vocab_size=3)


def test_a_list_is_not_a_rate_for_a_models_zoneout():
    with pytest.raises(ConfigError, match="zoneout"):
        rnnkit.ModelConfig(input_size=3, output_size=3, zoneout=[0.3])


@pytest.mark.parametrize("content", ["\u00a0\u00a0\n".encode(), b"\x1c\x1d", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n\r\n"],
                         ids=["nbsp", "separators", "bom", "bom-newlines"])
def test_a_text_file_of_only_whitespace_is_empty(content, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        read_text(path)


@pytest.mark.parametrize("value", [0, 0.5, 0.7, -0.1, float("nan"), "0.1", None])
def test_a_validation_share_outside_zero_to_one_half_is_refused_alike_by_the_settings_and_the_text_task(value,
                                                                                                          tmp_path):
    from rnnkit.tasks.text import TextTask
    from rnnkit.training.data import DataConfig

    path = tmp_path / "t.txt"
    path.write_text("abcdefgh" * 50)
    with pytest.raises(ConfigError, match=r"--val-fraction must be (in \(0, 0\.5\)|a finite number)"):
        DataConfig(val_fraction=value)
    with pytest.raises(ConfigError, match=r"^val_fraction must be (in \(0, 0\.5\)|a finite number)"):
        TextTask(path, seq_length=5, batch_size=2, val_fraction=value)
    assert TextTask(path, seq_length=5, batch_size=2, val_fraction=0.25).val_fraction == 0.25
