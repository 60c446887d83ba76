"""The fuzz suite's subjects (every layer family, with how to build, call and check it) and the strategies that
mutate their arguments (see tests/test_fuzz_api.py)."""


import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import strategies as st  # noqa: E402

from fuzz_harness import (  # noqa: E402
    finite,
    flat,
)
from rnnkit import (  # noqa: E402
    CRF,
    GRU,
    LSTM,
    RHN,
    RNN,
    Embedding,
    GRUCell,
    Highway,
    Jordan,
    Linear,
    LSTMCell,
    MogrifierLSTM,
    RNNCell,
)
from rnnkit.attention import AdditiveAttention, LuongAttention  # noqa: E402

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
