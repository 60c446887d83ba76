"""Regression tests of the reliability issue, second part: sizes that cannot fit are refused before anything is
allocated, a checkpoint's tensors and vocabularies must agree with its description, a resume is exact or refused,
and the smaller breaks (flags of other tasks, --init-from flags, reserved words, a byte-order mark, ...)."""

import hashlib
import itertools
import json
import shutil

import numpy as np
import pytest

from conftest import run_cli


def _one_line_error(code, err, *words):
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def _corpus(path, words=("to", "be", "or", "not"), repeat=200):
    path.write_text(" ".join(list(words) * repeat), encoding="utf-8")
    return path


def _text_run(data, out, steps, *extra):
    return ["train", "text", "--data", str(data), "--hidden-size", "8", "--seq-length", "10", "--batch-size", "4",
            "--max-steps", str(steps), "--eval-every", "100", "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A character model stopped after 3 updates, inside its first epoch (it carries a state)."""
    from rnnkit.cli import main

    root = tmp_path_factory.mktemp("consistency")
    data = _corpus(root / "data.txt")
    try:
        main(_text_run(data, root / "run", 3))
    except SystemExit as e:
        assert not e.code
    return root / "run", data


@pytest.fixture(scope="module")
def uninterrupted_weights(text_run):
    """The weights of the same run trained for 4 updates without a stop: what a resume from 3 must reach."""
    from rnnkit.cli import main
    from rnnkit.training import checkpoint

    run, data = text_run
    try:
        main(_text_run(data, run.parent / "uninterrupted", 4))
    except SystemExit as e:
        assert not e.code
    return checkpoint.load(run.parent / "uninterrupted")[1]


def _assert_resumed_like_an_uninterrupted_run(copy, weights):
    from rnnkit.training import checkpoint

    meta, resumed = checkpoint.load(copy)[:2]
    assert meta["progress"]["step"] == 4
    assert sorted(resumed) == sorted(weights)
    for name in weights:
        np.testing.assert_array_equal(resumed[name], weights[name], err_msg=name)


def _rewrite(run, tmp_path, name, change):
    """A copy of ``run`` whose checkpoint file ``name`` is replaced by ``change(old) → new`` (bytes or None to
    delete it); the manifest is updated to match, so only the content is inconsistent."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, symlinks=True)
    version = (copy / "checkpoint").resolve()
    manifest = json.loads((version / "manifest.json").read_text())
    data = change((version / name).read_bytes())
    if data is None:
        (version / name).unlink()
        del manifest["files"][name]
    else:
        (version / name).write_bytes(data)
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (version / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _arrays(change):
    """A change of a safetensors file: ``change(dict of arrays)`` edits the arrays in place."""
    from safetensors.numpy import load, save

    def rewrite(data):
        arrays = dict(load(data))
        change(arrays)
        return save(arrays)
    return rewrite


def _meta(change):
    def rewrite(data):
        meta = json.loads(data)
        change(meta)
        return json.dumps(meta).encode()
    return rewrite


# -- sizes that cannot fit ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [["--hidden-size", "100000"], ["--num-layers", "1000", "--hidden-size", "10000"]])
def test_a_model_too_large_for_the_machine_is_refused_with_the_estimate_before_allocating(capsys, tmp_path, flags):
    data = _corpus(tmp_path / "data.txt", repeat=2000)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "text", "--data", str(data), "--out", str(out), *flags], capsys)
    _one_line_error(code, err, "parameters", "GiB", "this machine has", flags[0])
    assert not out.exists()  # a failed start leaves no run directory


def test_a_checkpoint_describing_a_model_too_large_for_the_machine_is_refused_on_load(text_run, tmp_path, capsys):
    run, _ = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m["model"].update(hidden_size=2**31 - 1)))
    code, _, err = run_cli(["sample", str(copy), "-n", "5"], capsys)
    _one_line_error(code, err, "checkpoint's model", "GiB", "this machine has")


def _configs():
    from rnnkit.models.classifier import ClassifierConfig
    from rnnkit.models.seq2seq import Seq2SeqConfig
    from rnnkit.models.sequence import ModelConfig
    from rnnkit.models.tagger import TaggerConfig

    extras = {"rnn": [{}], "gru": [{}], "jordan": [{}], "lstm": [{}, {"proj_size": 3, "peephole": True}],
              "mogrifier": [{}, {"rank": 2, "rounds": 4}, {"proj_size": 2}],
              "rhn": [{"depth": 2}, {"depth": 3, "coupled": False}], "lnlstm": [{}, {"forget_bias": 1.0}],
              "lngru": [{}]}
    for cell, tokens, layers, bidirectional in itertools.product(extras, (False, True), (1, 3), (False, True)):
        if cell == "jordan" and (layers > 1 or bidirectional):
            continue
        for extra in extras[cell]:
            yield ModelConfig(input_size=7, output_size=4, tokens=tokens, embedding_size=5 if tokens else 0,
                              cell=cell, hidden_size=6, num_layers=layers, bidirectional=bidirectional, **extra)
    for cell, layers in itertools.product(("rnn", "lstm", "gru"), (1, 2)):
        yield ClassifierConfig(11, 3, embedding_size=5, cell=cell, hidden_size=6, num_layers=layers)
        yield TaggerConfig(11, 4, char_vocab_size=9, cell=cell, hidden_size=6, num_layers=layers)
        yield TaggerConfig(11, 4, cell=cell, hidden_size=6, crf=False)
        for attention in ("bahdanau", "luong-dot", "luong-general"):
            yield Seq2SeqConfig(11, 9, embedding_size=5, cell=cell, hidden_size=6, attention=attention)


def test_the_parameter_count_computed_from_a_description_equals_the_built_models_for_every_model_and_cell():
    from rnnkit.models.registry import model_classes

    for config in _configs():
        model = model_classes(config.kind)[1](config)
        assert config.parameter_count() == model.num_parameters(), config


def test_every_model_config_has_its_kind_as_a_class_attribute_and_bidirectional_as_a_field():
    from dataclasses import fields

    from rnnkit.models.registry import KINDS, model_classes

    for kind in KINDS:
        config_cls, _ = model_classes(kind)
        names = {f.name for f in fields(config_cls)}
        assert config_cls.kind == kind and "kind" not in names and "bidirectional" in names, kind


def _every_kind_of_config():
    from rnnkit.models.transcriber import TranscriberConfig

    yield from _configs()
    yield TranscriberConfig(5, 3, hidden_size=6)


def test_a_config_stored_with_its_kind_among_its_fields_as_older_checkpoints_did_still_loads():
    from rnnkit.errors import CheckpointError

    for config in _every_kind_of_config():
        stored = config.to_dict()
        assert "kind" not in stored and type(config).from_dict(stored) == config
        assert type(config).from_dict({**stored, "kind": config.kind}) == config
        with pytest.raises(CheckpointError, match=f"{type(config).__name__}.kind must be '{config.kind}'"):
            type(config).from_dict({**stored, "kind": "other"})


def test_the_models_that_always_read_both_ways_refuse_bidirectional_false():
    from rnnkit.errors import CheckpointError, ConfigError

    for config in _every_kind_of_config():
        if config.kind in ("sequence", "classifier"):
            continue
        assert config.bidirectional is True
        with pytest.raises(ConfigError, match=f"a {config.kind} model's encoder is always bidirectional"):
            type(config)(**{**config.to_dict(), "bidirectional": False})
        with pytest.raises(CheckpointError, match="always bidirectional"):
            type(config).from_dict({**config.to_dict(), "bidirectional": False})


# -- tensors and vocabularies against the description -------------------------------------------------------------
def _first_weight(arrays):
    return sorted(arrays)[0]


TENSOR_BREAKS = {
    "an integer tensor": (lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype(np.int32)}), "int32"),
    "a boolean tensor": (lambda a: a.update({_first_weight(a): a[_first_weight(a)] > 0}), "bool"),
    "a float64 tensor": (lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype(np.float64)}), "float64"),
    "a wrong shape": (lambda a: a.update({_first_weight(a): a[_first_weight(a)][:1]}), "shape"),
    "a NaN weight": (lambda a: a[_first_weight(a)].flat.__setitem__(0, np.nan), "NaN"),
    "a missing tensor": (lambda a: a.pop(_first_weight(a)), "missing"),
    "an extra tensor": (lambda a: a.update(extra=np.zeros(2, np.float32)), "unexpected"),
}


@pytest.mark.parametrize("case", sorted(TENSOR_BREAKS))
def test_model_tensors_that_disagree_with_the_description_are_refused_by_every_command(
        text_run, tmp_path, capsys, case):
    run, data = text_run
    change, word = TENSOR_BREAKS[case]
    copy = _rewrite(run, tmp_path, "model.safetensors", _arrays(change))
    for argv in (["sample", str(copy), "-n", "3"], _text_run(data, copy, 4, "--resume"),
                 _text_run(data, tmp_path / "new", 4, "--init-from", str(copy)),
                 ["eval", str(copy), "--data", str(data)]):
        code, _, err = run_cli(argv, capsys)
        _one_line_error(code, err, word, "checkpoint")
    assert not (tmp_path / "new").exists()


def test_a_vocabulary_shorter_than_the_model_is_refused_instead_of_an_index_error(text_run, tmp_path, capsys):
    run, _ = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m.update(vocab=m["vocab"][:-1])))
    code, _, err = run_cli(["sample", str(copy), "-n", "50", "--seed", "0"], capsys)
    _one_line_error(code, err, "vocabulary 'vocab'", "input_size")


@pytest.mark.parametrize("vocab", [["a", "a", "b"], "abc", [1, 2, 3]])
def test_a_vocabulary_that_is_not_a_list_of_distinct_strings_is_refused(text_run, tmp_path, capsys, vocab):
    run, _ = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m.update(vocab=vocab)))
    code, _, err = run_cli(["sample", str(copy)], capsys)
    _one_line_error(code, err, "vocabulary 'vocab'")


def test_labels_and_target_tokens_shorter_than_the_model_are_refused():
    from rnnkit.errors import CheckpointError
    from rnnkit.models.registry import check_vocabularies
    from rnnkit.models.seq2seq import Seq2SeqConfig
    from rnnkit.models.tagger import TaggerConfig

    tokens = ["<pad>", "<unk>", *"abc"]  # stored vocabularies start with their special tokens
    tagger = TaggerConfig(5, 3)
    check_vocabularies({"tokens": tokens, "labels": ["O", "B", "I"]}, tagger)
    with pytest.raises(CheckpointError, match="'labels' has 2 entries, the model's num_tags is 3"):
        check_vocabularies({"tokens": tokens, "labels": ["O", "B"]}, tagger)
    with pytest.raises(CheckpointError, match="'target_tokens' has 5 entries"):
        check_vocabularies({"tokens": tokens[:4], "target_tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "x"]},
                           Seq2SeqConfig(4, 6))


def test_export_refuses_a_model_with_nan_weights():
    pytest.importorskip("onnx")
    import rnnkit
    from rnnkit.errors import ConfigError

    layer = rnnkit.LSTM(3, 4)
    layer.weight_hh_l0.data[0, 0] = np.nan
    with pytest.raises(ConfigError, match="'weight_hh_l0' holds NaN"):
        rnnkit.export_onnx(layer, "never-written.onnx")


# -- exact resumes -----------------------------------------------------------------------------------------------
def test_a_checkpoint_without_optimizer_state_resumes_only_with_reset_optimizer(text_run, tmp_path, capsys):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "optimizer.safetensors", lambda old: None)
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, "no optimizer state", "--reset-optimizer")
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume", "--reset-optimizer"), capsys)
    assert code == 0, err
    code, _, err = run_cli(_text_run(data, tmp_path / "fresh", 4, "--reset-optimizer"), capsys)
    _one_line_error(code, err, "--reset-optimizer applies to --resume")


def test_optimizer_buffers_of_the_wrong_shape_or_dtype_are_refused(text_run, tmp_path, capsys):
    run, data = text_run

    def shrink(arrays):
        name = sorted(k for k in arrays if k != "steps")[0]
        arrays[name] = arrays[name].astype(np.int64)
    copy = _rewrite(run, tmp_path, "optimizer.safetensors", _arrays(shrink))
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, "optimizer buffer", "int64")


def test_a_checkpoint_stopped_inside_a_sequence_without_its_carried_state_is_refused(text_run, tmp_path, capsys):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "carry.safetensors", lambda old: None)
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, "no carried recurrent state")


def test_a_carried_state_of_the_wrong_shape_is_refused(text_run, tmp_path, capsys):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "carry.safetensors", _arrays(lambda a: a.update(state0=a["state0"][:, :, :2])))
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, "carried state 'state0'", "shape")


@pytest.mark.parametrize("field, value", [("window", 10**6), ("epoch", 10**6), ("batch", 10**6), ("step", -1),
                                          ("batch", True), ("elapsed", float("inf")), ("running", "x")])
def test_progress_fields_out_of_range_are_refused_instead_of_skipping_work(text_run, tmp_path, capsys, field, value):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m["progress"].update({field: value})))
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, f"progress {field!r}")


def test_the_untampered_checkpoint_still_resumes(text_run, uninterrupted_weights, tmp_path, capsys):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "meta.json", lambda old: old)
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    assert code == 0, err
    _assert_resumed_like_an_uninterrupted_run(copy, uninterrupted_weights)


# -- the smaller breaks ------------------------------------------------------------------------------------------
def test_init_from_refuses_a_model_flag_that_differs_from_the_checkpoint(text_run, tmp_path, capsys):
    run, data = text_run
    code, _, err = run_cli(["train", "text", "--data", str(data), "--out", str(tmp_path / "new"), "--init-from",
                            str(run), "--hidden-size", "32"], capsys)
    _one_line_error(code, err, "--init-from", "--hidden-size 32 (checkpoint: 8)")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("task, flags", [("text", ["--unit", "chars"]), ("reber", ["--data", "x.txt"]),
                                         ("adding", ["--val-fraction", "0.2"]), ("classify", ["--seq-length", "5"]),
                                         ("copy", ["--no-char-features"])])
def test_a_data_flag_of_another_task_is_refused_not_ignored(tmp_path, capsys, task, flags):
    code, _, err = run_cli(["train", task, *flags, "--out", str(tmp_path / "run")], capsys)
    _one_line_error(code, err, flags[0].removeprefix("--no-"), f"task {task!r}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("word", ["<eos>", "<pad>", "<bos>", "<unk>"])
def test_word_level_seq2seq_data_using_a_reserved_token_is_a_data_error(tmp_path, capsys, word):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"a b {i}\tc {word} d\n" for i in range(20)), encoding="utf-8")
    code, _, err = run_cli(["train", "seq2seq", "--data", str(data), "--unit", "words", "--out",
                            str(tmp_path / "run")], capsys)
    _one_line_error(code, err, repr(word), "reserves")


def test_a_literal_pad_token_in_new_text_is_unknown_not_padding():
    from rnnkit.tasks.vocab import TokenVocabulary

    vocab = TokenVocabulary(["a", "b"])
    assert vocab.encode(["a", "<pad>", "zz"]).tolist() == [2, 1, 1]


def test_a_utf8_byte_order_mark_is_not_part_of_the_text():
    from rnnkit.tasks.text import read_text

    assert read_text.__doc__
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\ufeffhello".encode())
    assert read_text(f.name) == "hello"


REPORT_FILES = ("reber.md", "reber.json", "reber.png")  # what an experiment writes beside its results.jsonl


@pytest.mark.parametrize("planted", REPORT_FILES)
def test_an_experiment_refuses_to_overwrite_any_file_of_an_earlier_one(tmp_path, capsys, planted):
    (tmp_path / planted).write_text("earlier")  # not made from a results.jsonl there
    code, _, err = run_cli(["experiment", "reber", "--out", str(tmp_path), "--seeds", "1"], capsys)
    _one_line_error(code, err, planted, "already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == [planted]  # nothing written beside it
    assert (tmp_path / planted).read_text() == "earlier"


def test_an_experiment_continues_only_results_of_its_own_configuration(tmp_path, capsys):
    other = tmp_path / "other"  # results of another configuration (time budget): continued only with its options
    other.mkdir()
    (other / "results.jsonl").write_text('{"rnnkit_results": 1, "experiment": "reber", "definition": {}, '
                                         '"options": {"time_budget": 5.0, "max_steps": 0}}\n')
    before = (other / "results.jsonl").read_text()
    code, _, err = run_cli(["experiment", "reber", "--out", str(other), "--seeds", "1"], capsys)
    _one_line_error(code, err, "another experiment configuration", "time_budget 5.0 (asked: 30.0)", "another --out")
    assert (other / "results.jsonl").read_text() == before and not (other / "reber.md").exists()


def test_sampling_at_a_vanishing_temperature_is_greedy_not_an_error(text_run):
    from rnnkit.cli.common import load_char_model
    from rnnkit.training.sampling import sample_text

    run, _ = text_run
    _, model, vocab = load_char_model(str(run))
    cold = sample_text(model, vocab, 20, "to", 1e-300, np.random.default_rng(0))
    greedy = sample_text(model, vocab, 20, "to", 1e-6, np.random.default_rng(1))
    assert cold == greedy


def test_a_checkpoint_of_an_earlier_version_with_one_rng_state_per_module_still_resumes(
        text_run, uninterrupted_weights, tmp_path, capsys):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m.update(rng=m["rng"] * 3)))
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    assert code == 0, err
    _assert_resumed_like_an_uninterrupted_run(copy, uninterrupted_weights)


@pytest.mark.parametrize("rng", [[{"bit_generator": "PCG64", "state": "x"}], "x", [1, 2]])
def test_a_damaged_random_generator_state_is_a_one_line_checkpoint_error(text_run, tmp_path, capsys, rng):
    run, data = text_run
    copy = _rewrite(run, tmp_path, "meta.json", _meta(lambda m: m.update(rng=rng)))
    code, _, err = run_cli(_text_run(data, copy, 4, "--resume"), capsys)
    _one_line_error(code, err, "random generator state")
