"""A Hypothesis fuzz suite over the public API: layer constructors and forward/backward of every layer.

The property, for every drawn call: either it succeeds, the input was valid, and the outputs are finite and shaped
as documented (input gradients shaped like the inputs); or it raises an `rnnkit.errors` type that is also a
``ValueError`` or ``TypeError``, in one line that names the argument. Anything else — another exception, a
message that does not say which argument is wrong, an invalid input accepted, a valid one refused — is a break.

Every example falls in one category (constructor arguments, input shapes, dtypes, non-finite values, lengths /
masks / indices, memory layout, initial state, state gradients, output gradients) and is counted as tried / held /
broke. The normal run is small and derandomized; a campaign::

    RNNKIT_FUZZ_EXAMPLES=300 RNNKIT_FUZZ_COLLECT=1 RNNKIT_FUZZ_REPORT=/tmp/fuzz_counts.md python3 -m pytest \
        tests/test_fuzz_api.py

runs that many examples per category, collects every break instead of stopping at the first, and writes the counts
table (and the first breaks of each category) to the report file.
"""

import copy
import functools
import os
from collections import Counter, defaultdict

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

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
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss  # noqa: E402

EXAMPLES = int(os.environ.get("RNNKIT_FUZZ_EXAMPLES", "50"))
COLLECT = os.environ.get("RNNKIT_FUZZ_COLLECT") == "1"
REPORT = os.environ.get("RNNKIT_FUZZ_REPORT")
RANDOM = os.environ.get("RNNKIT_FUZZ_RANDOM") == "1"  # explore beyond the fixed examples of the normal run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=list(HealthCheck))

MAX_SIZE, MAX_COUNT = 2**31 - 1, 1024  # the largest size and repetition count a layer option may have
CATEGORIES = ("constructor args", "input shapes", "dtypes", "non-finite values", "lengths/masks/indices",
              "memory layout", "initial state", "state gradients", "output gradients")
COUNTS: dict[str, Counter] = defaultdict(Counter)
BREAKS: dict[str, list[str]] = defaultdict(list)


# -- the verdict ------------------------------------------------------------------------------------------------

def verdict(category: str, valid: bool, call, names: tuple[str, ...], check=None, what: str = "") -> None:
    """Run ``call`` and count the example as held or broke (see the module docstring); ``check(result)`` asserts
    what a successful valid call must return."""
    try:
        result = call()
    except AssertionError as e:  # a check inside the call failed: the call itself succeeded
        first_line = str(e).splitlines()[0] if str(e) else ""
        problem = f"wrong result: {first_line}" if valid else f"accepted invalid input ({first_line})"
    except Exception as e:  # noqa: BLE001 - classifying every exception is the point
        message = str(e)
        clear = (isinstance(e, RnnkitError) and isinstance(e, (ValueError, TypeError)) and "\n" not in message
                 and any(n in message for n in names))
        problem = None if clear and not valid else (
            f"valid input refused: {type(e).__name__}: {message[:200]}" if valid
            else f"unclear error (wants one of {names}): {type(e).__module__}.{type(e).__name__}: {message[:200]}")
    else:
        problem = None if valid else "accepted invalid input"
        if valid and check is not None:
            try:
                check(result)
            except AssertionError as e:
                problem = f"wrong result: {str(e).splitlines()[0] if str(e) else ''}"
    COUNTS[category]["tried"] += 1
    COUNTS[category]["invalid"] += not valid
    COUNTS[category]["broke" if problem else "held"] += 1
    if problem:
        BREAKS[category].append(f"{what}: {problem}")
        if not COLLECT:
            pytest.fail(f"[{category}] {what}: {problem}")


def counted(category: str):
    """In a campaign (``RNNKIT_FUZZ_COLLECT=1``), an exception outside `verdict` — while building the layer or
    running the valid part of an example — is counted as a break of ``category`` instead of ending the run."""
    def wrap(test):
        @functools.wraps(test)
        def run(data):
            try:
                test(data)
            except Exception as e:  # noqa: BLE001
                if not COLLECT:
                    raise
                COUNTS[category]["tried"] += 1
                COUNTS[category]["broke"] += 1
                BREAKS[category].append(f"outside the checked call: {type(e).__name__}: {str(e)[:200]}")
        return run
    return wrap


def finite(*arrays) -> None:
    for a in arrays:
        if a is not None:
            assert np.isfinite(a).all(), "non-finite output"


def flat(obj) -> list:
    return [a for o in obj for a in flat(o)] if isinstance(obj, (tuple, list)) else [obj]


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if REPORT:
        lines = ["| category | tried | of which invalid | held | broke |", "|---|---:|---:|---:|---:|"]
        for c in (*CATEGORIES, "total"):
            n = sum((COUNTS[c] for c in CATEGORIES), Counter()) if c == "total" else COUNTS[c]
            lines.append(f"| {c} | {n['tried']} | {n['invalid']} | {n['held']} | {n['broke']} |")
        for c in CATEGORIES:
            for b in sorted(set(BREAKS[c]))[:25]:
                lines.append(f"- [{c}] {b}")
        with open(REPORT, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        with open(REPORT + ".all", "w", encoding="utf-8") as f:  # every break, for counting by kind
            f.write("".join(f"{c}\t{b}\n" for c in CATEGORIES for b in BREAKS[c]))


# -- the layers under test: each builds itself with small valid options and valid arguments for a given shape ----

SCALES = st.sampled_from([1.0, 1.0, 1e3])  # large (saturating) values are valid inputs too


def normal(rng, shape, dtype=np.float64):
    return rng.normal(size=shape).astype(dtype)


class Recurrent:
    """A recurrent layer: forward(input, state, lengths) → (output, final state); backward(δoutput, δstate)."""

    x_name, state_names, grad_names = "input", ("initial state",), ("gradient of the final state",)
    out_names = ("gradient of the output",)
    index_input = False

    def __init__(self, make):
        self.make = make

    def build(self, draw):
        return self.make(draw)

    def base_shape(self, m, draw):
        batch, steps = draw(st.integers(0, 3)), draw(st.integers(1, 4))
        return (batch, steps, m.input_size) if draw(st.integers(0, 4)) else (steps, m.input_size)

    def x_ok(self, m, shape):
        return len(shape) in (2, 3) and shape[-1] == m.input_size and shape[-2] >= 1

    def state_shapes(self, m, shape):
        rows = m.num_directions * m.num_layers
        return [(rows, s) if len(shape) == 2 else (rows, shape[0], s) for s in m.state_sizes]

    def args(self, m, draw, rng, shape):
        a = {"input": normal(rng, shape) * draw(SCALES)}
        if self.x_ok(m, shape):
            if draw(st.booleans()):
                a["state"] = tuple(normal(rng, s) for s in self.state_shapes(m, shape))
            if len(shape) == 3 and draw(st.booleans()):
                a["lengths"] = rng.integers(1, shape[1] + 1, shape[0])
        return a

    def public(self, m, parts):
        return parts[0] if len(parts) == 1 else tuple(parts)

    def forward(self, m, a):
        state = a.get("state")
        return m.forward(a["input"], None if state is None else self.public(m, state), a.get("lengths"))

    def check_forward(self, m, a, out):
        y, state = out
        shape = a["input"].shape
        assert y.shape == shape[:-1] + (m.output_size,), f"output shape {y.shape}"
        assert [p.shape for p in flat(state)] == self.state_shapes(m, shape), "final state shape"
        finite(y, *flat(state))

    def grads(self, m, a, out, rng):
        y, state = out
        return {"output": normal(rng, y.shape), "state": self.public(m, [normal(rng, p.shape) for p in flat(state)])}

    def backward(self, m, a, g):
        return m.backward(g["output"], g["state"])

    def check_backward(self, m, a, result):
        dx, dstate = result
        assert dx.shape == a["input"].shape, f"input gradient shape {dx.shape}"
        assert [p.shape for p in flat(dstate)] == self.state_shapes(m, a["input"].shape), "state gradient shape"
        finite(dx, *flat(dstate))


class StepCell(Recurrent):
    """A step cell: forward(x, state) → new state; backward(δ new state) → (δx, δ previous state)."""

    state_names, grad_names = ("state",), ("gradient of the new state",)

    def base_shape(self, m, draw):
        return (draw(st.integers(0, 3)), m.input_size) if draw(st.integers(0, 4)) else (m.input_size,)

    def x_ok(self, m, shape):
        return len(shape) in (1, 2) and shape[-1] == m.input_size

    def state_shapes(self, m, shape):
        return [shape[:-1] + (s,) for s in m.cell.state_sizes]

    def public(self, m, parts):
        return parts[0] if len(parts) == 1 else tuple(parts)

    def forward(self, m, a):
        state = a.get("state")
        return m.forward(a["input"], None if state is None else self.public(m, state))

    def check_forward(self, m, a, out):
        assert [p.shape for p in flat(out)] == self.state_shapes(m, a["input"].shape), "new state shape"
        finite(*flat(out))

    def grads(self, m, a, out, rng):
        return {"state": self.public(m, [normal(rng, p.shape) for p in flat(out)])}

    def backward(self, m, a, g):
        return m.backward(g["state"])


class FeedForward:
    """Linear or Highway: forward(x (..., F)) → y (..., F_out); backward(δy) → δx."""

    x_name, state_names, grad_names = "input", (), ()
    out_names = ("gradient of the output",)
    index_input = False

    def __init__(self, make, features, out_features):
        self.make, self.features, self.out_features = make, features, out_features

    def build(self, draw):
        return self.make(draw)

    def base_shape(self, m, draw):
        return tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))) + (self.features(m),)

    def x_ok(self, m, shape):
        return 1 <= len(shape) <= 4 and shape[-1] == self.features(m)

    def args(self, m, draw, rng, shape):
        return {"input": normal(rng, shape) * draw(SCALES)}

    def forward(self, m, a):
        return m.forward(a["input"])

    def check_forward(self, m, a, out):
        assert out.shape == a["input"].shape[:-1] + (self.out_features(m),), f"output shape {out.shape}"
        finite(out)

    def grads(self, m, a, out, rng):
        return {"output": normal(rng, out.shape)}

    def backward(self, m, a, g):
        return m.backward(g["output"])

    def check_backward(self, m, a, result):
        assert result.shape == a["input"].shape, f"input gradient shape {result.shape}"
        finite(result)


class Lookup(FeedForward):
    """Embedding (or OneHot): forward(indices (...)) → (..., D); backward(δy) → None."""

    x_name = "input"
    index_input = True

    def __init__(self, make):
        super().__init__(make, None, None)

    def base_shape(self, m, draw):
        return tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=3)))

    def x_ok(self, m, shape):
        return True

    def classes(self, m):
        return m.num_embeddings if isinstance(m, Embedding) else m.num_classes

    def width(self, m):
        return m.embedding_dim if isinstance(m, Embedding) else m.num_classes

    def args(self, m, draw, rng, shape):
        return {"input": rng.integers(0, self.classes(m), shape)}

    def check_forward(self, m, a, out):
        assert out.shape == a["input"].shape + (self.width(m),), f"output shape {out.shape}"
        finite(out)

    def check_backward(self, m, a, result):
        assert result is None


class Crf:
    """CRF: forward(emissions (B, T, K), tags (B, T), mask) → NLL (B,); backward(δNLL) → δemissions."""

    x_name, state_names, grad_names = "emissions", (), ()
    out_names = ("gradient of the NLL",)
    index_input = False

    def build(self, draw):
        return CRF(draw(st.integers(1, 3)), start_end=draw(st.booleans()), dtype=draw(DTYPES), rng=0)

    def base_shape(self, m, draw):
        batch, steps = draw(st.integers(0, 3)), draw(st.integers(1, 4))
        return (batch, steps, m.num_tags) if draw(st.integers(0, 4)) else (steps, m.num_tags)

    def x_ok(self, m, shape):
        return len(shape) in (2, 3) and shape[-1] == m.num_tags and shape[-2] >= 1

    def args(self, m, draw, rng, shape):
        a = {"emissions": normal(rng, shape) * draw(SCALES)}
        lead = shape[:-1] if self.x_ok(m, shape) else (1, 1)
        a["tags"] = rng.integers(0, m.num_tags, lead)
        if self.x_ok(m, shape) and draw(st.booleans()):
            lengths = rng.integers(1, lead[-1] + 1, lead[:-1])
            a["mask"] = np.arange(lead[-1]) < np.asarray(lengths)[..., None]
        return a

    def forward(self, m, a):
        return m.forward(a["emissions"], a["tags"], a.get("mask"))

    def check_forward(self, m, a, out):
        assert out.shape == a["emissions"].shape[:-2], f"NLL shape {out.shape}"
        finite(out)
        paths, mask = m.decode(a["emissions"], a.get("mask")), a.get("mask")
        lengths = np.full(out.shape, a["emissions"].shape[-2]) if mask is None else np.asarray(mask).sum(axis=-1)
        if out.ndim == 0:
            assert len(paths) == lengths, "decoded path length"
        else:
            assert [len(p) for p in paths] == list(lengths), "decoded path lengths"

    def grads(self, m, a, out, rng):
        return {"output": normal(rng, out.shape)}

    def backward(self, m, a, g):
        return m.backward(g["output"])

    def check_backward(self, m, a, result):
        assert result.shape == a["emissions"].shape, f"emissions gradient shape {result.shape}"
        finite(result, *(p.grad for p in m.parameters()))


class Attention:
    """Additive or Luong attention: prepare(memory (B, S, D_m), mask), step(query (B, D_q)) → (context, weights);
    step_backward(δcontext) → δquery, finish_backward → δmemory."""

    x_name, state_names, grad_names = "attention memory", (), ()
    out_names = ("gradient of the context",)
    index_input = False

    def __init__(self, make):
        self.make = make

    def build(self, draw):
        return self.make(draw)

    def base_shape(self, m, draw):
        return (draw(st.integers(0, 3)), draw(st.integers(1, 3)), m.memory_size)

    def x_ok(self, m, shape):
        return len(shape) == 3 and shape[1] >= 1 and shape[2] == m.memory_size

    def args(self, m, draw, rng, shape):
        a = {"attention memory": normal(rng, shape) * draw(SCALES)}
        batch = shape[0] if self.x_ok(m, shape) else 1
        a["attention query"] = normal(rng, (batch, m.query_size))
        if self.x_ok(m, shape) and draw(st.booleans()):
            a["attention mask"] = np.arange(shape[1]) < rng.integers(1, shape[1] + 1, (batch, 1))
        return a

    def forward(self, m, a):
        mem = m.prepare(a["attention memory"], a.get("attention mask"))
        context, alpha = m.step(mem, a["attention query"])
        a["_mem"] = mem
        return context, alpha

    def check_forward(self, m, a, out):
        batch, source = a["attention memory"].shape[:2]
        assert out[0].shape == (batch, m.memory_size) and out[1].shape == (batch, source), "context/weights shape"
        finite(*out)

    def grads(self, m, a, out, rng):
        return {"output": normal(rng, out[0].shape)}

    def backward(self, m, a, g):
        return m.step_backward(g["output"]), m.finish_backward(a["_mem"])

    def check_backward(self, m, a, result):
        assert result[0].shape == a["attention query"].shape, "query gradient shape"
        assert result[1].shape == a["attention memory"].shape, "memory gradient shape"
        finite(*result)


DTYPES = st.sampled_from([np.float32, np.float64])


def recurrent_options(draw, layers=True):
    options = {"dtype": draw(DTYPES), "rng": 0}
    if layers:
        options.update(num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()))
        options["dropout"] = draw(st.sampled_from([0.0, 0.3])) if options["num_layers"] > 1 else 0.0
    return options


SUBJECTS = {
    "RNN": Recurrent(lambda d: RNN(d(st.integers(1, 3)), d(st.integers(1, 3)),
                                   nonlinearity=d(st.sampled_from(["tanh", "relu"])), **recurrent_options(d))),
    "LSTM": Recurrent(lambda d: LSTM(d(st.integers(1, 3)), 3, proj_size=d(st.integers(0, 2)),
                                     peephole=d(st.booleans()), **recurrent_options(d))),
    "GRU": Recurrent(lambda d: GRU(d(st.integers(1, 3)), d(st.integers(1, 3)), reset_after=d(st.booleans()),
                                   **recurrent_options(d))),
    "RHN": Recurrent(lambda d: RHN(d(st.integers(1, 3)), d(st.integers(1, 3)), depth=d(st.integers(1, 2)),
                                   coupled=d(st.booleans()), **recurrent_options(d))),
    "MogrifierLSTM": Recurrent(lambda d: MogrifierLSTM(d(st.integers(1, 3)), 3, rounds=d(st.integers(0, 3)),
                                                       rank=d(st.sampled_from([None, 1])),
                                                       proj_size=d(st.integers(0, 1)), **recurrent_options(d))),
    "Jordan": Recurrent(lambda d: Jordan(d(st.integers(1, 3)), d(st.integers(1, 3)), d(st.integers(1, 2)),
                                         state_decay=d(st.sampled_from([0.0, 0.5])), **recurrent_options(d))),
    "RNNCell": StepCell(lambda d: RNNCell(d(st.integers(1, 3)), d(st.integers(1, 3)), **recurrent_options(d, False))),
    "LSTMCell": StepCell(lambda d: LSTMCell(d(st.integers(1, 3)), d(st.integers(1, 3)),
                                            **recurrent_options(d, False))),
    "GRUCell": StepCell(lambda d: GRUCell(d(st.integers(1, 3)), d(st.integers(1, 3)), **recurrent_options(d, False))),
    "Linear": FeedForward(lambda d: Linear(d(st.integers(1, 3)), d(st.integers(1, 3)), bias=d(st.booleans()),
                                           dtype=d(DTYPES), rng=0),
                          lambda m: m.in_features, lambda m: m.out_features),
    "Highway": FeedForward(lambda d: Highway(d(st.integers(1, 3)), activation=d(st.sampled_from(["tanh", "relu"])),
                                             num_layers=d(st.integers(1, 2)), dtype=d(DTYPES), rng=0),
                           lambda m: m.size, lambda m: m.size),
    "Embedding": Lookup(lambda d: Embedding(d(st.integers(1, 4)), d(st.integers(1, 3)),
                                            padding_idx=d(st.sampled_from([None, 0, -1])), dtype=d(DTYPES), rng=0)),
    "CRF": Crf(),
    "AdditiveAttention": Attention(lambda d: AdditiveAttention(d(st.integers(1, 3)), d(st.integers(1, 3)),
                                                               d(st.integers(1, 3)), dtype=d(DTYPES), rng=0)),
    "LuongAttention": Attention(lambda d: LuongAttention(d(st.integers(1, 3)), d(st.integers(1, 3)),
                                                         score=d(st.sampled_from(["dot", "general"])),
                                                         dtype=d(DTYPES), rng=0)),
}
WITH_STATE = [k for k, s in SUBJECTS.items() if s.state_names]
WITH_OUTPUT_GRAD = [k for k, s in SUBJECTS.items() if not isinstance(s, StepCell)]


def setup(data, kinds=tuple(SUBJECTS)):
    """(name, subject, module, rng, valid arguments) for a drawn layer."""
    name = data.draw(st.sampled_from(list(kinds)), label="layer")
    subject = SUBJECTS[name]
    m = subject.build(data.draw)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    return name, subject, m, rng, subject.args(m, data.draw, rng, subject.base_shape(m, data.draw))


def run_valid(subject, m, a, rng, grads=None):
    """Forward and backward of a valid call, checking both; returns the flattened outputs and input gradients."""
    out = subject.forward(m, a)
    subject.check_forward(m, a, out)
    g = subject.grads(m, a, out, rng) if grads is None else grads(out)
    result = subject.backward(m, a, g)
    subject.check_backward(m, a, result)
    return [np.asarray(o) for o in flat(out)], [r for r in flat(result) if r is not None]


# -- mutations ----------------------------------------------------------------------------------------------------

def mutate_shape(draw, shape: tuple) -> tuple:
    """``shape`` with one axis resized, dropped or added (or unchanged)."""
    shape = list(shape)
    kind = draw(st.sampled_from(["resize", "resize", "drop", "add", "same"]), label="shape change")
    if kind == "resize" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from([0, 1, 2, 3, 5]))
    elif kind == "drop" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif kind == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.sampled_from([0, 1, 2])))
    return tuple(shape)


BAD_DTYPES = [np.int8, np.int64, np.uint8, bool, np.complex64, np.complex128, object]
FLOAT_DTYPES = [np.float16, np.float32, np.float64]


def redtype(draw, a: np.ndarray, index: bool):
    """``a`` in a drawn dtype or container, and whether a layer must accept it (real floats, or integers for
    ``index`` arrays)."""
    kind = draw(st.sampled_from(["dtype", "dtype", "list", "scalar", "none"]), label="container")
    if kind == "list":
        return a.tolist(), False
    if kind == "scalar":
        return 1.5, False
    if kind == "none":
        return None, False
    dtype = draw(st.sampled_from(FLOAT_DTYPES + BAD_DTYPES + [np.int32, np.uint64]), label="dtype")
    kinds = "iu" if index else "f"
    return a.astype(dtype), np.dtype(dtype).kind in kinds


def poison(draw, a: np.ndarray, layer_dtype) -> tuple[np.ndarray, bool]:
    """``a`` with one NaN, ±Inf, or (for a float32 layer) a float64 value too large for float32; still valid only
    if ``a`` is empty."""
    if a.size == 0:
        return a, True
    values = [np.nan, np.inf, -np.inf] + ([1e300] if layer_dtype == np.float32 else [])
    a = a.astype(np.float64)
    a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(values), label="value")
    return a, False


def mutate_array(draw, a, layer_dtype, index=False):
    """A drawn mutation of a float (or index) array argument → (value, valid, description)."""
    kind = draw(st.sampled_from(["shape", "dtype", "non-finite", "read-only"]), label="mutation")
    if kind == "shape":
        shape = mutate_shape(draw, a.shape)
        return np.zeros(shape, a.dtype), shape == a.shape, f"shape {a.shape} -> {shape}"
    if kind == "dtype":
        value, valid = redtype(draw, a, index)
        return value, valid, f"as {type(value).__name__} {getattr(value, 'dtype', '')}"
    if kind == "non-finite" and not index:
        value, valid = poison(draw, a, layer_dtype)
        return value, valid, "non-finite value"
    a = a.copy()
    a.flags.writeable = False
    return a, True, "read-only"


# -- forward and backward, one category per test ----------------------------------------------------------------

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
