"""The fuzz suite's second part (the harness and the property are those of tests/test_fuzz_api.py): the models
(`SequenceClassifier`, `Tagger`, a small `Seq2Seq`) — their configs and their forward inputs —, the losses
(forward with bad shapes, dtypes and NaN; backward), the optimizers' constructor arguments, and the arguments of
`fit`, `predict` and `evaluate`. A campaign counts them in the same report (categories "models", "losses",
"optimizers", "fit/predict")."""

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz_harness import FEW, MAX_SIZE, counted, finite, report, verdict  # noqa: E402, F401 - `report`: the table
from rnnkit import (  # noqa: E402
    SGD,
    Adagrad,
    Adam,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    Linear,
    MSELoss,
    RMSprop,
    evaluate,
    fit,
    predict,
)
from rnnkit.errors import ConfigError, DTypeError, ShapeError  # noqa: E402
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier  # noqa: E402
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402
from rnnkit.models.tagger import Tagger, TaggerConfig  # noqa: E402
from rnnkit.tasks.seq2seq import BOS_ID, EOS_ID  # noqa: E402
from rnnkit.validate import MAX_BEAM  # noqa: E402
from test_fuzz_api import KINDS, VALUES, is_int, is_real  # noqa: E402

VOCAB, CLASSES, TAGS, TARGET_VOCAB = 7, 3, 3, 6
SMALL = {"embedding_size": 4, "hidden_size": 5, "dtype": "float64"}
MODELS = {
    "SequenceClassifier": (ClassifierConfig, SequenceClassifier, {"vocab_size": VOCAB, "num_classes": CLASSES}),
    "Tagger": (TaggerConfig, Tagger, {"vocab_size": VOCAB, "num_tags": TAGS}),
    "Seq2Seq": (Seq2SeqConfig, Seq2Seq, {"source_vocab_size": VOCAB, "target_vocab_size": TARGET_VOCAB}),
}
CONFIG_KINDS = {
    "SequenceClassifier": {"vocab_size": "size", "num_classes": "size", "embedding_size": "size",
                           "hidden_size": "size", "num_layers": "count", "dropout": "prob", "bidirectional": "bool"},
    "Tagger": {"vocab_size": "size", "num_tags": "size", "embedding_size": "size", "hidden_size": "size",
               "num_layers": "count", "char_vocab_size": "size0", "char_embedding_size": "size",
               "char_hidden_size": "size", "crf": "bool"},
    "Seq2Seq": {"source_vocab_size": "size", "target_vocab_size": "target vocabulary", "embedding_size": "size",
                "hidden_size": "size", "beam_size": "beam", "max_length": "size"},
}
CONFIG_CHECKS = {**KINDS, "size0": lambda v: is_int(v) and 0 <= v <= MAX_SIZE,
                 "beam": lambda v: is_int(v) and 1 <= v <= MAX_BEAM,
                 "target vocabulary": lambda v: is_int(v) and max(BOS_ID, EOS_ID) < v - 1 < MAX_SIZE}  # + one more
SMALL_VALUES = [v for v in VALUES if not (is_int(v) and v > 64)]  # a valid size stays small enough to build


def build(name: str, **changes):
    config_cls, model_cls, base = MODELS[name]
    return model_cls(config_cls(**{**base, **SMALL, **changes}), rng=np.random.default_rng(0))


def model_smoke(name: str, model) -> None:
    """A valid forward and backward of a freshly built model: finite outputs of the documented shape."""
    config = model.config
    vocab = config.source_vocab_size if name == "Seq2Seq" else config.vocab_size
    ids, lengths = np.array([[1, 2, 3], [4, 1, 0]]) % vocab, np.array([3, 2])  # ids within a drawn vocabulary
    if name == "Seq2Seq":
        out = model.forward(ids, lengths, np.array([[1, 2], [2, 3]]) % config.target_vocab_size)
        assert out.shape == (2, 2, config.target_vocab_size), f"logits of shape {out.shape}"
    elif name == "Tagger" and config.char_vocab_size:
        chars = np.arange(10).reshape(5, 2) % config.char_vocab_size  # two characters for each of the 5 words
        out = model.forward(ids, lengths, chars)
    else:
        out = model.forward(ids, lengths)
        width = config.num_classes if name == "SequenceClassifier" else (2, 3, config.num_tags)
        assert out.shape == ((2, width) if name == "SequenceClassifier" else width), f"output of shape {out.shape}"
    finite(out)
    assert model.backward(np.ones_like(out)) is None


@FEW
@given(data=st.data())
@counted("models")
def test_model_configs_of_the_wrong_type_or_range_are_refused_by_name(data):
    name = data.draw(st.sampled_from(list(MODELS)), label="model")
    arg = data.draw(st.sampled_from(list(CONFIG_KINDS[name])), label="field")
    value = data.draw(st.sampled_from(SMALL_VALUES), label="value")
    valid = CONFIG_CHECKS[CONFIG_KINDS[name][arg]](value)
    verdict("models", valid, lambda: model_smoke(name, build(name, **{arg: value})), (arg,),
            what=f"{name} config {arg}={value!r:.40}")


def model_input(draw, name: str) -> tuple[dict, bool, str]:
    """The forward arguments of a model with one drawn change → (arguments, valid, the changed argument)."""
    args = {"ids": np.array([[1, 2, 3], [4, 1, 2]]), "lengths": np.array([3, 2])}
    if name == "Seq2Seq":
        args["target_in"] = np.array([[1, 2], [2, 3]])
    key = draw(st.sampled_from(list(args)), label="argument")
    high = TARGET_VOCAB if key == "target_in" else VOCAB
    kind = draw(st.sampled_from(["valid", "too high", "negative", "float", "nan", "bool", "3-D", "empty batch",
                                 "list", "string", "none"]), label="change")
    good = args[key]
    bad = good.copy()
    if kind in ("too high", "negative"):  # one id past the vocabulary, or a length past the 3 steps
        bad[(0, -1) if key != "lengths" else 0] = {"too high": high if key != "lengths" else 4, "negative": -1}[kind]
    changed = {"float": good.astype(float), "nan": np.where(good == good.flat[0], np.nan, good),
               "bool": good > 0, "3-D": good[..., None], "empty batch": good[:0], "list": good.tolist(),
               "string": "12", "none": None, "valid": good}.get(kind, bad)
    args[key] = changed
    valid = kind in ("valid", "list") or (kind == "none" and key == "lengths")
    return args, valid, f"{key} {kind}"


@FEW
@given(data=st.data())
@counted("models")
def test_model_inputs_out_of_range_or_of_the_wrong_kind_are_refused_by_name(data):
    name = data.draw(st.sampled_from(list(MODELS)), label="model")
    model = build(name)
    args, valid, what = model_input(data.draw, name)
    key = what.split()[0]
    names = {"ids": ("ids", "words", "source"), "lengths": ("lengths",), "target_in": ("target_in", "target")}[key]

    def call():
        out = model.forward(*args.values())
        finite(out)
        model.backward(np.ones_like(out))

    verdict("models", valid, call, names, what=f"{name} {what}")


# The campaign's breaks (issue 23) as fixed examples: each error names what the user wrote, in one line.
@pytest.mark.parametrize("name, field, value", [
    ("SequenceClassifier", "vocab_size", 0), ("SequenceClassifier", "embedding_size", None),
    ("SequenceClassifier", "num_classes", 2.0), ("Tagger", "vocab_size", "yes"), ("Tagger", "num_tags", "dot"),
    ("Tagger", "char_vocab_size", -1), ("Seq2Seq", "source_vocab_size", 2.5), ("Seq2Seq", "embedding_size", True),
    ("Seq2Seq", "beam_size", MAX_BEAM + 1)])
def test_a_model_config_error_names_the_config_field_not_an_inner_layers_argument(name, field, value):
    with pytest.raises(ConfigError, match=f"^{field} must be an integer") as caught:
        build(name, **{field: value})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name, field, value", [("Tagger", "crf", None), ("Tagger", "crf", "yes"),
                                                ("SequenceClassifier", "bidirectional", 1)])
def test_a_model_switch_that_is_not_true_or_false_is_refused_by_name(name, field, value):
    with pytest.raises(ConfigError, match=f"^{field} must be True or False"):
        build(name, **{field: value})


def test_a_3d_or_empty_target_in_is_refused_by_name_in_one_line():
    model, source, lengths = build("Seq2Seq"), np.array([[1, 2, 3], [4, 1, 2]]), np.array([3, 2])
    for target_in in (np.ones((2, 2, 1), np.int64), np.ones((0, 2), np.int64), np.ones((2, 0), np.int64)):
        with pytest.raises(ShapeError, match=r"^target_in must be \(B, T\) token ids with no empty axis"):
            model.forward(source, lengths, target_in)
    with pytest.raises(ShapeError, match=r"^target_in must have one row per source sequence \(2\)"):
        model.forward(source, lengths, np.ones((3, 2), np.int64))


@pytest.mark.parametrize("name, argument, call", [
    ("SequenceClassifier", "ids", lambda m: m.forward(np.array([[1, VOCAB]]))),
    ("Tagger", "words", lambda m: m.forward(np.array([[1.0, 2.0]]))),
    ("Tagger", "lengths", lambda m: m.forward(np.array([[1, 2]]), "12")),
    ("Seq2Seq", "source", lambda m: m.forward(np.array([[-1, 2]]), None, np.array([[1, 2]]))),
    ("Seq2Seq", "source_lengths", lambda m: m.forward(np.array([[1, 2]]), np.array([3]), np.array([[1, 2]]))),
    ("Seq2Seq", "target_in", lambda m: m.forward(np.array([[1, 2]]), None, np.array([[1, TARGET_VOCAB]])))])
def test_a_model_input_error_names_the_models_argument_not_its_embedding(name, argument, call):
    with pytest.raises((ShapeError, DTypeError), match=f"^{argument} must") as caught:
        call(build(name))
    assert "Embedding" not in str(caught.value)


LOSSES = {"MSELoss": (MSELoss, "real"), "BCEWithLogitsLoss": (BCEWithLogitsLoss, "binary"),
          "BCELoss": (BCELoss, "binary"), "CrossEntropyLoss": (CrossEntropyLoss, "classes")}
LOSS_NAMES = ("prediction", "predictions", "target", "targets", "logits", "mask", "probabilities")


def loss_arguments(rng, kind: str, loss: str):
    pred = rng.standard_normal((3, 4))
    if loss == "BCELoss":
        pred = 1 / (1 + np.exp(-pred))
    target = {"real": rng.standard_normal((3, 4)), "binary": (rng.random((3, 4)) > 0.5).astype(float),
              "classes": rng.integers(0, 4, 3)}[kind]
    return pred, target


@FEW
@given(data=st.data())
@counted("losses")
def test_loss_inputs_of_the_wrong_shape_dtype_or_with_nan_are_refused_by_name(data):
    name = data.draw(st.sampled_from(list(LOSSES)), label="loss")
    cls, kind = LOSSES[name]
    rng = np.random.default_rng(data.draw(st.integers(0, 3), label="seed"))
    pred, target = loss_arguments(rng, kind, name)
    which = data.draw(st.sampled_from(["prediction", "target", "mask"]), label="argument")
    change = data.draw(st.sampled_from(["valid", "nan", "inf", "shape", "int", "complex", "string", "list",
                                        "0-d", "empty"]), label="change")
    mask = np.ones(pred.shape[:-1] if kind == "classes" else pred.shape, bool)
    value = {"prediction": pred, "target": target, "mask": mask}[which]
    # non-finite predictions pass (the trainer's non-finite check sees the loss); targets and masks must be finite
    # (probabilities must lie in [0, 1]: an infinite one is refused)
    non_finite_ok = change == "nan" or (change == "inf" and name != "BCELoss")
    valid = change == "valid" or (which == "prediction" and non_finite_ok) or (
        change == "int" and which != "prediction") or (change == "list" and which == "mask")
    if change in ("nan", "inf"):
        value = value.astype(float)
        value.flat[0] = np.nan if change == "nan" else np.inf
    elif change == "shape":  # fewer classes: still valid for cross-entropy if every target is below their count
        value = value[..., :-1] if value.ndim > 1 else value[:-1]
        valid = name == "CrossEntropyLoss" and which == "prediction" and target.max() < value.shape[-1]
    elif change in ("int", "complex"):
        value = value.astype({"int": np.int64, "complex": np.complex128}[change])
    elif change == "string":
        value = value.astype(str)
    elif change == "list":
        value = value.tolist()
    elif change == "0-d":
        value = np.float64(0.5)
    elif change == "empty":
        value = value[:0]
    args = {"prediction": pred, "target": target, "mask": mask, which: value}
    loss = cls()

    def call():
        out = loss.forward(args["prediction"], args["target"], args["mask"])
        grad = loss.backward()
        assert grad.shape == np.shape(args["prediction"]), f"gradient of shape {grad.shape}"
        if np.isfinite(args["prediction"]).all():
            assert np.isfinite(out) and np.isfinite(grad).all(), f"loss {out} or its gradient not finite"

    verdict("losses", valid, call, LOSS_NAMES, what=f"{name} {which} {change}")


OPTIMIZERS = {
    "SGD": (SGD, {"lr": "positive", "momentum": "nonnegative", "nesterov": "bool", "weight_decay": "nonnegative"}),
    "Adagrad": (Adagrad, {"lr": "positive", "eps": "nonnegative", "weight_decay": "nonnegative"}),
    "RMSprop": (RMSprop, {"lr": "positive", "alpha": "unit", "eps": "nonnegative", "momentum": "nonnegative",
                          "centered": "bool", "weight_decay": "nonnegative"}),
    "Adam": (Adam, {"lr": "positive", "betas": "betas", "eps": "nonnegative", "weight_decay": "nonnegative"}),
}
OPTIMIZER_KINDS = {
    "positive": lambda v: is_real(v) and v > 0, "nonnegative": lambda v: is_real(v) and v >= 0,
    "unit": lambda v: is_real(v) and 0 <= v <= 1, "bool": KINDS["bool"],
    "betas": lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(is_real(b) and 0 <= b < 1 for b in v),
}
BETAS = [(0.9, 0.999), [0.5, 0.5], (1.0, 0.9), (0.9, -0.1), (0.9,), (0.9, float("nan")), "0.9,0.99", (0.9, "0.9")]


@FEW
@given(data=st.data())
@counted("optimizers")
def test_optimizer_arguments_of_the_wrong_type_or_range_are_refused_by_name(data):
    name = data.draw(st.sampled_from(list(OPTIMIZERS)), label="optimizer")
    cls, kinds = OPTIMIZERS[name]
    arg = data.draw(st.sampled_from(list(kinds)), label="argument")
    value = data.draw(st.sampled_from(VALUES + (BETAS if arg == "betas" else [])), label="value")
    valid = OPTIMIZER_KINDS[kinds[arg]](value) and not (arg == "nesterov" and value)  # nesterov needs momentum
    layer = Linear(3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    names = (arg, "Nesterov") if arg == "nesterov" else (arg,)

    def call():
        optimizer = cls(layer.parameters(), **{arg: value})
        layer.forward(np.ones((2, 3)))
        layer.backward(np.ones((2, 2)))
        optimizer.step()
        finite(*(p.data for p in layer.parameters()))

    verdict("optimizers", valid, call, names, what=f"{name}({arg}={value!r:.40})")


FIT_KINDS = {"epochs": "size", "batch_size": "size", "lr": "positive", "grad_clip": "nonnegative", "k1": "size0",
             "k2": "size0", "seed": "seed", "shuffle": "bool", "progress": "bool"}
FIT_CHECKS = {**KINDS, **OPTIMIZER_KINDS, "size0": lambda v: is_int(v) and 0 <= v <= MAX_SIZE,
              "seed": lambda v: is_int(v) and 0 <= v < 2**63}


@FEW
@given(data=st.data())
@counted("fit/predict")
def test_fit_predict_and_evaluate_arguments_of_the_wrong_type_or_range_are_refused_by_name(data):
    where = data.draw(st.sampled_from(["fit", "predict", "evaluate"]), label="function")
    arg = data.draw(st.sampled_from(list(FIT_KINDS) if where == "fit" else ["batch_size"]), label="argument")
    value = data.draw(st.sampled_from(SMALL_VALUES), label="value")  # a valid epoch count stays small
    valid = FIT_CHECKS[FIT_KINDS[arg]](value) or (where == "predict" and value is None)
    valid = valid and not (arg == "k2" and value)  # k2 needs k1, which stays 0 here
    rng = np.random.default_rng(0)
    layer = Linear(3, 2, dtype=np.float64, rng=rng)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)

    def call():
        if where == "fit":
            history = fit(layer, x, y, **{"epochs": 1, "progress": False, arg: value})
            assert history and all(np.isfinite(r["train_loss"]) for r in history if "train_loss" in r), "history"
        elif where == "predict":
            finite(predict(layer, x, batch_size=value))
        else:
            assert np.isfinite(evaluate(layer, x, y, batch_size=value)["loss"]), "loss"

    names = (arg, "k2 needs k1") if arg == "k2" else (arg,)
    verdict("fit/predict", valid, call, names, what=f"{where}({arg}={value!r:.40})")


def test_fit_refuses_none_for_a_setting_that_cannot_be_none():  # the campaign's fit(grad_clip=None), taken as "off"
    x, y = np.ones((6, 3)), np.zeros(6, np.int64)
    with pytest.raises(ConfigError, match="^grad_clip must be float, got None$"):
        fit(Linear(3, 2, dtype=np.float64, rng=np.random.default_rng(0)), x, y, epochs=1, progress=False,
            grad_clip=None)
