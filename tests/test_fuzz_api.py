"""A Hypothesis fuzz suite over the public API: layer constructors and forward/backward of every layer.

The property, for every drawn call: either it succeeds, the input was valid, and the outputs are finite and shaped
as documented (input gradients shaped like the inputs); or it raises an `rnnkit.errors` type that is also a
``ValueError`` or ``TypeError``, in one line that names the argument. Anything else — another exception, a
message that does not say which argument is wrong, an invalid input accepted, a valid one refused — is a break.

Every example falls in one category (constructor arguments, input shapes, dtypes, non-finite values, lengths /
masks / indices, memory layout, initial state, state gradients, output gradients) and is counted as tried / held /
broke. The normal run is small and derandomized; a campaign::

    RNNKIT_FUZZ_EXAMPLES=300 RNNKIT_FUZZ_COLLECT=1 RNNKIT_FUZZ_REPORT=/tmp/fuzz_counts.md python3 -m pytest \
        tests/test_fuzz_api.py -n 0

runs that many examples per category, collects every break instead of stopping at the first, and writes the counts
table (and the first breaks of each category) to the report file (in one process, ``-n 0``: the table counts one
process's examples).
"""

import copy

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz_harness import (  # noqa: E402, F401 - `report` is an autouse fixture: the campaign's table
    FUZZ,
    MAX_COUNT,
    MAX_SIZE,
    counted,
    finite,
    flat,
    report,
    verdict,
)
from fuzz_subjects import (  # noqa: E402
    SCALES,
    SUBJECTS,
    WITH_OUTPUT_GRAD,
    WITH_STATE,
    Attention,
    Crf,
    Lookup,
    Recurrent,
    StepCell,
    mutate_array,
    mutate_shape,
    normal,
    poison,
    redtype,
    run_valid,
    setup,
)
from rnnkit import (  # noqa: E402
    CRF,
    GRU,
    LSTM,
    RHN,
    RNN,
    Dropout,
    Embedding,
    GRUCell,
    Highway,
    Jordan,
    Linear,
    LSTMCell,
    MogrifierLSTM,
    OneHot,
    RNNCell,
)
from rnnkit.attention import AdditiveAttention, LuongAttention  # noqa: E402
from rnnkit.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss  # noqa: E402


@FUZZ
@given(data=st.data())
@counted("input shapes")
def test_input_shapes_including_zero_in_every_axis_are_accepted_or_refused_by_name(data):
    name, subject, m, rng, _ = setup(data)
    shape = mutate_shape(data.draw, subject.base_shape(m, data.draw))
    a = subject.args(m, data.draw, rng, shape)
    verdict("input shapes", subject.x_ok(m, shape), lambda: run_valid(subject, m, a, rng), (subject.x_name,),
            what=f"{name} {subject.x_name} of shape {shape}")


def float_args(subject, a) -> list[str]:
    return [k for k, v in a.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]


@FUZZ
@given(data=st.data())
@counted("dtypes")
def test_input_dtypes_other_than_real_floats_are_refused_by_name(data):
    name, subject, m, rng, a = setup(data)
    keys = [k for k in a if k in (subject.x_name, "tags", "attention query")]
    key = data.draw(st.sampled_from(keys), label="argument")
    index = key == "tags" or subject.index_input
    a[key], valid = redtype(data.draw, a[key], index)
    verdict("dtypes", valid, lambda: run_valid(subject, m, a, rng), (key,),
            what=f"{name} {key} as {type(a[key]).__name__} {getattr(a[key], 'dtype', '')}")


@FUZZ
@given(data=st.data())
@counted("non-finite values")
def test_nan_and_inf_inputs_are_refused_by_name(data):
    name, subject, m, rng, a = setup(data, [k for k, s in SUBJECTS.items() if not s.index_input])
    key = data.draw(st.sampled_from(float_args(subject, a)), label="argument")
    a[key], valid = poison(data.draw, a[key], m.dtype)
    verdict("non-finite values", valid, lambda: run_valid(subject, m, a, rng), (key,),
            what=f"{name} {key} with a non-finite value")


def draw_lengths(draw, rng, batch: int, steps: int):
    """Sequence lengths, valid or not: (value, valid)."""
    good = rng.integers(1, steps + 1, batch)
    kind = draw(st.sampled_from(["valid", "list", "zero", "negative", "too long", "float", "bool", "count",
                                 "2-D", "string", "object", "unsigned"]), label="lengths")
    bad = good.copy()
    if batch and kind in ("zero", "negative", "too long"):
        bad[draw(st.integers(0, batch - 1))] = {"zero": 0, "negative": -1, "too long": steps + 1}[kind]
    value = {"valid": good, "list": good.tolist(), "zero": bad, "negative": bad, "too long": bad,
             "float": good.astype(float), "bool": good > 0, "count": np.append(good, 1), "2-D": good[:, None],
             "string": "3", "object": good.astype(object), "unsigned": good.astype(np.uint8)}[kind]
    valid = kind in ("valid", "list", "unsigned") or (batch == 0 and kind in ("zero", "negative", "too long"))
    return value, valid


def draw_mask(draw, rng, shape: tuple):
    """A (B, T) mask, valid for someone or not."""
    lengths = rng.integers(1, shape[1] + 1, shape[0])
    good = np.arange(shape[1]) < lengths[:, None]
    kind = draw(st.sampled_from(["valid", "int", "float", "first off", "hole", "empty row", "two", "half", "nan",
                                 "shape", "string"]), label="mask")
    value = good.astype(np.float64)
    if shape[0]:
        row = draw(st.integers(0, shape[0] - 1))
        changes = {"first off": np.r_[0, value[row, 1:]], "hole": np.r_[1, 0, np.ones(shape[1])][:shape[1]],
                   "empty row": 0, "two": 2, "half": 0.5, "nan": np.nan}
        value[row] = changes.get(kind, value[row])
    return {"valid": good, "int": good.astype(int), "float": good.astype(float), "shape": good[:, :-1],
            "string": good.astype(str)}.get(kind, value)


def mask_ok(value, shape: tuple, prefix: bool) -> bool:
    """The contract: a bool or 0/1 array of ``shape``; for a CRF a prefix of each sequence (first step valid), for
    attention at least one position per row."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or value.shape != shape:
        return False
    if not np.isin(value, (0, 1)).all():
        return False
    b = value.astype(bool)
    if prefix:
        return bool(b[:, 0].all()) and not (np.diff(b.astype(int), axis=1) > 0).any()
    return bool(b.any(axis=1).all())


@FUZZ
@given(data=st.data())
@counted("lengths/masks/indices")
def test_lengths_masks_and_indices_out_of_range_or_of_the_wrong_kind_are_refused_by_name(data):
    kinds = [k for k, s in SUBJECTS.items() if isinstance(s, (Crf, Attention, Lookup)) or type(s) is Recurrent]
    name, subject, m, rng, _ = setup(data, kinds)
    batch, steps = data.draw(st.integers(0, 3)), data.draw(st.integers(1, 4))
    shape = (batch, steps, m.memory_size) if isinstance(subject, Attention) else (
        (batch, steps) if isinstance(subject, Lookup) else (batch, steps, getattr(m, "num_tags", None) or m.input_size))
    a = subject.args(m, data.draw, rng, shape)
    if type(subject) is Recurrent and data.draw(st.integers(0, 4)) == 0:  # one unbatched sequence
        key, a["input"] = "lengths", a["input"][0] if batch else normal(rng, (steps, m.input_size))
        a.pop("state", None)
        a[key] = data.draw(st.sampled_from([steps, 0, steps + 1, -1, np.int64(steps), [steps], [steps, steps], 1.0,
                                            "1", None]), label="lengths")
        valid = a[key] is None or indices_ok(np.atleast_1d(np.asarray(a[key])), (1,), steps + 1) and np.min(a[key]) > 0
    elif type(subject) is Recurrent:
        key = "lengths"
        a[key], valid = draw_lengths(data.draw, rng, batch, steps)
    elif isinstance(subject, Lookup) or (isinstance(subject, Crf) and data.draw(st.booleans())):
        key = "input" if isinstance(subject, Lookup) else "tags"
        high = subject.classes(m) if key == "input" else m.num_tags
        good_shape = a[key].shape
        a[key] = draw_indices(data.draw, a[key], high)
        valid = indices_ok(a[key], None if key == "input" else good_shape, high)
    else:
        key = "mask" if isinstance(subject, Crf) else "attention mask"
        a[key] = draw_mask(data.draw, rng, (batch, steps))
        valid = mask_ok(a[key], (batch, steps), isinstance(subject, Crf))
    verdict("lengths/masks/indices", valid, lambda: run_valid(subject, m, a, rng), (key,),
            what=f"{name} {key} {str(a[key])[:60]!s}")


def draw_indices(draw, good: np.ndarray, high: int):
    """Class indices, valid for someone or not."""
    kind = draw(st.sampled_from(["valid", "too high", "negative", "float", "bool", "shape", "int8"]), label="indices")
    bad = good.copy()
    if good.size and kind in ("too high", "negative"):
        bad.flat[draw(st.integers(0, good.size - 1))] = high if kind == "too high" else -1
    return {"valid": good, "float": good.astype(float), "bool": good > 0, "int8": good.astype(np.int8),
            "shape": good[..., :-1] if good.ndim else good[None]}.get(kind, bad)


def indices_ok(value, shape, high: int) -> bool:
    """Integer indices in [0, high), of ``shape`` (None: any shape)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu":
        return False
    return (shape is None or value.shape == shape) and (value.size == 0 or 0 <= value.min() <= value.max() < high)


LAYOUTS = ("strided", "transposed", "fortran", "negative strides", "read-only", "read-only strided")


def relayout(value, how: str):
    """The same values in another memory layout (arrays inside tuples too); a 0-d array only becomes read-only."""
    if isinstance(value, tuple):
        return tuple(relayout(v, how) for v in value)
    if not isinstance(value, np.ndarray):
        return value
    if value.ndim and how in ("strided", "read-only strided"):
        value = np.repeat(value, 2, axis=-1)[..., ::2]
    elif value.ndim and how == "transposed":
        value = value.T.copy().T
    elif value.ndim and how == "fortran":
        value = np.asfortranarray(value)
    elif value.ndim and how == "negative strides":
        value = value[::-1].copy()[::-1]
    else:
        value = value.copy()
    if how.startswith("read-only"):
        value.flags.writeable = False
    return value


def assert_same(got, want, what: str) -> None:
    for g, w in zip(got, want):
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=what)


def same_as_contiguous(subject, m, a, rng, how):
    """Run a contiguous call and a relaid-out one on twin modules; both must agree, and no argument may change."""
    twin = copy.deepcopy(m)
    given = {k: relayout(v, how) for k, v in a.items()}
    before = copy.deepcopy(given)
    grads = {}

    def first(out):
        grads.update(subject.grads(m, a, out, rng))
        return grads

    want = run_valid(subject, m, dict(a), rng, first)
    got = run_valid(subject, twin, given, rng, lambda out: {k: relayout(v, how) for k, v in grads.items()})
    assert_same(got[0], want[0], "outputs")
    assert_same(got[1], want[1], "input gradients")
    assert_same([p.grad for p in twin.parameters()], [p.grad for p in m.parameters()], "parameter gradients")
    for k, v in before.items():
        if not k.startswith("_"):
            assert_same(flat(given[k]), flat(v), f"{k} was modified")


@FUZZ
@given(data=st.data())
@counted("memory layout")
def test_strided_transposed_and_read_only_arrays_give_the_results_of_contiguous_copies(data):
    name, subject, m, rng, a = setup(data)
    how = data.draw(st.sampled_from(LAYOUTS), label="layout")
    verdict("memory layout", True, lambda: same_as_contiguous(subject, m, a, rng, how), (),
            what=f"{name} {how} arguments")


STATE_MUTATIONS = ("float16", "float64", "as list", "read-only", "none component", "whole none", "drop one",
                   "add one", "bare array", "shape", "int", "bool", "complex", "nan", "inf", "python list")


def mutate_state(draw, parts: list, public_tuple: bool, gradient: bool, none_ok: bool):
    """A drawn change of a state (or state gradient) given as components → (public value, valid, description);
    ``public_tuple``: the state is a tuple (LSTM's (h, c)); ``none_ok``: None for the whole is valid."""
    kind = draw(st.sampled_from(STATE_MUTATIONS), label="state change")
    parts = list(parts)
    k = draw(st.integers(0, len(parts) - 1), label="component")
    valid = kind in ("float16", "float64", "read-only") or (kind == "as list" and public_tuple)
    if kind in ("float16", "float64", "int", "bool", "complex"):
        parts[k] = parts[k].astype({"int": np.int64, "bool": bool, "complex": np.complex128}.get(kind, kind))
    elif kind == "read-only":
        parts[k] = relayout(parts[k], "read-only")
    elif kind in ("nan", "inf"):
        parts[k] = parts[k].astype(np.float64)
        valid = parts[k].size == 0
        if parts[k].size:
            parts[k].flat[draw(st.integers(0, parts[k].size - 1))] = np.nan if kind == "nan" else -np.inf
    elif kind == "shape":
        shape = mutate_shape(draw, parts[k].shape)
        parts[k], valid = np.zeros(shape), shape == parts[k].shape
    elif kind == "none component":  # one component of one is the whole state: None means zeros
        parts[k], valid = None, gradient or len(parts) == 1
    elif kind == "python list":
        parts[k] = parts[k].tolist()
    elif kind in ("drop one", "add one"):
        parts = parts[:-1] if kind == "drop one" else parts + [parts[-1]]
    if kind == "whole none":
        return None, none_ok, kind
    if kind == "bare array":
        return parts[0], not public_tuple, kind
    value = list(parts) if kind == "as list" else (tuple(parts) if public_tuple else
                                                    (parts[0] if len(parts) == 1 else tuple(parts)))
    if not public_tuple and kind in ("drop one", "add one"):
        value = tuple(parts)  # a one-component state given as a tuple of 0 or 2 arrays
    return value, valid, f"{kind} (component {k})"


def state_parts(subject, m, a, rng):
    """A valid state (as components) for the input in ``a``."""
    return [normal(rng, s) for s in subject.state_shapes(m, a["input"].shape)]


@FUZZ
@given(data=st.data())
@counted("initial state")
def test_bad_initial_states_are_refused_by_name_and_good_ones_accepted(data):
    name, subject, m, rng, a = setup(data, WITH_STATE)
    parts = state_parts(subject, m, a, rng)
    value, valid, what = mutate_state(data.draw, parts, len(parts) > 1, False, True)
    a.pop("state", None)

    def call():
        if isinstance(subject, StepCell):
            out = m.forward(a["input"], value)
        else:
            out = m.forward(a["input"], value, a.get("lengths"))
        subject.check_forward(m, a, out)
        result = subject.backward(m, a, subject.grads(m, a, out, rng))
        subject.check_backward(m, a, result)

    verdict("initial state", valid, call, subject.state_names, what=f"{name} state {what}")


@FUZZ
@given(data=st.data())
@counted("state gradients")
def test_bad_state_gradients_are_refused_by_name_and_good_ones_accepted(data):
    name, subject, m, rng, a = setup(data, WITH_STATE)
    out = subject.forward(m, a)
    final = flat(out) if isinstance(subject, StepCell) else flat(out[1])
    parts = [normal(rng, p.shape) for p in final]
    none_ok = not isinstance(subject, StepCell) or len(parts) == 1
    value, valid, what = mutate_state(data.draw, parts, len(parts) > 1, True, none_ok)
    g = subject.grads(m, a, out, rng)
    g["state"] = value

    def call():
        result = subject.backward(m, a, g)
        subject.check_backward(m, a, result)

    verdict("state gradients", valid, call, subject.grad_names, what=f"{name} state gradient {what}")


@FUZZ
@given(data=st.data())
@counted("output gradients")
def test_bad_output_gradients_are_refused_by_name_and_good_ones_accepted(data):
    name, subject, m, rng, a = setup(data, WITH_OUTPUT_GRAD)
    out = subject.forward(m, a)
    g = subject.grads(m, a, out, rng)
    kind = data.draw(st.sampled_from(["array", "none", "scalar"]), label="gradient kind")
    if kind == "array":
        g["output"], valid, what = mutate_array(data.draw, g["output"], m.dtype)
        scalar_nll = isinstance(g["output"], float) and isinstance(subject, Crf) and out.ndim == 0
        valid = valid or (g["output"] is None and type(subject) is Recurrent) or scalar_nll
    else:  # None means "no gradient" for a recurrent layer's output; a float is the gradient of a scalar NLL
        g["output"] = None if kind == "none" else 0.5
        valid = type(subject) is Recurrent if kind == "none" else (isinstance(subject, Crf) and out.ndim == 0)
        what = kind

    def call():
        result = subject.backward(m, a, g)
        subject.check_backward(m, a, result)

    verdict("output gradients", valid, call, subject.out_names, what=f"{name} output gradient {what}")


# -- constructors ---------------------------------------------------------------------------------------------

def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    return (is_int(v) or isinstance(v, (float, np.floating))) and bool(np.isfinite(float(v)))


KINDS = {
    "size": lambda v: is_int(v) and 1 <= v <= MAX_SIZE,
    "count": lambda v: is_int(v) and 1 <= v <= MAX_COUNT,
    "count0": lambda v: is_int(v) and 0 <= v <= MAX_COUNT,
    "prob": lambda v: is_real(v) and 0 <= v < 1,
    "bool": lambda v: isinstance(v, (bool, np.bool_)),
    "finite": is_real,
    "finite or None": lambda v: v is None or is_real(v),
    "size or None": lambda v: v is None or (is_int(v) and 1 <= v <= MAX_SIZE),
    "dtype": lambda v: v in (np.float32, np.float64, "float32", "float64"),
    "rng": lambda v: v is None or isinstance(v, np.random.Generator) or (is_int(v) and v >= 0),
    "proj below 4": lambda v: is_int(v) and 0 <= v < 4,
    "padding of 5": lambda v: v is None or (is_int(v) and -5 <= v < 5),
}


def choice(*options):
    return lambda v: isinstance(v, str) and v in options


LAYER = {"num_layers": "count", "bias": "bool", "dropout": "prob", "bidirectional": "bool", "stateful": "bool",
         "dtype": "dtype", "rng": "rng", "return_state": "bool"}
CELL = {"input_size": "size", "hidden_size": "size", "bias": "bool", "dtype": "dtype", "rng": "rng"}
CONSTRUCTORS = {
    "RNN": (RNN, {"input_size": 3, "hidden_size": 4}, {"input_size": "size", "hidden_size": "size",
                                                       "nonlinearity": choice("tanh", "relu"), **LAYER}),
    "LSTM": (LSTM, {"input_size": 3, "hidden_size": 4}, {"input_size": "size", "hidden_size": "size", **LAYER,
                                                         "proj_size": "proj below 4", "peephole": "bool",
                                                         "forget_bias": "finite or None"}),
    "GRU": (GRU, {"input_size": 3, "hidden_size": 4}, {"input_size": "size", "hidden_size": "size",
                                                       "reset_after": "bool", **LAYER}),
    "RHN": (RHN, {"input_size": 3, "hidden_size": 4}, {"input_size": "size", "hidden_size": "size", "depth": "count",
                                                       "coupled": "bool", "transform_bias": "finite", **LAYER}),
    "MogrifierLSTM": (MogrifierLSTM, {"input_size": 3, "hidden_size": 4},
                      {"input_size": "size", "hidden_size": "size", "rounds": "count0", "rank": "size or None",
                       "proj_size": "proj below 4", "peephole": "bool", "forget_bias": "finite or None", **LAYER}),
    "Jordan": (Jordan, {"input_size": 3, "hidden_size": 4, "output_size": 2},
               {"input_size": "size", "hidden_size": "size", "output_size": "size", "state_decay": "prob",
                "output_activation": choice("sigmoid", "tanh", "identity"), **LAYER}),
    "RNNCell": (RNNCell, {"input_size": 3, "hidden_size": 4}, {**CELL, "nonlinearity": choice("tanh", "relu")}),
    "LSTMCell": (LSTMCell, {"input_size": 3, "hidden_size": 4}, CELL),
    "GRUCell": (GRUCell, {"input_size": 3, "hidden_size": 4}, CELL),
    "Linear": (Linear, {"in_features": 3, "out_features": 2}, {"in_features": "size", "out_features": "size",
                                                               "bias": "bool", "dtype": "dtype", "rng": "rng"}),
    "Embedding": (Embedding, {"num_embeddings": 5, "embedding_dim": 2},
                  {"num_embeddings": "size", "embedding_dim": "size", "padding_idx": "padding of 5", "dtype": "dtype",
                   "rng": "rng"}),
    "OneHot": (OneHot, {"num_classes": 3}, {"num_classes": "size", "dtype": "dtype"}),
    "Dropout": (Dropout, {}, {"p": "prob", "rng": "rng"}),
    "CRF": (CRF, {"num_tags": 3}, {"num_tags": "size", "start_end": "bool", "dtype": "dtype", "rng": "rng"}),
    "Highway": (Highway, {"size": 3}, {"size": "size", "activation": choice("tanh", "relu"), "gate_bias": "finite",
                                       "num_layers": "count", "dtype": "dtype", "rng": "rng"}),
    "AdditiveAttention": (AdditiveAttention, {"memory_size": 3, "query_size": 2, "attention_size": 4},
                          {"memory_size": "size", "query_size": "size", "attention_size": "size", "dtype": "dtype",
                           "rng": "rng"}),
    "LuongAttention": (LuongAttention, {"memory_size": 3, "query_size": 2},
                       {"memory_size": "size", "query_size": "size", "score": choice("dot", "general"),
                        "dtype": "dtype", "rng": "rng"}),
    "MSELoss": (MSELoss, {}, {"reduction": choice("mean", "sum")}),
    "CrossEntropyLoss": (CrossEntropyLoss, {}, {"reduction": choice("mean", "sum"), "ignore_index": "int"}),
    "BCEWithLogitsLoss": (BCEWithLogitsLoss, {}, {"reduction": choice("mean", "sum")}),
}
KINDS["int"] = lambda v: is_int(v) and -2**63 <= v < 2**63

VALUES = [0, 1, 2, 3, -1, -7, True, False, 2.0, 2.5, 0.0, 0.1, 0.5, 1.0, -0.5, float("nan"), float("inf"),
          -float("inf"), "3", "0.1", "yes", "", "tanh", "relu", "dot", "general", "sigmoid", "sum", "float32",
          "float16", None, 10**12, 2**63, 10**100, -10**30, np.int64(2), np.int8(-1), np.uint8(3), np.float32(0.25),
          np.float64(np.nan), np.bool_(True), np.bool_(False), [2], (1,), np.float32, np.float64, np.int32,
          np.random.default_rng(0), object(), 1 + 2j]


def smoke_shape(name: str, subject, m) -> tuple:
    if isinstance(subject, StepCell):
        return (2, m.input_size)
    if isinstance(subject, Recurrent):
        return (2, 3, m.input_size)
    if isinstance(subject, Attention):
        return (2, 2, m.memory_size)
    return {"Linear": lambda: (2, m.in_features), "Highway": lambda: (2, m.size), "Embedding": lambda: (2, 3),
            "CRF": lambda: (2, 3, m.num_tags)}[name]()


def smoke(name: str, m, rng) -> None:
    """A valid forward and backward of a freshly built module (finite outputs, gradients shaped like inputs)."""
    if name in SUBJECTS and getattr(m, "return_state", True):
        subject = SUBJECTS[name]
        no = lambda strategy, label=None: 1.0 if strategy is SCALES else False  # noqa: E731 - defaults only
        run_valid(subject, m, subject.args(m, no, rng, smoke_shape(name, subject, m)), rng)
    elif name in SUBJECTS:  # a recurrent layer built with return_state=False
        y = m.forward(normal(rng, (2, 3, m.input_size)))
        finite(y, m.backward(normal(rng, y.shape)))
    elif name == "OneHot":
        y = m.forward(rng.integers(0, m.num_classes, (2, 3)))
        assert y.shape == (2, 3, m.num_classes) and m.backward(np.ones(y.shape)) is None
    elif name == "Dropout":
        x = normal(rng, (2, 3))
        finite(m.forward(x), m.backward(x))
    else:
        pred = normal(rng, (2, 3))
        target = rng.integers(0, 3, 2) if name == "CrossEntropyLoss" else (pred > 0).astype(float)
        finite(m.forward(pred, target), m.backward())


@FUZZ
@given(data=st.data())
@counted("constructor args")
def test_constructor_arguments_of_the_wrong_type_or_range_are_refused_by_name(data):
    name = data.draw(st.sampled_from(list(CONSTRUCTORS)), label="constructor")
    cls, base, kinds = CONSTRUCTORS[name]
    arg = data.draw(st.sampled_from(list(kinds)), label="argument")
    value = data.draw(st.sampled_from(VALUES), label="value")
    kind = kinds[arg]
    valid = (KINDS[kind] if isinstance(kind, str) else kind)(value)
    kwargs = {**base, arg: value}
    rng = np.random.default_rng(0)
    verdict("constructor args", valid, lambda: smoke(name, cls(**kwargs), rng), (arg,),
            what=f"{name}({arg}={value!r:.40})")
