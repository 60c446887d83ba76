"""`SequenceModel`: encoder → recurrent layer → (dropout) → linear head, built from a JSON-able config.

This is the model the trainer and the command line use for every task:

    tokens (B, T) ──OneHot/Embedding──▶ (B, T, E) ──recurrent layer──▶ (B, T, D·H) ──Dropout──▶ ──Linear──▶ (B, T, O)
    reals  (B, T, I) ─────────────────────────────┘

(recurrent layer: RNN, LSTM, GRU, RHN or MogrifierLSTM; a Jordan network is handled below)

A Jordan network has no separate head: its own output layer (identity activation: logits or regression values)
is the model's output and is what it feeds back. Per-step outputs are produced for every position; many-to-one
tasks mask the loss to the last step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .configs import JSONConfig
from .layers import Dropout, Embedding, Linear, OneHot
from .module import Module, as_rng, check_dtype
from .recurrent import GRU, LSTM, RHN, RNN, Jordan, MogrifierLSTM

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "jordan": Jordan, "rhn": RHN, "mogrifier": MogrifierLSTM}
# Cells that can encode a sequence for another model (a Jordan net feeds back its own output instead).
ENCODER_CELLS = ("rnn", "lstm", "gru", "rhn", "mogrifier")


def check_encoder_cell(cell: str, user: str = "the encoder") -> None:
    """One-line error unless ``cell`` can serve as a recurrent encoder."""
    if cell not in ENCODER_CELLS:
        raise ValueError(f"{user} needs a recurrent encoder cell: one of {', '.join(ENCODER_CELLS)}, got {cell!r}")


@dataclass
class ModelConfig(JSONConfig):
    """Everything needed to rebuild a model (stored in checkpoints)."""

    input_size: int  # features of real inputs, or vocabulary size of token inputs
    output_size: int
    tokens: bool = False  # integer token inputs (one-hot or embedded)
    embedding_size: int = 0  # 0: one-hot (char-rnn); > 0: a learned Embedding
    cell: str = "rnn"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    nonlinearity: str = "tanh"  # rnn
    forget_bias: float | None = None  # lstm
    proj_size: int = 0  # lstm
    peephole: bool = False  # lstm
    reset_after: bool = True  # gru
    depth: int = 3  # rhn: micro-cells per step
    coupled: bool = True  # rhn: carry gate = 1 − transform gate
    transform_bias: float = -2.0  # rhn
    rounds: int = 5  # mogrifier
    rank: int | None = None  # mogrifier: low-rank Q, R
    detach_state: bool = False  # Elman's (1990) training: no error propagated back through time
    dtype: str = "float32"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        check_dtype(self.dtype)
        for name in ("input_size", "output_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cell == "jordan" and (self.num_layers != 1 or self.bidirectional):
            raise ValueError("a Jordan network feeds its output back: use one unidirectional layer (--num-layers 1)")

    def cell_options(self) -> dict:
        """The options of the recurrent layer class that belong to this cell type."""
        return {
            "rnn": {"nonlinearity": self.nonlinearity},
            "lstm": {"forget_bias": self.forget_bias, "proj_size": self.proj_size, "peephole": self.peephole},
            "gru": {"reset_after": self.reset_after},
            "jordan": {},
            "rhn": {"depth": self.depth, "coupled": self.coupled, "transform_bias": self.transform_bias},
            "mogrifier": {"rounds": self.rounds, "rank": self.rank, "forget_bias": self.forget_bias,
                          "proj_size": self.proj_size, "peephole": self.peephole},
        }[self.cell]


class SequenceModel(Module):
    """forward(x, state=None, lengths=None) → (outputs (B, T, O), final state); backward(δoutputs) → δx or None."""

    def __init__(self, config: ModelConfig, rng=None):
        super().__init__()
        rng = as_rng(rng)
        self.config = config
        dtype = np.dtype(config.dtype)
        if config.tokens:
            if config.embedding_size:
                self.encoder = Embedding(config.input_size, config.embedding_size, dtype=dtype, rng=rng)
            else:
                self.encoder = OneHot(config.input_size, dtype=dtype)
            rnn_input = config.embedding_size or config.input_size
        else:
            self.encoder = None
            rnn_input = config.input_size
        if config.cell == "jordan":
            self.rnn = Jordan(rnn_input, config.hidden_size, config.output_size, output_activation="identity",
                              dtype=dtype, rng=rng)
            self.drop, self.head = None, None
        else:
            self.rnn = CELLS[config.cell](rnn_input, config.hidden_size, num_layers=config.num_layers,
                                          dropout=config.dropout, bidirectional=config.bidirectional, dtype=dtype,
                                          rng=rng, **config.cell_options())
            self.drop = Dropout(config.dropout, rng=rng) if config.dropout else None
            self.head = Linear(self.rnn.output_size, config.output_size, dtype=dtype, rng=rng)
        self.rnn.detach_state = config.detach_state

    def forward(self, x, state=None, lengths=None):
        h = self.encoder.forward(x) if self.encoder is not None else x
        h, final = self.rnn.forward(h, state, lengths=lengths)
        if self.head is None:
            return h, final
        if self.drop is not None:
            h = self.drop.forward(h)
        return self.head.forward(h), final

    def backward(self, dout):
        dh = dout if self.head is None else self.head.backward(dout)
        if self.drop is not None:
            dh = self.drop.backward(dh)
        dx, _ = self.rnn.backward(dh)
        return self.encoder.backward(dx) if self.encoder is not None else dx

    def state_at(self, k: int):
        return self.rnn.state_at(k)
