"""Model kinds: rebuild any model from a checkpoint's description, or build the one a task needs.

Every checkpoint's ``meta.json`` records its model ``kind`` (absent: ``"sequence"``) and config, so
`model_from_meta` rebuilds any of them (`rnnkit.training.checkpoint.load_model` reads the files and calls it).
"""

from __future__ import annotations

import importlib
import math
import typing

import numpy as np

from ..errors import CheckpointError, ConfigError
from .footprint import check_fits, machine_memory

KINDS = {  # kind → (module, config class, model class, what it is, in words)
    "sequence": ("rnnkit.models.sequence", "ModelConfig", "SequenceModel", "a sequence model"),
    "classifier": ("rnnkit.models.classifier", "ClassifierConfig", "SequenceClassifier", "a classifier"),
    "tagger": ("rnnkit.models.tagger", "TaggerConfig", "Tagger", "a tagging model"),
    "seq2seq": ("rnnkit.models.seq2seq", "Seq2SeqConfig", "Seq2Seq", "a seq2seq model"),
    "transcriber": ("rnnkit.models.transcriber", "TranscriberConfig", "Transcriber", "a CTC transcription model"),
}


def model_classes(kind: str):
    """(config class, model class) of a model kind."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise CheckpointError(f"unknown model kind {kind!r} in checkpoint (expected one of {sorted(KINDS)})")
    module, config_cls, model_cls, _ = KINDS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, model_cls)


def kind_of(meta: dict) -> str:
    return meta.get("kind", "sequence")


#: model kind → the vocabularies its checkpoint must hold (the commands that apply the model read them)
REQUIRED_VOCABULARIES = {"classifier": ("tokens", "labels"), "tagger": ("tokens", "labels"),
                         "seq2seq": ("tokens", "target_tokens")}
#: vocabulary key → the special entries it starts with, in this order (their ids are fixed)
SPECIAL_ENTRIES = {"tokens": ("<pad>", "<unk>"), "target_tokens": ("<pad>", "<unk>", "<bos>", "<eos>"),
                   "chars_vocab": ("<pad>", "<unk>")}


def check_description(meta: dict) -> None:
    """`CheckpointError` naming the first field of a checkpoint's ``meta.json`` that a loader cannot use — checked
    before anything runs, by every command that loads one (`rnnkit.training.checkpoint.load_model`, --resume,
    --init-from): the model kind and config (`JSONConfig.from_dict`: types, ranges, sizes that fit in memory); the
    task (a known name, its data settings; a CTC task's sizes); the training settings (types and the flags' ranges,
    seeds included); the vocabularies (present where the kind needs them, distinct strings, special tokens first,
    as long as the model's sizes; a tagger's tag names equal to its labels); the random generator states."""
    from ..training.data import DataConfig
    from ..training.trainer import TrainConfig
    from .configs import check_option_ranges, check_value, fields_of

    config_cls, _ = model_classes(kind_of(meta))
    config = config_cls.from_dict(meta.get("model"))
    task = _check_task(meta.get("task"))
    DataConfig.from_dict(fields_of(DataConfig, task))
    train = meta.get("train")
    if not isinstance(train, dict):
        raise CheckpointError(f"checkpoint training settings must be an object, got {type(train).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    for name, value in train.items():
        if name in hints:
            check_value(TrainConfig, name, value, hints[name])
    try:
        check_option_ranges(TrainConfig(**{k: v for k, v in train.items() if k in hints}), skip_defaults=True)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"checkpoint TrainConfig: {e}") from None
    for key in REQUIRED_VOCABULARIES.get(kind_of(meta), ()) + (("vocab",) if task["task"] == "text" else ()):
        if meta.get(key) is None:
            raise CheckpointError(f"checkpoint lacks its vocabulary {key!r} (a {kind_of(meta)} model needs it)")
    check_vocabularies(meta, config)
    if kind_of(meta) == "tagger" and getattr(config, "tag_names", None) != meta["labels"]:
        raise CheckpointError(f"checkpoint tag_names {getattr(config, 'tag_names', None)!r:.60} are not its labels "
                              f"{meta['labels']!r:.60}")
    _check_rng(meta.get("rng"))


#: task settings that are counts or seeds (the others: the data settings of `DataConfig`, names, paths, hashes)
TASK_COUNTS = ("seed", "batch_size", "seq_length", "batches_per_epoch", "num_symbols", "features", "min_symbols",
               "max_symbols", "min_frames", "max_frames", "max_silence")


def _check_task(task) -> dict:
    from ..tasks.registry import TASKS

    if not isinstance(task, dict) or not isinstance(task.get("task"), str) or task["task"] not in TASKS:
        raise CheckpointError(f"checkpoint task must be an object naming one of {sorted(TASKS)}, got {task!r:.60}")
    for name, value in task.items():
        if name in TASK_COUNTS and (type(value) is not int or not 0 <= value <= 2**31 - 1):
            raise CheckpointError(f"checkpoint task setting {name!r} must be an integer in [0, {2**31 - 1}], got "
                                  f"{value!r:.60}")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise CheckpointError(f"checkpoint task setting {name!r} must be a non-negative number, a string, a "
                                  f"bool or null, got {value!r:.60}")
    if task["task"] == "ctc":
        _check_ctc_sizes(task)
    return task


def _check_ctc_sizes(task: dict) -> None:
    """A CTC task's generator: settings the task itself accepts (`check_generator_settings`), and a validation batch
    (128 sequences of the longest length, ``features`` float64 values a frame) within the machine's memory."""
    from ..errors import DataError
    from ..tasks.ctc import check_generator_settings, longest_sequence, stored_settings

    try:
        settings = stored_settings(task)
        check_generator_settings(settings)
    except DataError as e:
        raise CheckpointError(f"checkpoint {e}") from None
    frames, features = longest_sequence(settings), settings.get("features", 1)
    memory = machine_memory() or 2**40
    if 128 * frames * features * 8 > memory // 4:
        raise CheckpointError(f"checkpoint task 'ctc' sequences of up to {frames} frames x {features} values do not "
                              f"fit in this machine's memory ({memory / 2**30:.1f} GiB)")


def _check_rng(states) -> None:
    """A list of NumPy bit-generator states (objects naming their generator and holding its state)."""
    ok = isinstance(states, list) and states and all(
        isinstance(s, dict) and isinstance(s.get("bit_generator"), str) and isinstance(s.get("state"), dict)
        for s in states)
    if not ok:
        raise CheckpointError(f"checkpoint random generator states must be a non-empty list of generator states, "
                              f"got {states!r:.60}")


def model_from_meta(meta: dict, state: dict | None = None, rng=None):
    """Rebuild the model a checkpoint describes (and load its weights if ``state`` is given). The description
    is checked before anything is built — it must fit in memory, and its vocabularies must match its sizes —
    and the tensors after: names, shapes, a floating dtype and finite values (`CheckpointError` otherwise)."""
    config_cls, model_cls = model_classes(kind_of(meta))
    config = config_cls.from_dict(meta["model"])
    check_fits(config, what="the checkpoint's model", error=CheckpointError)
    check_vocabularies(meta, config)
    model = model_cls(config, rng=rng)
    if state is not None:
        check_state(model, state)
        model.load_state_dict(state)
    return model


#: vocabulary key of a checkpoint's meta → the config fields whose value is its size
VOCABULARY_SIZES = {"vocab": ("input_size", "output_size"), "tokens": ("vocab_size", "source_vocab_size"),
                    "target_tokens": ("target_vocab_size",), "chars_vocab": ("char_vocab_size",),
                    "labels": ("num_classes", "num_tags")}


def check_vocabularies(meta: dict, config) -> None:
    """`CheckpointError` unless each stored vocabulary is a list of distinct strings as long as the model's
    matching size (a shorter list would fail later, when an id past its end is decoded)."""
    for key, names in VOCABULARY_SIZES.items():
        entries = meta.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise CheckpointError(f"checkpoint vocabulary {key!r} must be a list of strings, got {entries!r:.60}")
        if len(set(entries)) != len(entries):
            raise CheckpointError(f"checkpoint vocabulary {key!r} repeats entries ({len(entries)} entries, "
                                  f"{len(set(entries))} distinct)")
        special = SPECIAL_ENTRIES.get(key, ())
        if tuple(entries[:len(special)]) != special:
            raise CheckpointError(f"checkpoint vocabulary {key!r} must start with {list(special)}, got "
                                  f"{entries[:len(special)]!r:.60}")
        for name in names:
            size = getattr(config, name, None)
            if size is not None and size != len(entries):
                raise CheckpointError(f"checkpoint vocabulary {key!r} has {len(entries)} entries, the model's "
                                      f"{name} is {size}")


MAX_WEIGHT = 1e30  # a larger weight overflows the first matrix product (float32 ends at 3.4e38)


def check_state(model, state: dict) -> None:
    """`CheckpointError` unless ``state`` holds exactly the model's parameters, each with its shape, the model's
    floating dtype and finite values (integer or boolean tensors are not silently cast)."""
    own = dict(model.named_parameters())
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint tensors do not match its model description: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for name, p in own.items():
        value = state[name]
        if value.dtype != p.data.dtype:
            raise CheckpointError(f"checkpoint tensor {name!r} is {value.dtype}, the model description says "
                                  f"{p.data.dtype}")
        if value.shape != p.data.shape:
            raise CheckpointError(f"checkpoint tensor {name!r} has shape {value.shape}, the model description "
                                  f"gives {p.data.shape}")
        if not np.isfinite(value).all():
            raise CheckpointError(f"checkpoint tensor {name!r} holds NaN or infinite values")
        if value.size and np.abs(value).max() > MAX_WEIGHT:
            raise CheckpointError(f"checkpoint tensor {name!r} holds a value of magnitude {np.abs(value).max():.3g} "
                                  f"(expected at most {MAX_WEIGHT:g}: no trained model's weight is that large)")


def build_model(task, options: dict, rng=None):
    """The model ``task`` needs (its ``model_kind``), configured by the entries of ``options`` that are fields of
    that kind's config (the task supplies the sizes)."""
    from .configs import fields_of

    config_cls, model_cls = model_classes(task.model_kind)
    config = config_cls.for_task(task, **fields_of(config_cls, options))
    check_training_fits(config, task)
    return model_cls(config, rng=rng)


def check_training_fits(config, task) -> None:
    """`ConfigError` unless training ``config`` on ``task``'s batches fits in memory (`check_fits`)."""
    check_fits(config, getattr(task, "batch_size", 0), getattr(task, "seq_length", 0),
               hint="reduce --hidden-size, --num-layers or --batch-size")
