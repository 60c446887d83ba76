"""CTC transcription model: frames → bidirectional recurrent layer → linear head → log-softmax → CTC loss.

    h = BiRNN(x, lengths)  (B, T, 2H);   z = h W_oᵀ + b_o  (B, T, C);   y = log_softmax(z)
    loss = CTC(yᵀ (T, B, C), labels, lengths, label lengths), torch's 'mean' (each nll_b / S_b, then the batch mean)

Backward: δy from `rnnkit.ctc.CTCLoss` (whose gradient already is that of the loss through the log-softmax, but
the log-softmax backward δz = δy − softmax(z) Σ_c δy is applied anyway, so `Transcriber.backward` is right for any
δy), then the head and the recurrent layer. Decoding: greedy (best path) or prefix beam search.

Data and the label error rate: `rnnkit.tasks.ctc` (``rnnkit train ctc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..activations import log_softmax
from ..ctc import CTCLoss, ctc_greedy_decode, ctc_prefix_beam_search
from ..errors import ConfigError
from ..layers import Linear
from ..module import Module, as_rng, check_dtype
from ..tasks.ctc import CTCBatch, label_errors
from .configs import JSONConfig, check_always_bidirectional, check_sizes
from .protocol import WholeSequenceModel, inference
from .sequence import RECURRENT_LAYERS, check_encoder_cell


@dataclass
class TranscriberConfig(JSONConfig):
    """A `Transcriber` (stored in checkpoints); its fields take `ModelConfig`'s flags. Class 0 is the blank."""

    input_size: int
    num_classes: int  # symbols + the blank
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    symbols: list[str] | None = None  # class names, "<blank>" first
    dtype: str = "float32"
    bidirectional: bool = True  # always: the encoder reads each utterance both ways
    kind: ClassVar[str] = "transcriber"

    def __post_init__(self):
        check_always_bidirectional(self)
        check_encoder_cell(self.cell)
        check_sizes(self, "input_size", "hidden_size", "num_layers")
        check_sizes(self, "num_classes", low=2)  # a blank and a symbol
        check_dtype(self.dtype)
        if self.symbols is not None and len(self.symbols) != self.num_classes:
            raise ConfigError(f"a transcriber's symbols must name its {self.num_classes} classes (the blank first), "
                              f"got {len(self.symbols)}")

    @classmethod
    def check_cell(cls, cell: str) -> None:
        check_encoder_cell(cell, "task 'ctc'")

    def parameter_count(self) -> int:
        """The model's number of parameters, computed without building it (`rnnkit.models.footprint`)."""
        rnn = RECURRENT_LAYERS[self.cell].parameter_count(self.input_size, self.hidden_size, self.num_layers,
                                                          self.bidirectional)
        return rnn + (2 * self.hidden_size + 1) * self.num_classes

    @classmethod
    def for_task(cls, task, **options) -> TranscriberConfig:
        return cls(task.input_size, task.output_size, symbols=["<blank>", *task.symbols], **options)


class Transcriber(WholeSequenceModel, Module):
    """forward(frames (B, T, F), lengths (B,) = None) → log-probabilities (B, T, C), batch-first;
    backward(δlog_probs) → δframes. ``transcribe(frames, lengths, beam_width=1)`` → label arrays."""

    def __init__(self, config: TranscriberConfig, rng=None):
        super().__init__()
        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        self.rnn = RECURRENT_LAYERS[config.cell](config.input_size, config.hidden_size, num_layers=config.num_layers,
                                                 bidirectional=config.bidirectional, dtype=dtype, rng=rng)
        self.head = Linear(self.rnn.output_size, config.num_classes, dtype=dtype, rng=rng)
        self.ctc = CTCLoss(blank=0, reduction="mean")

    def forward(self, frames, lengths=None):
        out, _ = self.rnn.forward(frames, lengths=lengths)
        log_probs = log_softmax(self.head.forward(out))
        self.save_for_backward(log_probs)
        return log_probs

    def backward(self, dlog_probs):
        log_probs = self.saved_for_backward()[0]
        # δz = δy − softmax(z) Σ_c δy   (log-softmax backward; softmax(z) = exp y)
        dlogits = dlog_probs - np.exp(log_probs) * dlog_probs.sum(axis=-1, keepdims=True)
        dframes, _ = self.rnn.backward(self.head.backward(dlogits))
        return dframes

    def _loss(self, log_probs, batch: CTCBatch) -> float:
        return self.ctc.forward(log_probs.transpose(1, 0, 2), batch.target, batch.lengths, batch.target_lengths)

    def train_batch(self, batch: CTCBatch, window=None, state=None) -> float:
        """CTC loss (torch's 'mean'), backpropagated."""
        self.check_whole(batch, window)
        self.train()
        log_probs = self.forward(batch.x, batch.lengths)
        loss = self._loss(log_probs, batch)
        if np.isfinite(loss):  # otherwise the trainer discards the saved calls (the loss's included)
            self.backward(self.ctc.backward().transpose(1, 0, 2))
        return loss

    def transcribe(self, frames, lengths=None, beam_width: int = 1) -> list[np.ndarray]:
        """Label arrays per sequence: greedy (best path) decoding, or prefix beam search with ``beam_width`` > 1."""
        with inference(self):
            log_probs = self.forward(frames, lengths).transpose(1, 0, 2)
        if beam_width == 1:
            return ctc_greedy_decode(log_probs, lengths)
        return ctc_prefix_beam_search(log_probs, lengths, beam_width=beam_width)

    def evaluate(self, task) -> dict:
        """``val_loss`` (the mean over sequences of nll / labels, the training loss's measure), the label error
        rate of greedy decoding and the share of sequences decoded exactly, over ``task.val``."""
        loss_sum = count = errors = labels = exact = 0
        with inference(self):
            for batch in task.val:
                log_probs = self.forward(batch.x, batch.lengths)
                loss_sum += self._loss(log_probs, batch) * len(batch.lengths)
                e, n, x = label_errors(ctc_greedy_decode(log_probs.transpose(1, 0, 2), batch.lengths), batch)
                count, errors, labels, exact = count + len(batch.lengths), errors + e, labels + n, exact + x
        return {"val_loss": loss_sum / max(count, 1), "label_error_rate": errors / max(labels, 1),
                "sequence_accuracy": exact / max(count, 1)}
