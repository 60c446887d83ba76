"""Model kinds: rebuild any model from a checkpoint's description, or build the one a task needs.

Every checkpoint's ``meta.json`` records its model ``kind`` (absent: ``"sequence"``) and config, so
`model_from_meta` rebuilds any of them (`rnnkit.training.checkpoint.load_model` reads the files and calls it).
"""

from __future__ import annotations

import importlib

from ..errors import CheckpointError

KINDS = {  # kind → (module, config class, model class, what it is, in words)
    "sequence": ("rnnkit.models.sequence", "ModelConfig", "SequenceModel", "a sequence model"),
    "classifier": ("rnnkit.models.classifier", "ClassifierConfig", "SequenceClassifier", "a classifier"),
    "tagger": ("rnnkit.models.tagger", "TaggerConfig", "Tagger", "a tagging model"),
    "seq2seq": ("rnnkit.models.seq2seq", "Seq2SeqConfig", "Seq2Seq", "a seq2seq model"),
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
    """Rebuild the model a checkpoint describes (and load its weights if ``state`` is given)."""
    config_cls, model_cls = model_classes(kind_of(meta))
    model = model_cls(config_cls.from_dict(meta["model"]), rng=rng)
    if state is not None:
        model.load_state_dict(state)
    return model


def build_model(task, options: dict, rng=None):
    """The model ``task`` needs (its ``model_kind``), configured by the entries of ``options`` that are fields of
    that kind's config (the task supplies the sizes)."""
    from .configs import field_names

    config_cls, model_cls = model_classes(task.model_kind)
    names = field_names(config_cls)
    config = config_cls.for_task(task, **{k: v for k, v in options.items() if k in names})
    return model_cls(config, rng=rng)
