"""Property-based tests (Hypothesis) over shapes, lengths, dtypes and options of every recurrent layer.

For valid input, forward and backward never crash, shapes and dtypes are as documented, outputs and gradients at
padded positions are exactly zero; invalid input raises the documented one-line error. Set
``RNNKIT_HYPOTHESIS_EXAMPLES`` for longer runs (CI uses the default, a few hundred examples per property).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit import GRU, LSTM, RHN, RNN, Jordan, MogrifierLSTM
from rnnkit.crf import CRF

EXAMPLES = int(os.environ.get("RNNKIT_HYPOTHESIS_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LAYERS = {
    "rnn": lambda i, h, o, rng: RNN(i, h, nonlinearity=o.draw(st.sampled_from(["tanh", "relu"])), **common(o), rng=rng),
    "lstm": lambda i, h, o, rng: LSTM(i, h, proj_size=o.draw(st.integers(0, h - 1)), peephole=o.draw(st.booleans()),
                                      **common(o), rng=rng),
    "gru": lambda i, h, o, rng: GRU(i, h, reset_after=o.draw(st.booleans()), **common(o), rng=rng),
    "jordan": lambda i, h, o, rng: Jordan(i, h, o.draw(st.integers(1, 3)), bidirectional=o.draw(st.booleans()),
                                          dtype=o.draw(st.sampled_from([np.float32, np.float64])), rng=rng),
    "rhn": lambda i, h, o, rng: RHN(i, h, depth=o.draw(st.integers(1, 3)), coupled=o.draw(st.booleans()),
                                    **common(o), rng=rng),
    "mogrifier": lambda i, h, o, rng: MogrifierLSTM(i, h, rounds=o.draw(st.integers(0, 4)),
                                                    rank=o.draw(st.sampled_from([None, 1, 2])), **common(o), rng=rng),
}


def common(o):
    return {"num_layers": o.draw(st.integers(1, 2)), "bidirectional": o.draw(st.booleans()),
            "dtype": o.draw(st.sampled_from([np.float32, np.float64]))}


@pytest.mark.parametrize("kind", LAYERS)
@SETTINGS
@given(data=st.data())
def test_valid_input_never_crashes_and_padding_stays_zero(kind, data):
    batch, steps = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    inputs, hidden = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5))
    layer = LAYERS[kind](inputs, hidden, data, np.random.default_rng(0))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.normal(size=(batch, steps, inputs)).astype(layer.dtype)
    lengths = np.array(data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch)))
    y, final = layer.forward(x, lengths=lengths)
    assert y.shape == (batch, steps, layer.output_size) and y.dtype == layer.dtype
    parts = final if isinstance(final, tuple) else (final,)
    rows = layer.num_directions * layer.num_layers
    assert [p.shape for p in parts] == [(rows, batch, s) for s in layer.state_sizes]
    dx, _ = layer.backward(rng.normal(size=y.shape).astype(layer.dtype))
    assert dx.shape == x.shape and dx.dtype == layer.dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    for b, n in enumerate(lengths):
        assert not y[b, n:].any() and not dx[b, n:].any()
    for _, p in layer.named_parameters():
        assert p.grad.dtype == layer.dtype and np.isfinite(p.grad).all()


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@SETTINGS
@given(data=st.data())
def test_invalid_input_raises_the_documented_error(kind, data):
    layer = LAYERS[kind](3, 4, data, np.random.default_rng(0))
    bad = data.draw(st.sampled_from(["features", "dtype", "ndim", "nan", "lengths_zero", "lengths_long",
                                     "state_shape"]))
    x = np.zeros((2, 3, 3), layer.dtype)
    calls = {
        "features": (lambda: layer.forward(np.zeros((2, 3, 5), layer.dtype)), ValueError, "features"),
        "dtype": (lambda: layer.forward(x.astype(np.int32)), TypeError, "dtype"),  # other floats are converted
        "ndim": (lambda: layer.forward(np.zeros(3, layer.dtype)), ValueError, "2-D or 3-D"),
        "nan": (lambda: layer.forward(np.full_like(x, np.nan)), ValueError, "NaN"),
        "lengths_zero": (lambda: layer.forward(x, lengths=np.array([0, 3])), ValueError, "lengths"),
        "lengths_long": (lambda: layer.forward(x, lengths=np.array([4, 3])), ValueError, "lengths"),
        "state_shape": (lambda: layer.forward(x, tuple(np.zeros((9, 2, s), layer.dtype) for s in layer.state_sizes)
                                              if len(layer.state_sizes) > 1 else np.zeros((9, 2, 4), layer.dtype)),
                        ValueError, "initial state"),
    }
    call, error, message = calls[bad]
    with pytest.raises(error, match=message):
        call()


@SETTINGS
@given(data=st.data())
def test_crf_never_crashes_and_paths_have_the_sequence_lengths(data):
    batch, steps, tags = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    lengths = np.array(data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch)))
    mask = np.arange(steps)[None, :] < lengths[:, None]
    crf = CRF(tags, start_end=data.draw(st.booleans()), rng=0)
    emissions = (rng.normal(size=(batch, steps, tags)) * data.draw(st.sampled_from([1.0, 1e3]))).astype(np.float32)
    nll = crf.forward(emissions, rng.integers(0, tags, (batch, steps)), mask)
    assert np.isfinite(nll).all() and (nll > -1e-3).all()
    grad = crf.backward(np.ones(batch, np.float32))
    assert np.isfinite(grad).all() and not grad[~mask].any()
    assert [len(p) for p in crf.decode(emissions, mask)] == list(lengths)
