"""`CRF`: a linear-chain conditional random field over per-step emission scores (Lafferty et al. 2001).

Score of a tag path y for emissions e (T, K), with transitions A[i, j] (from tag i to tag j) and, optionally,
start and end scores π, ω:

    s(y) = π[y_0] + Σ_t e_t[y_t] + Σ_{t≥1} A[y_{t-1}, y_t] + ω[y_{L-1}]
    p(y | e) = exp s(y) / Z,   NLL = log Z − s(y_gold)

log Z by the forward algorithm in log space: α_0 = π + e_0, α_t[j] = logsumexp_i(α_{t-1}[i] + A[i, j]) + e_t[j],
log Z = logsumexp(α_{L-1} + ω). The backward recursion β_{L-1} = ω, β_t[i] = logsumexp_j(A[i, j] + e_{t+1}[j] +
β_{t+1}[j]) gives the marginals, which are the gradient of log Z:

    ∂log Z/∂e_t[j] = P(y_t = j) = exp(α_t[j] + β_t[j] − log Z)
    ∂log Z/∂A[i, j] = Σ_t P(y_{t-1} = i, y_t = j) = Σ_t exp(α_{t-1}[i] + A[i, j] + e_t[j] + β_t[j] − log Z)
    ∂log Z/∂π = P(y_0),   ∂log Z/∂ω = P(y_{L-1})

and ∂NLL = marginals − counts of the gold path. Sequences are ragged through a (B, T) mask whose valid steps form
a prefix (the first step of every sequence is valid); steps past a sequence's end leave α unchanged.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .module import (
    DEFAULT_DTYPE,
    Module,
    Parameter,
    as_rng,
    check_bool,
    check_dtype,
    check_float_array,
    check_float_grad,
    check_index_array,
    check_mask,
    check_positive_int,
    in_dtype_of,
)
from .validate import parameters_fit


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


class CRF(Module):
    """forward(emissions (B, T, K), tags (B, T), mask (B, T) = None) → NLL per sequence (B,);
    backward(δnll (B,)) → δemissions. ``decode(emissions, mask)`` → best paths (Viterbi), a list of int arrays.
    One unbatched sequence — emissions (T, K), tags (T,) — gives a scalar NLL, (T, K) gradients and one path.

    Parameters: ``transitions`` (K, K) [from, to], and with ``start_end=True`` ``start_transitions``,
    ``end_transitions`` (K), all initialised U(−0.1, 0.1) (as pytorch-crf).
    """

    def __init__(self, num_tags: int, start_end: bool = True, dtype=DEFAULT_DTYPE, rng=None):
        super().__init__()
        num_tags, start_end = check_positive_int("num_tags", num_tags), check_bool("start_end", start_end)
        dt, rng = check_dtype(dtype), as_rng(rng)
        parameters_fit(num_tags * (num_tags + 2), dt, f"CRF({num_tags})")
        self.num_tags, self.start_end = num_tags, start_end
        self.transitions = Parameter(rng.uniform(-0.1, 0.1, (num_tags, num_tags)).astype(dt))
        if start_end:
            self.start_transitions = Parameter(rng.uniform(-0.1, 0.1, num_tags).astype(dt))
            self.end_transitions = Parameter(rng.uniform(-0.1, 0.1, num_tags).astype(dt))

    # -- helpers --------------------------------------------------------------------------------------
    def _scores(self):
        k = self.num_tags
        zeros = np.zeros(k, self.dtype)
        start = self.start_transitions.data if self.start_end else zeros
        end = self.end_transitions.data if self.start_end else zeros
        return self.transitions.data, start, end

    def _check(self, emissions, mask, tags=None, decoding=False):
        """(emissions (B, T, K) in the CRF's dtype, tags (B, T) or None, mask (B, T)), an unbatched (T, K) call
        given a batch axis of one."""
        emissions = check_float_array(emissions, "emissions", self.dtype, (2, 3))
        if emissions.ndim == 2:  # one unbatched sequence: tags (T,), mask (T,)
            emissions = emissions[None]
            tags = tags[None] if isinstance(tags, np.ndarray) else tags
            mask = None if mask is None else check_mask(mask, "mask", emissions.shape[1:2])[None]
        batch, steps, k = emissions.shape
        if steps == 0:
            raise ShapeError(f"emissions must have at least one time step, got shape {emissions.shape}")
        if k != self.num_tags:
            raise ShapeError(f"emissions must have {self.num_tags} tag scores in their last axis, got shape "
                             f"{emissions.shape}")
        if not decoding:
            check_index_array(tags, "tags", self.num_tags)
            if tags.shape != (batch, steps):
                raise ShapeError(f"tags must have shape {(batch, steps)}, got {tags.shape}")
        mask = np.ones((batch, steps), bool) if mask is None else check_mask(mask, "mask", (batch, steps))
        if not mask[:, 0].all():
            raise ShapeError("mask: the first step of every sequence must be valid")
        if (np.diff(mask.astype(np.int8), axis=1) > 0).any():
            raise ShapeError("mask: the valid steps of each sequence must be a prefix (padding at the end)")
        return emissions, tags, mask

    def _alphas(self, emissions, mask):
        trans, start, _ = self._scores()
        alphas = np.empty_like(emissions)
        alphas[:, 0] = start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            nxt = _logsumexp(alphas[:, t - 1, :, None] + trans, axis=1) + emissions[:, t]
            alphas[:, t] = np.where(mask[:, t, None], nxt, alphas[:, t - 1])
        return alphas

    # -- negative log-likelihood ------------------------------------------------------------------------
    def forward(self, emissions: np.ndarray, tags: np.ndarray, mask=None) -> np.ndarray:
        """NLL per sequence (B,) — a scalar array () for one unbatched sequence (emissions (T, K), tags (T,))."""
        given, unbatched = getattr(emissions, "dtype", None), np.ndim(emissions) == 2
        emissions, tags, mask = self._check(emissions, mask, tags)
        trans, start, end = self._scores()
        batch, steps, _ = emissions.shape
        rows = np.arange(batch)
        lengths = mask.sum(axis=1)
        last = tags[rows, lengths - 1]
        gold = start[tags[:, 0]] + (np.take_along_axis(emissions, tags[..., None], 2)[..., 0] * mask).sum(axis=1)
        gold += (trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(axis=1) + end[last]
        alphas = self._alphas(emissions, mask)
        log_z = _logsumexp(alphas[:, -1] + end, axis=1)
        self.save_for_backward(emissions, tags, mask, alphas, log_z, lengths, given, unbatched)
        nll = log_z - gold
        return nll[0] if unbatched else nll

    def backward(self, dnll: np.ndarray) -> np.ndarray:
        """δNLL per sequence (B,) (a scalar for an unbatched call) → δemissions, in the emissions' dtype."""
        emissions, tags, mask, alphas, log_z, lengths, given, unbatched = self.saved_for_backward()
        trans, _, end = self._scores()
        batch, steps, k = emissions.shape
        w = np.asarray(dnll) if isinstance(dnll, (float, np.floating)) else dnll  # a scalar NLL's gradient
        w = check_float_grad(w, "CRF: gradient of the NLL", emissions.dtype, () if unbatched else (batch,))
        w = w.reshape(batch)
        # β_t = ω where t is the last valid step or later; the recursion from β_{t+1} before it.
        betas = np.empty_like(emissions)
        betas[:, -1] = end
        for t in range(steps - 2, -1, -1):
            nxt = _logsumexp(trans + (emissions[:, t + 1] + betas[:, t + 1])[:, None, :], axis=2)
            betas[:, t] = np.where(mask[:, t + 1, None], nxt, end)
        # Padded steps get exp(−inf) = 0, not exp(large) · 0 = NaN (their α, β and emissions mean nothing).
        unary = np.exp(np.where(mask[..., None], alphas + betas - log_z[:, None, None], -np.inf))
        onehot = np.zeros_like(emissions)
        np.put_along_axis(onehot, tags[..., None], 1.0, axis=2)
        onehot *= mask[..., None]
        demissions = (unary - onehot) * w[:, None, None]
        pair_scores = (alphas[:, :-1, :, None] + trans + (emissions[:, 1:] + betas[:, 1:])[:, :, None, :]
                       - log_z[:, None, None, None])
        pair = np.exp(np.where(mask[:, 1:, None, None], pair_scores, -np.inf))
        gold_pair = np.zeros((batch, steps - 1, k, k), emissions.dtype)
        b_idx, t_idx = np.nonzero(mask[:, 1:])
        gold_pair[b_idx, t_idx, tags[b_idx, t_idx], tags[b_idx, t_idx + 1]] = 1.0
        self.transitions.grad += np.einsum("b,btij->ij", w, pair - gold_pair)
        if self.start_end:
            rows = np.arange(batch)
            first = unary[:, 0].copy()
            first[rows, tags[:, 0]] -= 1.0
            self.start_transitions.grad += w @ first
            final = unary[rows, lengths - 1].copy()
            final[rows, tags[rows, lengths - 1]] -= 1.0
            self.end_transitions.grad += w @ final
        return in_dtype_of(demissions[0] if unbatched else demissions, given)

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, emissions: np.ndarray, mask=None) -> list[np.ndarray]:
        """Viterbi: the highest-scoring tag path of each sequence (length = its valid steps); for one unbatched
        sequence (T, K), its path."""
        unbatched = np.ndim(emissions) == 2
        emissions, _, mask = self._check(emissions, mask, decoding=True)
        trans, start, end = self._scores()
        batch, steps, k = emissions.shape
        score = start + emissions[:, 0]
        pointers = np.zeros((batch, steps, k), np.int64)
        for t in range(1, steps):
            cand = score[:, :, None] + trans  # (B, from, to)
            best = cand.argmax(axis=1)
            nxt = np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + emissions[:, t]
            valid = mask[:, t, None]
            score = np.where(valid, nxt, score)
            pointers[:, t] = np.where(valid, best, np.arange(k))
        lengths = mask.sum(axis=1)
        paths = []
        for b in range(batch):
            tag = int((score[b] + end).argmax())
            path = [tag]
            for t in range(lengths[b] - 1, 0, -1):
                tag = int(pointers[b, t, tag])
                path.append(tag)
            paths.append(np.array(path[::-1], dtype=np.int64))
        return paths[0] if unbatched else paths
