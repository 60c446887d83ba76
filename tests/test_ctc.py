"""CTC: the loss and its gradient against torch.nn.functional.ctc_loss and against enumeration of all alignments,
gradcheck, one-line errors, greedy decoding and prefix beam search (exact against brute force on tiny problems)."""

import itertools

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, PARITY_TOL, assert_close
from rnnkit.activations import log_softmax, softmax
from rnnkit.ctc import CTCLoss, ctc_greedy_decode, ctc_loss, ctc_prefix_beam_search
from rnnkit.errors import ConfigError, DTypeError, ShapeError, UsageError
from rnnkit.gradcheck import gradcheck

REDUCTIONS = ("none", "sum", "mean")


def random_log_probs(rng, steps, batch, classes, dtype=np.float64):
    return log_softmax(rng.standard_normal((steps, batch, classes)) * 2.0).astype(dtype)


def random_problem(rng, steps=12, batch=4, classes=5, longest=4):
    """log_probs, padded targets (with repeats likely), input lengths, target lengths (some infeasible pairs)."""
    log_probs = random_log_probs(rng, steps, batch, classes)
    targets = rng.integers(1, min(classes, 3), (batch, longest))  # few symbols: repeated neighbours are common
    target_lengths = rng.integers(0, longest + 1, batch)
    input_lengths = rng.integers(0, steps + 1, batch)
    input_lengths[0] = steps
    return log_probs, targets, input_lengths, target_lengths


def concatenated(targets, target_lengths):
    return np.concatenate([row[:n] for row, n in zip(targets, target_lengths)]).astype(np.int64)


def torch_ctc(log_probs, targets, input_lengths, target_lengths, reduction, zero_infinity, grad=1.0, blank=0):
    """torch's loss and autograd gradient with respect to the log-probabilities."""
    torch = pytest.importorskip("torch")
    x = torch.tensor(log_probs, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(x, torch.tensor(targets), torch.tensor(input_lengths),
                                        torch.tensor(target_lengths), blank=blank, reduction=reduction,
                                        zero_infinity=zero_infinity)
    (loss * torch.tensor(grad, dtype=x.dtype)).sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def ours(log_probs, targets, input_lengths, target_lengths, reduction, zero_infinity, grad=1.0, blank=0):
    loss_fn = CTCLoss(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    loss = loss_fn.forward(log_probs, targets, input_lengths, target_lengths)
    return loss, loss_fn.backward(grad)


def assert_same_as_torch(mine, theirs, tol, what):
    """Equal values where finite, the same infinities; equal gradients where torch's are not NaN, NaN where
    torch's are (an infeasible target without zero_infinity)."""
    (loss, grad), (ref_loss, ref_grad) = mine, theirs
    loss, ref_loss = np.asarray(loss, np.float64), np.asarray(ref_loss, np.float64)
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(ref_loss), err_msg=what)
    finite = np.isfinite(ref_loss)
    assert_close(loss[finite], ref_loss[finite], tol, f"{what} loss")
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad), err_msg=what)
    known = ~np.isnan(ref_grad)
    assert_close(grad[known], ref_grad[known], tol, f"{what} gradient")


# -- parity with torch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_loss_and_gradient_equal_torch_for_every_reduction_and_zero_infinity(dtype, layout):
    rng = np.random.default_rng(7)
    for trial in range(12):
        steps, batch, classes = rng.integers(1, 16), rng.integers(1, 5), rng.integers(2, 7)
        log_probs, targets, il, tl = random_problem(rng, steps, batch, classes, longest=int(rng.integers(0, 6)))
        log_probs = log_probs.astype(dtype)
        given = targets if layout == "padded" else concatenated(targets, tl)
        for reduction, zero_infinity in itertools.product(REDUCTIONS, (False, True)):
            grad = rng.standard_normal(batch) if reduction == "none" else 0.7
            args = (log_probs, given, il, tl, reduction, zero_infinity, grad)
            mine = ours(*args)
            assert mine[1].dtype == dtype
            assert_same_as_torch(mine, torch_ctc(*args), PARITY_TOL[dtype], f"{trial} {reduction} {zero_infinity}")


@pytest.mark.parametrize("target", [[1, 1, 2], [1, 1], [2, 2, 2], [1, 2, 1, 2], [3]])
def test_repeated_labels_equal_torch_with_targets_as_long_as_the_frames_allow(target):
    """T = S + (repeated neighbours) is the shortest input with a path (2S + 1 with blanks only between repeats):
    finite there and equal to torch, infinite one frame shorter."""
    rng = np.random.default_rng(len(target))
    shortest = len(target) + sum(a == b for a, b in zip(target, target[1:]))
    log_probs = random_log_probs(rng, shortest + 2, 3, 4)
    targets = np.array([target] * 3)
    il, tl = np.array([shortest, shortest - 1, shortest + 2]), np.full(3, len(target))
    mine = ours(log_probs, targets, il, tl, "none", False)
    assert np.isfinite(mine[0][0]) and np.isinf(mine[0][1]) and np.isfinite(mine[0][2])
    assert_same_as_torch(mine, torch_ctc(log_probs, targets, il, tl, "none", False), 1e-10, str(target))


def test_a_nondefault_blank_and_unnormalised_scores_equal_torch():
    rng = np.random.default_rng(3)
    log_probs = rng.standard_normal((9, 3, 5))  # not a log-softmax: torch's formula applies all the same
    targets, il, tl = np.array([[0, 1, 1], [3, 0, 0], [2, 3, 0]]), np.array([9, 5, 7]), np.array([3, 1, 2])
    for reduction in REDUCTIONS:
        args = (log_probs, targets, il, tl, reduction, False, 1.0, 4)  # blank = 4, class 0 is a label
        assert_same_as_torch(ours(*args), torch_ctc(*args), 1e-10, reduction)


def test_an_unbatched_call_equals_torch_and_a_batch_of_one():
    rng = np.random.default_rng(4)
    log_probs, target = random_log_probs(rng, 7, 1, 4), np.array([1, 3, 3])
    for reduction in REDUCTIONS:
        loss, grad = ours(log_probs[:, 0], target, 7, 3, reduction, False)
        batched_loss, batched_grad = ours(log_probs, target[None], np.array([7]), np.array([3]), reduction, False)
        assert np.ndim(loss) == 0 and grad.shape == (7, 4)
        assert_close(np.reshape(loss, -1), np.reshape(batched_loss, -1), 1e-12, reduction)
        assert_close(grad, batched_grad[:, 0], 1e-12, reduction)
        ref = torch_ctc(log_probs[:, 0], target, np.array(7), np.array(3), reduction, False)
        assert_same_as_torch((loss, grad), ref, 1e-10, reduction)


def test_zero_infinity_gives_zero_loss_and_gradient_where_torch_gives_inf_and_nan():
    rng = np.random.default_rng(5)
    log_probs = random_log_probs(rng, 4, 2, 3)
    targets, il, tl = np.array([[1, 2, 1], [1, 2, 0]]), np.array([2, 4]), np.array([3, 2])
    loss, grad = ours(log_probs, targets, il, tl, "none", False)
    assert np.isinf(loss[0]) and np.isnan(grad[:2, 0]).all() and (grad[2:, 0] == 0).all()
    loss, grad = ours(log_probs, targets, il, tl, "none", True)
    assert loss[0] == 0 and (grad[:, 0] == 0).all() and np.isfinite(loss[1]) and np.abs(grad[:, 1]).sum() > 0


def test_a_zero_probability_gets_a_zero_gradient_where_torch_gives_nan():
    """torch computes exp(log occupancy + nll − y) = exp(−∞ + ∞) where y = −∞; the limit is 0 − 0 = 0."""
    rng = np.random.default_rng(12)
    log_probs = random_log_probs(rng, 6, 1, 4)
    log_probs[2, 0, 1] = -np.inf
    args = (log_probs, np.array([[1, 2]]), np.array([6]), np.array([2]), "sum", False)
    (loss, grad), (ref_loss, ref_grad) = ours(*args), torch_ctc(*args)
    assert np.isfinite(grad).all() and grad[2, 0, 1] == 0 and np.isnan(ref_grad[2, 0, 1])
    known = ~np.isnan(ref_grad)
    assert abs(loss - ref_loss) < 1e-12 and np.abs(grad - ref_grad)[known].max() < 1e-12


# -- against first principles ----------------------------------------------------------------------------------
def collapse(path, blank=0):
    """The labelling of an alignment: repeats merged, blanks dropped."""
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))


def labelling_log_probs(lp):
    """{labelling: log Σ_{alignments π → labelling} Π_t exp lp[t, π_t]} by enumerating every alignment of lp (T, C)."""
    totals = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        score = lp[np.arange(lp.shape[0]), path].sum()
        key = collapse(path)
        totals[key] = np.logaddexp(totals.get(key, -np.inf), score)
    return totals


def test_loss_equals_minus_log_of_the_sum_over_all_alignments():
    rng = np.random.default_rng(6)
    lp = random_log_probs(rng, 5, 1, 3)[:, 0]
    totals = labelling_log_probs(lp)
    for labels, log_p in totals.items():
        loss = ctc_loss(lp, np.array(labels, np.int64), 5, len(labels), reduction="none")
        assert abs(loss + log_p) < 1e-12, labels
    assert abs(np.logaddexp.reduce(list(totals.values()))) < 1e-12  # the labellings' probabilities sum to one


def test_gradient_through_a_log_softmax_passes_gradcheck():
    """torch's gradient is that of the loss through a log-softmax: checked on logits z → log_softmax → CTC."""
    rng = np.random.default_rng(8)
    targets, il, tl = np.array([[1, 1, 2], [2, 1, 0], [1, 0, 0]]), np.array([6, 5, 3]), np.array([3, 2, 1])
    loss_fn, last_logits = CTCLoss(reduction="none"), []

    def forward(logits):
        last_logits[:] = [logits]
        return loss_fn.forward(log_softmax(logits), targets, il, tl)

    def backward(dloss):
        dlp = loss_fn.backward(dloss)
        return dlp - softmax(last_logits[0]) * dlp.sum(axis=2, keepdims=True)  # δz = δy − softmax(z) Σ_c δy

    assert gradcheck(forward, rng.standard_normal((6, 3, 4)), backward=backward) < GRADCHECK_TOL


def test_backward_weights_each_sample_by_its_gradient_and_the_reduction():
    rng = np.random.default_rng(9)
    log_probs, targets, il, tl = random_problem(rng, 10, 3, 4, 3)
    il[:], tl[:] = 10, np.array([3, 2, 0])
    per = ours(log_probs, targets, il, tl, "none", False, grad=np.array([1.0, 0.0, 0.0]))[1]
    mean = ours(log_probs, targets, il, tl, "mean", False)[1]
    assert np.abs(per[:, 1:]).max() == 0
    assert_close(mean[:, 0], per[:, 0] / (3 * 3), 1e-14, "mean weight 1 / (B · S_b)")


# -- errors -----------------------------------------------------------------------------------------------
LP = np.log(np.full((5, 2, 4), 0.25))
GOOD = (LP, np.array([[1, 2], [3, 0]]), np.array([5, 4]), np.array([2, 1]))


@pytest.mark.parametrize("change, error, words", [
    ({0: LP.astype(np.int64)}, DTypeError, "log_probs"),
    ({0: LP[None]}, ShapeError, "log_probs"),
    ({0: np.where(LP < 0, np.nan, 0)}, ShapeError, "NaN"),
    ({1: np.array([[1.0, 2.0], [3.0, 0.0]])}, DTypeError, "targets"),
    ({1: np.array([[1, 2], [0, 0]])}, ShapeError, "blank"),
    ({1: np.array([[1, 4], [3, 0]])}, ShapeError, "[0, 4)"),
    ({1: np.array([[1], [3]])}, ShapeError, "padded targets"),
    ({1: np.array([1, 2, 3, 3])}, ShapeError, "sum(target_lengths)"),
    ({2: np.array([6, 4])}, ShapeError, "input_lengths"),
    ({2: np.array([5, -1])}, ShapeError, "input_lengths"),
    ({2: np.array([5.0, 4.0])}, DTypeError, "input_lengths"),
    ({2: np.array([5, 4, 3])}, ShapeError, "input_lengths"),
    ({3: np.array([-1, 1])}, ShapeError, "target_lengths"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_inputs_raise_one_line_errors_that_name_the_argument(change, error, words):
    args = [change.get(i, a) for i, a in enumerate(GOOD)]
    with pytest.raises(error) as info:
        CTCLoss().forward(*args)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_bad_options_and_a_backward_without_forward_are_refused():
    for kwargs in ({"blank": -1}, {"blank": 1.5}, {"reduction": "avg"}):
        with pytest.raises(ConfigError):
            CTCLoss(**kwargs)
    with pytest.raises(ConfigError, match="blank"):
        CTCLoss(blank=4).forward(*GOOD)
    with pytest.raises(UsageError):
        CTCLoss().backward()
    loss_fn = CTCLoss(reduction="none")
    loss_fn.forward(*GOOD)
    with pytest.raises(ShapeError, match="grad"):
        loss_fn.backward(np.ones(3))


# -- decoding -----------------------------------------------------------------------------------------------
def frames(best, classes=4):
    """Log-probabilities (T, C) whose arg-max per frame is ``best``."""
    lp = np.full((len(best), classes), np.log(0.1))
    lp[np.arange(len(best)), best] = np.log(0.7)
    return lp


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    assert ctc_greedy_decode(frames([0, 1, 1, 0, 1, 2, 2, 0])).tolist() == [1, 1, 2]
    assert ctc_greedy_decode(frames([3, 3, 3])).tolist() == [3]
    assert ctc_greedy_decode(frames([0, 0])).tolist() == []
    assert ctc_greedy_decode(frames([1, 0, 2, 2]), blank=2).tolist() == [1, 0]


def test_greedy_decoding_of_a_batch_stops_at_each_input_length():
    lp = np.stack([frames([1, 2, 2, 3]), frames([2, 0, 2, 1])], axis=1)
    decoded = ctc_greedy_decode(lp, np.array([2, 4]))
    assert [d.tolist() for d in decoded] == [[1, 2], [2, 2, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_finds_the_most_probable_labelling_found_by_enumeration(seed):
    rng = np.random.default_rng(seed)
    steps, classes = int(rng.integers(1, 6)), int(rng.integers(2, 4))
    lp = random_log_probs(rng, steps, 1, classes)[:, 0] * rng.uniform(0.3, 1.5)  # some flat, some peaked
    totals = labelling_log_probs(lp)
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    top = ctc_prefix_beam_search(lp, beam_width=len(totals), top_k=3)
    assert tuple(ctc_prefix_beam_search(lp, beam_width=len(totals)).tolist()) == ranked[0][0]
    for (labels, score), (ref_labels, ref_score) in zip(top, ranked):
        assert tuple(labels.tolist()) == ref_labels and abs(score - ref_score) < 1e-12


def test_a_wide_beam_is_at_least_as_probable_as_greedy_decoding():
    rng = np.random.default_rng(11)
    lp = random_log_probs(rng, 12, 8, 4) * 0.5  # flat distributions: greedy is often not the best labelling
    lengths = rng.integers(6, 13, 8)
    better = 0
    for b, (greedy, beam) in enumerate(zip(ctc_greedy_decode(lp, lengths), ctc_prefix_beam_search(lp, lengths, 16))):
        p_greedy = -ctc_loss(lp[:, b], greedy, lengths[b], len(greedy), reduction="none")
        p_beam = -ctc_loss(lp[:, b], beam, lengths[b], len(beam), reduction="none")
        assert p_beam >= p_greedy - 1e-12
        better += p_beam > p_greedy + 1e-9
    assert better > 0  # the example is not one where the two always agree


def test_decoders_refuse_bad_options():
    with pytest.raises(ConfigError, match="beam_width"):
        ctc_prefix_beam_search(frames([1, 2]), beam_width=0)
    with pytest.raises(ConfigError, match="blank"):
        ctc_greedy_decode(frames([1, 2]), blank=4)
    with pytest.raises(ShapeError, match="input_lengths"):
        ctc_greedy_decode(frames([1, 2])[:, None], np.array([3]))


def test_ctc_refuses_ragged_nested_lists_and_a_non_bool_zero_infinity_in_one_line():
    lp = log_softmax(np.random.default_rng(0).normal(size=(4, 2, 3)))
    with pytest.raises(ShapeError, match="targets must be a rectangular array"):
        ctc_loss(lp, [[1, 2], [1]], [4, 4], [2, 1])
    with pytest.raises(ShapeError, match="input_lengths must be a rectangular array"):
        ctc_loss(lp, [[1, 2], [1, 1]], [[2], [2, 1]], [2, 1])
    with pytest.raises(ConfigError, match="zero_infinity must be True or False, got str 'no'"):
        ctc_loss(lp[:, :1], [[1, 1, 1]], [2], [3], zero_infinity="no")
