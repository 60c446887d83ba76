"""Model kinds: rebuild any model from a checkpoint's description, or build the one a task needs.

Every checkpoint's ``meta.json`` records its model ``kind`` (absent: ``"sequence"``) and config, so
`model_from_meta` rebuilds any of them (`rnnkit.training.checkpoint.load_model` reads the files and calls it).
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import CheckpointError
from .footprint import check_fits

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
        for name in names:
            size = getattr(config, name, None)
            if size is not None and size != len(entries):
                raise CheckpointError(f"checkpoint vocabulary {key!r} has {len(entries)} entries, the model's "
                                      f"{name} is {size}")


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


def build_model(task, options: dict, rng=None):
    """The model ``task`` needs (its ``model_kind``), configured by the entries of ``options`` that are fields of
    that kind's config (the task supplies the sizes)."""
    from .configs import field_names

    config_cls, model_cls = model_classes(task.model_kind)
    names = field_names(config_cls)
    config = config_cls.for_task(task, **{k: v for k, v in options.items() if k in names})
    check_training_fits(config, task)
    return model_cls(config, rng=rng)


def check_training_fits(config, task) -> None:
    """`ConfigError` unless training ``config`` on ``task``'s batches fits in memory (`check_fits`)."""
    check_fits(config, getattr(task, "batch_size", 0), getattr(task, "seq_length", 0),
               hint="reduce --hidden-size, --num-layers or --batch-size")
