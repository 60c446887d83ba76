"""Sampling text from a character model: prime the state, then draw one character at a time; and scoring a text.

p(c) ∝ exp(z_c / temperature); temperature → 0 approaches greedy (argmax) decoding.
"""

from __future__ import annotations

import math

import numpy as np

from ..activations import softmax
from ..errors import ConfigError
from ..losses import CrossEntropyLoss
from ..models.protocol import inference
from ..models.sequence import SequenceModel
from ..tasks.vocab import CharVocabulary
from .progress import progress


def sample_text(model: SequenceModel, vocab: CharVocabulary, length: int, prime: str = "", temperature: float = 1.0,
                rng: np.random.Generator | None = None) -> str:
    """Return ``prime`` followed by ``length`` sampled characters."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if length < 0:
        raise ConfigError(f"length must be >= 0, got {length}")
    rng = rng or np.random.default_rng()
    prime = prime or vocab.chars[int(rng.integers(len(vocab)))]
    ids = vocab.encode(prime)
    out = []
    with inference(model):
        logits, state = model.forward(ids[None, :])
        for _ in range(length):
            z = logits[0, -1].astype(np.float64)
            with np.errstate(over="ignore"):  # a tiny temperature sends all but the largest logit to −∞: argmax
                p = softmax((z - z.max()) / temperature)
            nxt = int(rng.choice(len(p), p=p))
            out.append(nxt)
            logits, state = model.forward(np.array([[nxt]]), state)
    return prime + vocab.decode(out)


def text_scores(model: SequenceModel, vocab: CharVocabulary, text: str, window: int, carry: bool = True,
                streams: int = 16) -> dict[str, float]:
    """How well a character model predicts ``text``: the mean loss in nats per character, bits per character
    (loss / ln 2) and perplexity (e^loss). The text is cut into ``streams`` contiguous rows (fewer for a short text)
    read in windows of ``window`` characters; ``carry``: each window starts from the state the previous one ended
    in (as in training), else from zeros. Characters outside the vocabulary are an error, as in `sample_text`."""
    ids = vocab.encode(text)
    n = len(ids) - 1
    if n < 1:
        raise ConfigError("the text must have at least 2 characters (one to read, one to predict)")
    rows = max(1, min(streams, n // window))
    width = n // rows
    x, target = ids[:rows * width].reshape(rows, width), ids[1:rows * width + 1].reshape(rows, width)
    summed, total, state = CrossEntropyLoss("sum"), 0.0, None
    with inference(model):
        for start in progress(range(0, width, window), desc="eval", unit="window"):
            out, state = model.forward(x[:, start:start + window], state if carry else None)
            total += summed.forward(out, target[:, start:start + window])
    loss = total / target.size
    return {"loss": loss, "bits_per_char": loss / math.log(2), "perplexity": math.exp(loss) if loss < 700 else math.inf,
            "characters": int(target.size)}
