"""Padding helpers for variable-length batches."""

import numpy as np
import pytest

from rnnkit import LSTM, pad_sequences, unpad_sequences


def test_pad_and_unpad_round_trip(rng):
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 1, 6)]
    padded, lengths = pad_sequences(seqs)
    assert padded.shape == (3, 6, 3) and padded.dtype == np.float32
    np.testing.assert_array_equal(lengths, [4, 1, 6])
    assert not padded[1, 1:].any()
    for a, b in zip(unpad_sequences(padded, lengths), seqs):
        np.testing.assert_array_equal(a, b)
    y, _ = LSTM(3, 5).forward(padded, lengths=lengths)
    assert not y[1, 1:].any()


def test_pad_rejects_mismatched_features():
    with pytest.raises(ValueError, match="share their shape"):
        pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([])
