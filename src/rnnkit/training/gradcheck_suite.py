"""The layers `rnnkit gradcheck` verifies: small random configurations of every layer with a backward pass."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..activations import ReLU, Sigmoid, Softmax, Tanh
from ..gradcheck import gradcheck
from ..highway import Highway
from ..layers import Dropout, Embedding, Linear, Sequential
from ..recurrent import (
    GRU,
    LSTM,
    RHN,
    RNN,
    Elman,
    GRUCell,
    IndRNN,
    Jordan,
    LayerNormGRU,
    LayerNormLSTM,
    LSTMCell,
    MinGRU,
    MinLSTM,
    MogrifierLSTM,
    RNNCell,
    catalog,
)


def cases(rng: np.random.Generator) -> Iterator[tuple[str, object, tuple, dict]]:
    """(name, module, positional inputs, keyword inputs) for each check."""
    x = rng.normal(size=(2, 4, 3))
    yield from _building_blocks(rng, x)
    yield from _every_cell(rng, x)
    yield from _classic_recurrent(rng, x)
    yield from _newer_recurrent(rng, x)


def _every_cell(rng, x):
    """Each variant of each cell of the catalogue (`rnnkit.recurrent.catalog`), bidirectional with a ragged batch:
    a cell added to the catalogue is checked without an edit here."""
    for entry in catalog.entries():
        for variant, options in entry.variants.items():
            layer = entry.layer(3, 4, bidirectional=True, rng=rng, **options)
            yield f"{entry.variant_label(variant)} (bidirectional, lengths)", layer, (x, None), \
                {"lengths": np.array([4, 2])}


def _building_blocks(rng, x):
    """Layers, activations, dropout and a chain of them."""
    relu_x = np.where(np.abs(x) < 0.1, 0.5, x)
    yield "Linear", Linear(3, 4, rng=rng), (x,), {}
    yield "Embedding", Embedding(5, 3, rng=rng), (rng.integers(0, 5, (2, 4)),), {}
    yield "Sigmoid", Sigmoid(), (x,), {}
    yield "Tanh", Tanh(), (x,), {}
    yield "ReLU", ReLU(), (relu_x,), {}
    yield "Softmax", Softmax(), (x,), {}
    yield "Dropout(0.3)", Dropout(0.3, rng=rng), (x,), {}
    yield "Sequential(Linear, Tanh, Linear)", Sequential(Linear(3, 5, rng=rng), Tanh(), Linear(5, 2, rng=rng)), \
        (x,), {}


def _classic_recurrent(rng, x):
    """RNN, LSTM, GRU, Jordan, RHN, Mogrifier and the step cells: options, states, lengths, stateful chunks."""
    for options in ({}, {"nonlinearity": "relu"}, {"num_layers": 2}, {"bidirectional": True},
                    {"num_layers": 2, "bidirectional": True, "dropout": 0.3}):
        layer = RNN(3, 4, rng=rng, **options)
        h0 = rng.normal(size=(layer.num_directions * layer.num_layers, 2, 4))
        label = ", ".join(f"{k}={v}" for k, v in options.items())
        yield f"RNN({label})", layer, (x, h0), {}
    yield "RNN(lengths=[2, 4], bidirectional)", RNN(3, 4, bidirectional=True, rng=rng), (x, None), \
        {"lengths": np.array([2, 4])}
    stateful = RNN(3, 4, stateful=True, dtype=np.float64, rng=rng)
    stateful.forward(rng.normal(size=(2, 3, 3)))
    yield "RNN(stateful, second chunk)", stateful, (x,), {}
    yield "Elman(3, 4, 2)", Elman(3, 4, 2, rng=rng), (x, rng.normal(size=(1, 2, 4))), {}
    lstm_state = (rng.normal(size=(1, 2, 4)), rng.normal(size=(1, 2, 4)))
    yield "LSTM", LSTM(3, 4, rng=rng), (x, lstm_state), {}
    yield "LSTM(proj_size=2, peephole, lengths)", LSTM(3, 4, proj_size=2, peephole=True, rng=rng), \
        ((x, (rng.normal(size=(1, 2, 2)), lstm_state[1]))), {"lengths": np.array([3, 4])}
    yield "LSTM(2 layers, bidirectional)", LSTM(3, 4, num_layers=2, bidirectional=True, rng=rng), (x, None), {}
    yield "GRU", GRU(3, 4, rng=rng), (x, rng.normal(size=(1, 2, 4))), {}
    yield "GRU(reset_after=False, bidirectional, lengths)", GRU(3, 4, reset_after=False, bidirectional=True,
                                                                  rng=rng), (x, None), {"lengths": np.array([4, 2])}
    yield "Jordan(3, 4, 2, state_decay=0.5)", Jordan(3, 4, 2, state_decay=0.5, rng=rng), \
        (x, (rng.random((1, 2, 2)), rng.random((1, 2, 2)))), {}
    yield "RNNCell", RNNCell(3, 4, rng=rng), (x[:, 0], rng.normal(size=(2, 4))), {}
    yield "LSTMCell", LSTMCell(3, 4, rng=rng), (x[:, 0], (lstm_state[0][0], lstm_state[1][0])), {}
    yield "GRUCell", GRUCell(3, 4, rng=rng), (x[:, 0], rng.normal(size=(2, 4))), {}
    yield "Highway(num_layers=2)", Highway(3, num_layers=2, rng=rng), (x,), {}
    yield "RHN(depth=3)", RHN(3, 4, depth=3, rng=rng), (x, rng.normal(size=(1, 2, 4))), {}
    yield "RHN(depth=2, uncoupled, lengths)", RHN(3, 4, depth=2, coupled=False, rng=rng), (x, None), \
        {"lengths": np.array([4, 1])}
    yield "MogrifierLSTM(rounds=5)", MogrifierLSTM(3, 4, rounds=5, rng=rng), (x, lstm_state), {}
    yield "MogrifierLSTM(rounds=4, rank=2, lengths)", MogrifierLSTM(3, 4, rounds=4, rank=2, rng=rng), (x, None), \
        {"lengths": np.array([2, 4])}


def _newer_recurrent(rng, x):
    """IndRNN, minGRU/minLSTM in both modes, the layer-normalised cells, and the recurrent regularisers."""
    yield "IndRNN(2 layers, bidirectional, lengths)", IndRNN(3, 4, num_layers=2, bidirectional=True, rng=rng), \
        (x, rng.normal(size=(4, 2, 4))), {"lengths": np.array([4, 3])}
    yield "IndRNN(tanh, recurrent_max=1)", IndRNN(3, 4, nonlinearity="tanh", recurrent_max=1.0, rng=rng), \
        (x, rng.normal(size=(1, 2, 4))), {}
    for mode in ("sequential", "scan"):
        yield f"MinGRU(mode={mode}, bidirectional, lengths)", MinGRU(3, 4, bidirectional=True, mode=mode, rng=rng), \
            (x, rng.normal(size=(2, 2, 4))), {"lengths": np.array([2, 4])}
        yield f"MinLSTM(mode={mode}, 2 layers)", MinLSTM(3, 4, num_layers=2, mode=mode, rng=rng), \
            (x, rng.normal(size=(2, 2, 4))), {}
    yield "LayerNormLSTM(bidirectional, lengths)", LayerNormLSTM(3, 4, bidirectional=True, rng=rng), \
        (x, (rng.normal(size=(2, 2, 4)), rng.normal(size=(2, 2, 4)))), {"lengths": np.array([4, 2])}
    yield "LayerNormGRU(2 layers)", LayerNormGRU(3, 4, num_layers=2, rng=rng), (x, rng.normal(size=(2, 2, 4))), {}
    regularized = {"dropout_input": 0.3, "dropout_recurrent": 0.3, "zoneout": (0.2, 0.4), "weight_drop": 0.3}
    yield "LSTM(variational dropout, zoneout, weight drop, bidirectional, lengths)", \
        LSTM(3, 4, bidirectional=True, rng=rng, **regularized), (x, None), {"lengths": np.array([4, 3])}
    yield "GRU(variational dropout, zoneout, weight drop, 2 layers)", \
        GRU(3, 4, num_layers=2, rng=rng, **{**regularized, "zoneout": 0.2}), (x, None), {}


def run_suite(seed: int = 0) -> Iterator[tuple[str, float]]:
    for name, module, inputs, kwargs in cases(np.random.default_rng(seed)):
        yield name, gradcheck(module, *inputs, **kwargs)
