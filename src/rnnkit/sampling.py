"""Sampling text from a character model: prime the state, then draw one character at a time.

p(c) ∝ exp(z_c / temperature); temperature → 0 approaches greedy (argmax) decoding.
"""

from __future__ import annotations

import numpy as np

from .activations import softmax
from .models import SequenceModel
from .tasks import DataError, Vocabulary


def sample_text(model: SequenceModel, vocab: Vocabulary, length: int, prime: str = "", temperature: float = 1.0,
                rng: np.random.Generator | None = None) -> str:
    """Return ``prime`` followed by ``length`` sampled characters."""
    if temperature <= 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    if length < 0:
        raise DataError(f"length must be >= 0, got {length}")
    rng = rng or np.random.default_rng()
    model.eval()
    prime = prime or vocab.chars[int(rng.integers(len(vocab)))]
    ids = vocab.encode(prime)
    logits, state = model.forward(ids[None, :])
    out = []
    for _ in range(length):
        p = softmax(logits[0, -1].astype(np.float64) / temperature)
        nxt = int(rng.choice(len(p), p=p))
        out.append(nxt)
        logits, state = model.forward(np.array([[nxt]]), state)
    return prime + vocab.decode(out)
