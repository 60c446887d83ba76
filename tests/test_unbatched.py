"""One unbatched sequence round-trips: forward gives the batched result without the batch axis, and backward takes
gradients of those shapes and returns gradients shaped like the inputs — for every layer and model kind."""

import numpy as np
import pytest

import rnnkit
from rnnkit import CRF, GRU, LSTM, RHN, RNN, Elman, Highway, Jordan, Linear, MogrifierLSTM, Sequential, Tanh
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.models.sequence import ModelConfig, SequenceModel
from rnnkit.models.tagger import Tagger, TaggerConfig


def ones_like(obj):
    return tuple(ones_like(o) for o in obj) if isinstance(obj, tuple) else np.ones_like(obj)


def batch_of_one(obj):
    return tuple(batch_of_one(o) for o in obj) if isinstance(obj, tuple) else obj[None]


def state_batch_of_one(obj):  # states are (D·L, B, S): the batch axis is the second
    return tuple(state_batch_of_one(o) for o in obj) if isinstance(obj, tuple) else obj[:, None]


def assert_same(a, b):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


LAYERS = {
    "rnn, 2 layers, bidirectional": lambda: RNN(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, rng=0),
    "lstm with projection": lambda: LSTM(3, 4, proj_size=2, peephole=True, dtype=np.float64, rng=0),
    "gru": lambda: GRU(3, 4, dtype=np.float64, rng=0),
    "jordan": lambda: Jordan(3, 4, 2, dtype=np.float64, rng=0),
    "rhn": lambda: RHN(3, 4, depth=2, dtype=np.float64, rng=0),
    "mogrifier": lambda: MogrifierLSTM(3, 4, rounds=2, dtype=np.float64, rng=0),
}


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("mode", ["plain", "initial state", "lengths", "stateful", "detach_state", "outputs only"])
def test_recurrent_layer_round_trips_one_unbatched_sequence(kind, mode, rng):
    one, batched = LAYERS[kind](), LAYERS[kind]()
    x = rng.normal(size=(6, 3))
    kwargs = {}
    if mode == "lengths":
        kwargs = {"lengths": 4}
    for layer in (one, batched):
        layer.stateful = mode == "stateful"
        layer.detach_state = mode == "detach_state"
        layer.return_state = mode != "outputs only"
    if mode == "initial state":
        y0, s0 = LAYERS[kind]().forward(rng.normal(size=(2, 3)))
        kwargs = {"state0": s0}
    if mode == "stateful":  # a first call leaves a carried state that the second starts from
        one.forward(x)
        batched.forward(x[None])
    got = one.forward(x, **kwargs)
    bkw = dict(kwargs)
    if mode == "lengths":
        bkw["lengths"] = np.array([4])
    if mode == "initial state":
        bkw["state0"] = state_batch_of_one(kwargs["state0"])
    want = batched.forward(x[None], **bkw)
    if mode == "outputs only":
        assert_same(batch_of_one(got), want)
        dx = one.backward(np.ones_like(got))
        assert dx.shape == x.shape
        assert_same(dx[None], batched.backward(np.ones_like(want)))
        return
    (y, s), (yb, sb) = got, want
    assert_same(batch_of_one(y), yb)
    assert_same(state_batch_of_one(s), sb)
    dx, ds = one.backward(ones_like(y), ones_like(s))
    dxb, dsb = batched.backward(ones_like(yb), ones_like(sb))
    assert dx.shape == x.shape
    assert_same(dx[None], dxb)
    assert_same(state_batch_of_one(ds), dsb)


FEED_FORWARD = {
    "linear": lambda: Linear(3, 2, dtype=np.float64, rng=0),
    "highway": lambda: Highway(3, dtype=np.float64, rng=0),
    "sequential with an lstm": lambda: Sequential(Linear(3, 4, dtype=np.float64, rng=0), Tanh(),
                                                  LSTM(4, 5, return_state=False, dtype=np.float64, rng=1),
                                                  Linear(5, 2, dtype=np.float64, rng=2)),
    "sequence model, real inputs": lambda: SequenceModel(ModelConfig(3, 2, cell="lstm", hidden_size=4,
                                                                     dtype="float64"), rng=0),
    "elman": lambda: Elman(3, 4, 2, dtype=np.float64, rng=0),
}


@pytest.mark.parametrize("kind", FEED_FORWARD)
def test_feed_forward_modules_and_real_input_models_round_trip_one_unbatched_sequence(kind, rng):
    one, batched = FEED_FORWARD[kind](), FEED_FORWARD[kind]()
    x = rng.normal(size=(6, 3))
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731 - (outputs, state) or outputs
    y, yb = first(one.forward(x)), first(batched.forward(x[None]))
    assert_same(y[None], yb)
    dx, dxb = one.backward(np.ones_like(y)), batched.backward(np.ones_like(yb))
    dx, dxb = first(dx), first(dxb)
    assert dx.shape == x.shape
    assert_same(dx[None], dxb)
    for (name, p), (_, q) in zip(one.named_parameters(), batched.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-12, err_msg=name)


def assert_same_parameter_gradients(a, b):
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_token_sequence_model_round_trips_one_unbatched_sequence(rng):
    make = lambda: SequenceModel(ModelConfig(5, 5, tokens=True, cell="gru", hidden_size=4, dtype="float64"),  # noqa
                                 rng=0)
    one, batched = make(), make()
    ids = rng.integers(0, 5, size=7)
    y, _ = one.forward(ids)
    yb, _ = batched.forward(ids[None])
    assert y.shape == (7, 5)
    assert_same(y[None], yb)
    assert one.backward(np.ones_like(y)) is None and batched.backward(np.ones_like(yb)) is None
    assert_same_parameter_gradients(one, batched)


def test_classifier_round_trips_one_unbatched_sequence(rng):
    make = lambda: SequenceClassifier(ClassifierConfig(6, 3, embedding_size=4, hidden_size=5, dtype="float64"),  # noqa
                                      rng=0)
    one, batched = make(), make()
    ids = rng.integers(1, 6, size=7)
    logits, logits_b = one.forward(ids), batched.forward(ids[None], np.array([7]))
    assert logits.shape == (3,)
    assert_same(logits[None], logits_b)
    one.backward(np.ones(3))
    batched.backward(np.ones((1, 3)))
    assert_same_parameter_gradients(one, batched)


def test_tagger_round_trips_one_unbatched_sentence(rng):
    make = lambda: Tagger(TaggerConfig(6, 3, char_vocab_size=5, embedding_size=4, char_embedding_size=3,  # noqa
                                       char_hidden_size=2, hidden_size=4, dtype="float64"), rng=0)
    one, batched = make(), make()
    words = rng.integers(1, 6, size=5)
    chars, char_lengths = rng.integers(1, 5, size=(5, 4)), np.array([4, 2, 3, 1, 4])
    em = one.forward(words, None, chars, char_lengths)
    em_b = batched.forward(words[None], np.array([5]), chars, char_lengths)
    assert em.shape == (5, 3)
    assert_same(em[None], em_b)
    one.backward(np.ones_like(em))
    batched.backward(np.ones_like(em_b))
    assert_same_parameter_gradients(one, batched)


def test_seq2seq_round_trips_one_unbatched_pair(rng):
    make = lambda: Seq2Seq(Seq2SeqConfig(6, 7, embedding_size=4, hidden_size=5, dtype="float64"), rng=0)  # noqa
    one, batched = make(), make()
    source, target_in = rng.integers(3, 6, size=5), rng.integers(3, 7, size=4)
    logits = one.forward(source, None, target_in)
    logits_b = batched.forward(source[None], np.array([5]), target_in[None])
    assert logits.shape == (4, 7)
    assert_same(logits[None], logits_b)
    one.backward(np.ones_like(logits))
    batched.backward(np.ones_like(logits_b))
    assert_same_parameter_gradients(one, batched)


def test_crf_round_trips_one_unbatched_sequence(rng):
    one, batched = CRF(3, dtype=np.float64, rng=0), CRF(3, dtype=np.float64, rng=0)
    emissions, tags = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    nll, nll_b = one.forward(emissions, tags), batched.forward(emissions[None], tags[None])
    assert nll.shape == () and nll_b.shape == (1,)
    assert_same(nll[None], nll_b)
    d = one.backward(np.float64(1.0))
    assert d.shape == emissions.shape
    assert_same(d[None], batched.backward(np.ones(1)))
    assert_same_parameter_gradients(one, batched)
    path = one.decode(emissions)
    assert isinstance(path, np.ndarray)
    np.testing.assert_array_equal(path, batched.decode(emissions[None])[0])


def test_step_cells_round_trip_one_unbatched_step(rng):
    one, batched = rnnkit.LSTMCell(3, 4, dtype=np.float64, rng=0), rnnkit.LSTMCell(3, 4, dtype=np.float64, rng=0)
    x = rng.normal(size=3)
    h, c = one.forward(x)
    hb, cb = batched.forward(x[None])
    assert h.shape == (4,)
    assert_same((h[None], c[None]), (hb, cb))
    dx, (dh, dc) = one.backward((np.ones(4), np.ones(4)))
    dxb, (dhb, dcb) = batched.backward((np.ones((1, 4)), np.ones((1, 4))))
    assert dx.shape == x.shape and dh.shape == (4,)
    assert_same((dx[None], dh[None], dc[None]), (dxb, dhb, dcb))


def test_predict_round_trips_one_unbatched_sequence(rng):
    model = Sequential(rnnkit.Embedding(5, 3, rng=0), GRU(3, 4, return_state=False, rng=1), Linear(4, 5, rng=2))
    ids = rng.integers(0, 5, size=(2, 6))
    np.testing.assert_allclose(rnnkit.predict(model, ids[0]), rnnkit.predict(model, ids)[0], rtol=1e-5, atol=1e-6)
    assert sum(m.pending_backwards for m in model.modules()) == 0
