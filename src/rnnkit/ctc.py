"""Connectionist temporal classification (Graves et al. 2006): `CTCLoss`, `ctc_loss`, and decoding.

Shapes (PyTorch's): log-probabilities ``log_probs`` y (T, B, C) — time first, C classes including the blank —
or (T, C) for one unbatched sequence; ``targets`` either padded (B, S) or concatenated 1-D (Σ_b S_b,), with
``target_lengths`` S_b (B,) and ``input_lengths`` T_b (B,). ``y`` is meant to be a log-softmax over C (the
gradient below assumes it, exactly as torch's does).

A target l = l_1 … l_S is extended with blanks to l' = (∅, l_1, ∅, l_2, …, l_S, ∅), of length L = 2S + 1
(``labels``; even s are blanks). An alignment π of T_b frames collapses to l by merging repeats and then dropping
blanks; p(l | y) = Σ_π Π_t exp y_t[π_t]. With ``emit[t, s] = y_t[l'_s]``:

    α_0[0] = emit[0, 0],  α_0[1] = emit[0, 1],  α_0[s] = −∞ for s ≥ 2
    α_t[s] = emit[t, s] + logsumexp(α_{t−1}[s], α_{t−1}[s − 1], α_{t−1}[s − 2] if skip[s])
    skip[s] = (l'_s is a label, s ≥ 3 and l'_s ≠ l'_{s−2})     (a repeated label needs a blank in between)
    log p(l | y) = logsumexp(α_{T_b−1}[L − 1], α_{T_b−1}[L − 2]),   nll = −log p(l | y)

The backward variable leaves out the emission at t (so α_t[s] + β_t[s] is the log-probability of all alignments
through s at t):

    β_{T_b−1}[L − 1] = β_{T_b−1}[L − 2] = 0,  β_{T_b−1}[s] = −∞ otherwise
    β_t[s] = logsumexp(emit[t+1, s] + β_{t+1}[s], emit[t+1, s+1] + β_{t+1}[s+1],
                       emit[t+1, s+2] + β_{t+1}[s+2] if skip[s+2])

The posterior occupancy of class c at t and the gradient (torch's: that of nll through a log-softmax, so it is
the gradient with respect to the logits as well):

    γ_t[s] = exp(α_t[s] + β_t[s] + nll),   occupancy_t[c] = Σ_{s: l'_s = c} γ_t[s]
    ∂nll/∂y_t[c] = exp y_t[c] − occupancy_t[c]  for t < T_b,   0 for t ≥ T_b

A target that no alignment of T_b frames can produce (T_b < S + the number of repeated neighbours) has nll = +∞
and, as in torch, a NaN gradient for t < T_b; ``zero_infinity=True`` makes both zero. One deliberate difference:
where y_t[c] = −∞ (a zero probability) torch's formula exp(log occupancy + nll − y) gives NaN (−∞ + ∞), rnnkit the
limit 0 − 0 = 0 (no alignment passes there). Reductions (torch's):
``'none'`` the losses (B,), ``'sum'`` their sum, ``'mean'`` the mean over the batch of nll_b / max(S_b, 1).

Decoding: `ctc_greedy_decode` (arg-max per frame, merge repeats, drop blanks) and `ctc_prefix_beam_search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DTypeError, ShapeError
from .module import Module, check_bool, in_dtype_of

REDUCTIONS = ("none", "mean", "sum")
NEG_INF = -np.inf


# -- the checked call -------------------------------------------------------------------------------------
@dataclass
class CTCProblem:
    """One checked call: ``log_probs`` (T, B, C) in the computing dtype, the extended ``labels`` l' (B, L) with
    blanks past each sample's own 2S_b + 1, ``skip`` (B, L), the lengths, and how to return results."""

    log_probs: np.ndarray
    labels: np.ndarray
    skip: np.ndarray
    input_lengths: np.ndarray
    target_lengths: np.ndarray
    unbatched: bool
    given: np.dtype

    @property
    def extended_lengths(self) -> np.ndarray:
        return 2 * self.target_lengths + 1


def _check_log_probs(log_probs) -> tuple[np.ndarray, bool]:
    if not isinstance(log_probs, np.ndarray) or log_probs.dtype.kind != "f":
        got = log_probs.dtype if isinstance(log_probs, np.ndarray) else type(log_probs).__name__
        raise DTypeError(f"log_probs must be a real floating-point numpy array, got {got}")
    if log_probs.ndim not in (2, 3) or log_probs.shape[0] == 0 or log_probs.shape[-1] == 0:
        raise ShapeError(f"log_probs must be (T, B, C), or (T, C) for one sequence, with T, C >= 1, got shape "
                         f"{log_probs.shape}")
    if np.isnan(log_probs).any() or (log_probs == np.inf).any():
        raise ShapeError("log_probs contains NaN or +Inf (−Inf, a zero probability, is allowed)")
    unbatched = log_probs.ndim == 2
    lp = log_probs[:, None] if unbatched else log_probs
    return lp.astype(np.float64 if lp.dtype == np.float64 else np.float32, copy=False), unbatched


def _as_array(value, name: str) -> np.ndarray:
    """``value`` as an array, or a one-line `ShapeError` for a ragged nested list NumPy cannot read."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        raise ShapeError(f"{name} must be a rectangular array of integers, got a ragged "
                         f"{type(value).__name__}") from None


def _check_lengths(lengths, name: str, batch: int, unbatched: bool) -> np.ndarray:
    arr = _as_array(lengths, name)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{name} must be integers, got {arr.dtype}")
    if unbatched and arr.size == 1:
        arr = arr.reshape(1)
    if arr.shape != (batch,):
        want = "a scalar" if unbatched else f"shape ({batch},)"
        raise ShapeError(f"{name} must have {want} (one length per sample), got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ShapeError(f"{name} must be >= 0, got {arr.min()}")
    return arr.astype(np.int64)


def _padded_targets(targets, target_lengths: np.ndarray, unbatched: bool) -> np.ndarray:
    """Targets as (B, S_max) from the padded (B, S) or concatenated (Σ S_b,) layout (padding is not read)."""
    targets = _as_array(targets, "targets")
    if targets.dtype.kind not in "iu":
        raise DTypeError(f"targets must be integer class indices, got {targets.dtype}")
    batch, longest = len(target_lengths), int(target_lengths.max(initial=0))
    if unbatched and targets.ndim == 1:
        targets = targets[None]
    if targets.ndim == 2:
        if targets.shape[0] != batch or targets.shape[1] < longest:
            raise ShapeError(f"padded targets must have shape ({batch}, S) with S >= the longest target length "
                             f"{longest}, got {targets.shape}")
        return targets[:, :longest].astype(np.int64)
    if targets.ndim != 1 or len(targets) != target_lengths.sum():
        raise ShapeError(f"targets must be padded ({batch}, S) or concatenated 1-D of length sum(target_lengths) "
                         f"= {target_lengths.sum()}, got shape {targets.shape}")
    starts = np.cumsum(target_lengths) - target_lengths
    index = starts[:, None] + np.arange(longest)[None, :]
    inside = np.arange(longest)[None, :] < target_lengths[:, None]
    return np.where(inside, targets[np.where(inside, index, 0)], 0).astype(np.int64)


def _extended_labels(padded: np.ndarray, target_lengths: np.ndarray, blank: int, classes: int):
    """(labels l' (B, 2S_max + 1), skip (B, 2S_max + 1)); `ShapeError` for a label out of range or blank."""
    inside = np.arange(padded.shape[1])[None, :] < target_lengths[:, None]
    used = padded[inside]
    if used.size and (used.min() < 0 or used.max() >= classes):
        raise ShapeError(f"targets must lie in [0, {classes}) (C = {classes} classes), got values in "
                         f"[{used.min()}, {used.max()}]")
    if (used == blank).any():
        b, s = np.argwhere(inside & (padded == blank))[0]
        raise ShapeError(f"targets must not contain the blank index {blank}, got it in sample {b} at position {s}")
    batch, longest = padded.shape
    labels = np.full((batch, 2 * longest + 1), blank, np.int64)
    labels[:, 1::2] = np.where(inside, padded, blank)
    skip = np.zeros(labels.shape, bool)
    skip[:, 3::2] = (labels[:, 3::2] != labels[:, 1:-2:2]) & inside[:, 1:]
    return labels, skip


def check_ctc_inputs(log_probs, targets, input_lengths, target_lengths, blank: int = 0) -> CTCProblem:
    """Validate a call (one-line `ShapeError`/`DTypeError`/`ConfigError` naming the argument) → `CTCProblem`."""
    given = getattr(log_probs, "dtype", None)
    lp, unbatched = _check_log_probs(log_probs)
    steps, batch, classes = lp.shape
    if not isinstance(blank, (int, np.integer)) or isinstance(blank, bool) or not 0 <= blank < classes:
        raise ConfigError(f"blank must be a class index in [0, {classes}) (C = {classes}), got {blank!r}")
    input_lengths = _check_lengths(input_lengths, "input_lengths", batch, unbatched)
    if input_lengths.size and input_lengths.max() > steps:
        raise ShapeError(f"input_lengths must be <= T = {steps} (log_probs' time axis), got {input_lengths.max()}")
    target_lengths = _check_lengths(target_lengths, "target_lengths", batch, unbatched)
    labels, skip = _extended_labels(_padded_targets(targets, target_lengths, unbatched), target_lengths, blank,
                                    classes)
    return CTCProblem(lp, labels, skip, input_lengths, target_lengths, unbatched, given)


# -- the recursions ---------------------------------------------------------------------------------------
def _shift_right(a: np.ndarray, k: int) -> np.ndarray:
    """a[..., s − k] at s (−∞ for s < k)."""
    out = np.full_like(a, NEG_INF)
    out[..., k:] = a[..., :a.shape[-1] - k]
    return out


def _shift_left(a: np.ndarray, k: int) -> np.ndarray:
    """a[..., s + k] at s (−∞ past the end)."""
    out = np.full_like(a, NEG_INF)
    out[..., :a.shape[-1] - k] = a[..., k:]
    return out


def extended_log_probs(problem: CTCProblem) -> np.ndarray:
    """emit[t, b, s] = y_t[b, l'_s] (T, B, L); −∞ for s ≥ 2S_b + 1 (past the sample's extended target)."""
    emit = np.take_along_axis(problem.log_probs, problem.labels[None], axis=2)
    beyond = np.arange(problem.labels.shape[1])[None, :] >= problem.extended_lengths[:, None]
    emit[:, beyond] = NEG_INF
    return emit


def ctc_alphas(emit: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """Forward variables α (T, B, L), all frames (a sample's own end is read at T_b − 1)."""
    alphas = np.full_like(emit, NEG_INF)
    alphas[0, :, :2] = emit[0, :, :2]
    for t in range(1, len(emit)):
        prev = alphas[t - 1]
        # α_t[s] = emit[t, s] + logsumexp(α_{t−1}[s], α_{t−1}[s − 1], α_{t−1}[s − 2] if skip[s])
        two_back = np.where(skip, _shift_right(prev, 2), NEG_INF)
        alphas[t] = emit[t] + np.logaddexp(np.logaddexp(prev, _shift_right(prev, 1)), two_back)
    return alphas


def ctc_log_likelihood(alphas: np.ndarray, problem: CTCProblem) -> np.ndarray:
    """log p(l | y) per sample (B,): logsumexp(α_{T_b−1}[L − 1], α_{T_b−1}[L − 2]); with T_b = 0 it is 0 for an
    empty target and −∞ otherwise."""
    rows, ext = np.arange(alphas.shape[1]), problem.extended_lengths
    final = alphas[np.maximum(problem.input_lengths - 1, 0), rows]  # (B, L)
    last_blank = final[rows, ext - 1]
    last_label = np.where(ext >= 2, final[rows, np.maximum(ext - 2, 0)], NEG_INF)
    log_p = np.logaddexp(last_blank, last_label)
    return np.where(problem.input_lengths == 0, np.where(ext == 1, 0.0, NEG_INF), log_p).astype(alphas.dtype)


def ctc_betas(emit: np.ndarray, problem: CTCProblem) -> np.ndarray:
    """Backward variables β (T, B, L), without the emission at t; −∞ for t ≥ T_b."""
    steps, batch, width = emit.shape
    rows, ext, last = np.arange(batch), problem.extended_lengths, problem.input_lengths - 1
    end = np.full((batch, width), NEG_INF, emit.dtype)
    end[rows, ext - 1] = 0.0
    end[rows[ext >= 2], ext[ext >= 2] - 2] = 0.0
    skip_ahead = np.zeros_like(problem.skip)  # skip[s + 2]: the move s → s + 2 is allowed
    skip_ahead[:, :-2] = problem.skip[:, 2:]
    betas = np.full_like(emit, NEG_INF)
    for t in range(steps - 1, -1, -1):
        step = np.full((batch, width), NEG_INF, emit.dtype)
        if t + 1 < steps:
            e = emit[t + 1] + betas[t + 1]
            # β_t[s] = logsumexp(e[s], e[s + 1], e[s + 2] if skip[s + 2]),  e = emit[t+1] + β_{t+1}
            step = np.logaddexp(np.logaddexp(e, _shift_left(e, 1)), np.where(skip_ahead, _shift_left(e, 2), NEG_INF))
        betas[t] = np.where((t == last)[:, None], end, np.where((t < last)[:, None], step, NEG_INF))
    return betas


def ctc_gradient(problem: CTCProblem, emit: np.ndarray, alphas: np.ndarray, nll: np.ndarray) -> np.ndarray:
    """∂nll_b/∂y (T, B, C) = exp y − occupancy for t < T_b, 0 after (NaN for t < T_b where nll_b = ∞)."""
    betas = ctc_betas(emit, problem)
    classes = problem.log_probs.shape[2]
    with np.errstate(invalid="ignore"):  # −∞ + ∞ where a target is infeasible: NaN, as torch
        # γ_t[s] = exp(α_t[s] + β_t[s] + nll)
        gamma = np.exp(alphas + betas + nll[None, :, None])
        # occupancy_t[c] = Σ_{s: l'_s = c} γ_t[s], as one (T, L) × (L, C) product per sample
        onehot = (problem.labels[:, :, None] == np.arange(classes)).astype(gamma.dtype)
        occupancy = np.matmul(gamma.transpose(1, 0, 2), onehot).transpose(1, 0, 2)
        # ∂nll/∂y_t[c] = exp y_t[c] − occupancy_t[c] for t < T_b
        valid = np.arange(len(emit))[:, None] < problem.input_lengths[None, :]
        return np.where(valid[:, :, None], np.exp(problem.log_probs) - occupancy, 0.0).astype(gamma.dtype)


# -- the loss -----------------------------------------------------------------------------------------------
def _check_options(blank, reduction: str, zero_infinity=False) -> None:
    check_bool("zero_infinity", zero_infinity)
    if not isinstance(blank, (int, np.integer)) or isinstance(blank, bool) or blank < 0:
        raise ConfigError(f"blank must be a non-negative class index, got {blank!r}")
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _reduce(nll: np.ndarray, problem: CTCProblem, reduction: str, zero_infinity: bool):
    """(the loss as torch returns it, the per-sample weights of the reduction (B,))."""
    if zero_infinity:
        nll = np.where(np.isinf(nll), 0.0, nll).astype(nll.dtype)
    batch = len(nll)
    if reduction == "none":
        return (nll[0] if problem.unbatched else nll), np.ones(batch, nll.dtype)
    if reduction == "sum":
        return float(nll.sum()), np.ones(batch, nll.dtype)
    per_label = 1.0 / np.maximum(problem.target_lengths, 1).astype(nll.dtype)
    return float((nll * per_label).mean()) if batch else math.nan, per_label / max(batch, 1)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False):
    """The CTC loss as ``torch.nn.functional.ctc_loss`` computes it (see the module's docstring): a float for
    ``'mean'`` and ``'sum'``, the losses (B,) — a scalar array for an unbatched call — for ``'none'``."""
    _check_options(blank, reduction, zero_infinity)
    problem = check_ctc_inputs(log_probs, targets, input_lengths, target_lengths, blank)
    nll = -ctc_log_likelihood(ctc_alphas(extended_log_probs(problem), problem.skip), problem)
    return _reduce(nll, problem, reduction, zero_infinity)[0]


class CTCLoss(Module):
    """forward(log_probs (T, B, C), targets (B, S) or (Σ S_b,), input_lengths (B,), target_lengths (B,)) → the
    loss (torch's value and reductions); backward(grad=1.0) → δlog_probs (T, B, C) in the input's dtype, torch's
    autograd gradient. ``grad`` is the gradient of the returned loss: a number, or (B,) for ``'none'``."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__()
        _check_options(blank, reduction, zero_infinity)
        self.blank, self.reduction, self.zero_infinity = blank, reduction, zero_infinity

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        problem = check_ctc_inputs(log_probs, targets, input_lengths, target_lengths, self.blank)
        emit = extended_log_probs(problem)
        alphas = ctc_alphas(emit, problem.skip)
        nll = -ctc_log_likelihood(alphas, problem)
        loss, weights = _reduce(nll, problem, self.reduction, self.zero_infinity)
        self.save_for_backward(problem, emit, alphas, nll, weights)
        return loss

    def backward(self, grad=1.0) -> np.ndarray:
        problem, emit, alphas, nll, weights = self.saved_for_backward()
        batch = len(nll)
        upstream = np.asarray(grad)
        if upstream.dtype.kind not in "fiu" or upstream.size not in (1, batch):
            raise ShapeError(f"CTCLoss.backward: grad must be a number or {batch} numbers (one per sample), got "
                             f"{upstream.dtype} array of shape {upstream.shape}")
        weights = weights * np.broadcast_to(upstream.reshape(-1), (batch,)).astype(weights.dtype)
        dlog_probs = ctc_gradient(problem, emit, alphas, nll) * weights[None, :, None]
        if self.zero_infinity:
            dlog_probs[:, np.isinf(nll)] = 0.0
        return in_dtype_of(dlog_probs[:, 0] if problem.unbatched else dlog_probs, problem.given)


# -- decoding -----------------------------------------------------------------------------------------------
def _decoding_inputs(log_probs, input_lengths, blank: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(log_probs (T, B, C), input_lengths (B,), unbatched) for a decoder; all T frames when lengths are None."""
    lp, unbatched = _check_log_probs(log_probs)
    steps, batch, classes = lp.shape
    if not isinstance(blank, (int, np.integer)) or isinstance(blank, bool) or not 0 <= blank < classes:
        raise ConfigError(f"blank must be a class index in [0, {classes}) (C = {classes}), got {blank!r}")
    if input_lengths is None:
        return lp, np.full(batch, steps, np.int64), unbatched
    lengths = _check_lengths(input_lengths, "input_lengths", batch, unbatched)
    if lengths.size and lengths.max() > steps:
        raise ShapeError(f"input_lengths must be <= T = {steps} (log_probs' time axis), got {lengths.max()}")
    return lp, lengths, unbatched


def ctc_greedy_decode(log_probs, input_lengths=None, blank: int = 0):
    """Best-path decoding: the arg-max class of each frame t < T_b, repeats merged, blanks dropped.

    log_probs (T, B, C) → a list of B int64 label arrays; (T, C) → one array. ``input_lengths`` (B,): frames per
    sample (None: all T). The result is the labelling of the single most probable alignment, which need not be
    the most probable labelling (`ctc_prefix_beam_search` sums over alignments).
    """
    lp, lengths, unbatched = _decoding_inputs(log_probs, input_lengths, blank)
    best = lp.argmax(axis=2)  # (T, B)
    keep = best != blank
    keep[1:] &= best[1:] != best[:-1]
    keep &= np.arange(len(best))[:, None] < lengths[None, :]
    labels = [best[keep[:, b], b].astype(np.int64) for b in range(best.shape[1])]
    return labels[0] if unbatched else labels


def _logadd(a: float, b: float) -> float:
    """log(e^a + e^b) of two Python floats (−∞ allowed)."""
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def _extend_prefixes(beams: dict, frame: np.ndarray, blank: int) -> dict:
    """One frame of prefix search: {prefix: [log p_blank, log p_label]} after the frame's log-probabilities.

    A prefix ending in a blank at t is (p_b + p_nb)·y(∅); ending in its last label c: p_nb·y(c) (the repeat merges)
    plus, from a shorter prefix, (p_b + p_nb)·y(c) — only p_b·y(c) when c repeats that prefix's last label.
    """
    new: dict = {}
    for prefix, (p_blank, p_label) in beams.items():
        total = _logadd(p_blank, p_label)
        same = new.setdefault(prefix, [-math.inf, -math.inf])
        same[0] = _logadd(same[0], total + frame[blank])
        last = prefix[-1] if prefix else None
        for c, y in enumerate(frame.tolist()):
            if c == blank or y == -math.inf:
                continue
            longer = new.setdefault(prefix + (c,), [-math.inf, -math.inf])
            if c == last:
                longer[1] = _logadd(longer[1], p_blank + y)
                same[1] = _logadd(same[1], p_label + y)
            else:
                longer[1] = _logadd(longer[1], total + y)
    return new


def _prefix_search(lp: np.ndarray, beam_width: int, blank: int) -> list[tuple[np.ndarray, float]]:
    """(labelling, log p) of the final beam of one sequence lp (T_b, C), most probable first."""
    beams: dict = {(): [0.0, -math.inf]}
    for frame in lp:
        new = _extend_prefixes(beams, frame, blank)
        ranked = sorted(new.items(), key=lambda item: (-_logadd(*item[1]), item[0]))
        beams = dict(ranked[:beam_width])
    scored = [(np.array(prefix, np.int64), _logadd(*p)) for prefix, p in beams.items()]
    return sorted(scored, key=lambda item: -item[1])


def ctc_prefix_beam_search(log_probs, input_lengths=None, beam_width: int = 8, blank: int = 0,
                           top_k: int | None = None):
    """Prefix beam search (Graves 2012 §7.5; Hannun et al. 2014): the most probable labellings, summed over
    their alignments, kept to the ``beam_width`` best prefixes per frame.

    Each prefix l carries log p_b (its alignments so far end in a blank) and log p_nb (they end in l's last
    label); a frame extends it by ∅ (l stays), by its last label c (l stays: the repeat merges) or by any other c
    (l + c; after its last label c only alignments ending in a blank extend to l + c), all in log space. With a
    beam as wide as the number of labellings the search is exact: p(l | y) = p_b + p_nb at the last frame.

    log_probs (T, B, C) → a list of B int64 label arrays (the best labelling of each sample); (T, C) → one.
    With ``top_k``: per sample a list of up to ``top_k`` (labels, log p(labels | y)) pairs, best first.
    """
    if not isinstance(beam_width, (int, np.integer)) or isinstance(beam_width, bool) or beam_width < 1:
        raise ConfigError(f"beam_width must be a positive integer, got {beam_width!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1):
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")
    lp, lengths, unbatched = _decoding_inputs(log_probs, input_lengths, blank)
    results = []
    for b in range(lp.shape[1]):
        ranked = _prefix_search(lp[:lengths[b], b].astype(np.float64), beam_width, blank)
        results.append(ranked[:top_k] if top_k else ranked[0][0])
    return results[0] if unbatched else results
