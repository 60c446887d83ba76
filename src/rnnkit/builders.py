"""Building tasks and models from command-line options or from a checkpoint's description.

Every checkpoint's ``meta.json`` records its model ``kind`` and config, so `model_from_meta` rebuilds any of
them; word-level tasks also store their vocabularies (``tokens``, ``chars_vocab``, ``labels``, ``target_tokens``).
"""

from __future__ import annotations

import importlib

import numpy as np

from .models import check_encoder_cell
from .vocab import LabelSet, TokenVocabulary

KINDS = {  # kind → (module, config class, model class)
    "sequence": ("rnnkit.models", "ModelConfig", "SequenceModel"),
    "classifier": ("rnnkit.classify", "ClassifierConfig", "SequenceClassifier"),
    "tagger": ("rnnkit.tagging", "TaggerConfig", "Tagger"),
    "seq2seq": ("rnnkit.seq2seq", "Seq2SeqConfig", "Seq2Seq"),
}
STRUCTURED_TASKS = ("classify", "tagging", "seq2seq")


def _classes(kind: str):
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} in checkpoint (expected one of {sorted(KINDS)})")
    module, config_cls, model_cls = KINDS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, model_cls)


def model_from_meta(meta: dict, state: dict | None = None, rng=None):
    """Rebuild the model a checkpoint describes (and load its weights if ``state`` is given)."""
    config_cls, model_cls = _classes(meta.get("kind", "sequence"))
    model = model_cls(config_cls.from_dict(meta["model"]), rng=rng)
    if state is not None:
        model.load_state_dict(state)
    return model


def _vocab(meta, key, cls):
    if meta and meta.get(key) is not None:
        return cls(meta[key])  # a TokenVocabulary list starts with <pad>, <unk>, which it re-adds itself
    return None


def build_structured(task: str, data: str | None, opts: dict, meta: dict | None):
    """(task object, model) for 'classify', 'tagging' or 'seq2seq'; ``meta`` is the checkpoint being resumed."""
    from .tasks import DataError

    rng = np.random.default_rng(opts["seed"])
    embedding = opts["embedding_size"] or 64
    cell = opts["cell"]
    if task != "seq2seq":  # seq2seq checks its own, narrower set of cells
        check_encoder_cell(cell, f"task {task!r}")  # before any data is read
    if task == "classify":
        from .classify import ClassificationTask, ClassifierConfig, SequenceClassifier

        if not data:
            raise DataError("task 'classify' needs --data FILE (one 'label<TAB>text' per line)")
        the_task = ClassificationTask(data, unit=opts["unit"], batch_size=opts["batch_size"],
                                      val_fraction=opts["val_fraction"], seed=opts["seed"],
                                      vocabulary=_vocab(meta, "tokens", TokenVocabulary),
                                      labels=_vocab(meta, "labels", LabelSet))
        config = ClassifierConfig(len(the_task.vocab), len(the_task.labels), embedding_size=embedding, cell=cell,
                                  hidden_size=opts["hidden_size"], num_layers=opts["num_layers"],
                                  bidirectional=opts["bidirectional"], pooling=opts["pooling"],
                                  dropout=opts["dropout"], dtype=opts["dtype"])
        model_cls = SequenceClassifier
    elif task == "tagging":
        from .tagging import Tagger, TaggerConfig, TaggingTask

        if not data:
            raise DataError("task 'tagging' needs --data FILE (CoNLL columns: token ... tag, blank line between "
                            "sentences)")
        the_task = TaggingTask(data, val_path=opts["val_data"], batch_size=opts["batch_size"],
                               val_fraction=opts["val_fraction"], seed=opts["seed"],
                               char_features=opts["char_features"],
                               vocabulary=_vocab(meta, "tokens", TokenVocabulary),
                               char_vocabulary=_vocab(meta, "chars_vocab", TokenVocabulary),
                               labels=_vocab(meta, "labels", LabelSet))
        config = TaggerConfig(len(the_task.vocab), len(the_task.labels),
                              char_vocab_size=len(the_task.char_vocab) if the_task.char_vocab else 0,
                              embedding_size=embedding, cell=cell, hidden_size=opts["hidden_size"],
                              num_layers=opts["num_layers"], crf=opts["crf"], tag_names=the_task.labels.labels,
                              dtype=opts["dtype"])
        model_cls = Tagger
    else:
        from .seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqTask

        the_task = Seq2SeqTask(data, unit=opts["unit"], batch_size=opts["batch_size"],
                               val_fraction=opts["val_fraction"], seed=opts["seed"],
                               vocabulary=_vocab(meta, "tokens", TokenVocabulary),
                               target_vocabulary=_vocab(meta, "target_tokens", TokenVocabulary))
        config = Seq2SeqConfig(len(the_task.vocab), len(the_task.target_vocab), embedding_size=embedding,
                               cell=cell, hidden_size=opts["hidden_size"], attention=opts["attention"],
                               beam_size=opts["beam_size"], dtype=opts["dtype"])
        model_cls = Seq2Seq
    if meta is not None:
        config = type(config).from_dict(meta["model"])
    return the_task, model_cls(config, rng=rng)
