"""The linear-chain CRF equals brute-force enumeration over all tag sequences; gradients by central differences."""

import itertools

import numpy as np
import pytest

from conftest import GRADCHECK_TOL
from rnnkit import gradcheck
from rnnkit.crf import CRF


def brute_force(crf, emissions, length):
    a = crf.transitions.data
    start = crf.start_transitions.data if crf.start_end else np.zeros(crf.num_tags)
    end = crf.end_transitions.data if crf.start_end else np.zeros(crf.num_tags)
    paths = list(itertools.product(range(crf.num_tags), repeat=length))
    scores = np.array([start[p[0]] + sum(emissions[t, p[t]] for t in range(length))
                       + sum(a[p[t - 1], p[t]] for t in range(1, length)) + end[p[-1]] for p in paths])
    log_z = np.log(np.exp(scores - scores.max()).sum()) + scores.max()
    return paths, scores, log_z


@pytest.mark.parametrize("start_end", [True, False])
def test_nll_and_viterbi_equal_enumeration(rng, start_end):
    crf = CRF(3, start_end=start_end, dtype=np.float64, rng=0)
    for p in crf.parameters():
        p.data[...] = rng.normal(size=p.shape)
    emissions = rng.normal(size=(3, 5, 3))
    tags = rng.integers(0, 3, size=(3, 5))
    lengths = np.array([5, 2, 1])
    mask = np.arange(5)[None, :] < lengths[:, None]
    nll = crf.forward(emissions, tags, mask)
    best = crf.decode(emissions, mask)
    for b, n in enumerate(lengths):
        paths, scores, log_z = brute_force(crf, emissions[b], n)
        gold = scores[paths.index(tuple(tags[b, :n]))]
        assert nll[b] == pytest.approx(log_z - gold, abs=1e-12)
        assert tuple(best[b]) == paths[int(scores.argmax())]


@pytest.mark.parametrize("start_end", [True, False])
def test_gradcheck_with_mask(rng, start_end):
    crf = CRF(4, start_end=start_end, rng=0)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    assert gradcheck(crf, rng.normal(size=(3, 4, 4)), rng.integers(0, 4, (3, 4)), mask) < GRADCHECK_TOL


def test_stable_for_large_scores(rng):
    crf = CRF(3, dtype=np.float64, rng=0)
    nll = crf.forward(1e4 * rng.normal(size=(2, 6, 3)), rng.integers(0, 3, (2, 6)))
    assert np.isfinite(nll).all() and (nll >= -1e-6).all()


@pytest.mark.parametrize("mask, message", [
    (np.array([[0, 1, 1]]), "first step"),
    (np.array([[1, 0, 1]]), "prefix"),
    (np.ones((2, 3)), r"mask must have shape \(1, 3\)"),
])
def test_bad_masks(mask, message):
    with pytest.raises(ValueError, match=message):
        CRF(2).forward(np.zeros((1, 3, 2), np.float32), np.zeros((1, 3), int), mask)
