"""Sampling text from a character model: prime the state, then draw one character at a time.

p(c) ∝ exp(z_c / temperature); temperature → 0 approaches greedy (argmax) decoding.
"""

from __future__ import annotations

import numpy as np

from ..activations import softmax
from ..errors import ConfigError
from ..models.protocol import inference
from ..models.sequence import SequenceModel
from ..tasks.vocab import CharVocabulary


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
            p = softmax(logits[0, -1].astype(np.float64) / temperature)
            nxt = int(rng.choice(len(p), p=p))
            out.append(nxt)
            logits, state = model.forward(np.array([[nxt]]), state)
    return prime + vocab.decode(out)
