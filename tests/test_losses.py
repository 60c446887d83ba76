"""Losses: gradients by central differences, masks and reductions, and parity with torch.nn.functional."""

import numpy as np
import pytest

from conftest import GRADCHECK_TOL, requires_torch, torch
from rnnkit import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        up = f(x)
        x[idx] -= 2 * eps
        down = f(x)
        x[idx] += eps
        g[idx] = (up - down) / (2 * eps)
    return g


def check(loss, pred, *args, **kwargs):
    loss.forward(pred, *args, **kwargs)
    analytic = loss.backward().copy()
    numeric = numeric_grad(lambda p: loss.forward(p, *args, **kwargs), pred.copy())
    assert np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-4) < GRADCHECK_TOL


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_with_mask_and_ignore_index(rng, reduction):
    logits = rng.normal(size=(2, 3, 5))
    target = rng.integers(0, 5, size=(2, 3))
    target[0, 1] = -100
    mask = np.array([[1, 1, 1], [1, 0, 1]])
    check(CrossEntropyLoss(reduction), logits, target, mask=mask)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_and_mse_gradients(rng, reduction):
    pred, target = rng.normal(size=(2, 4, 3)), rng.random((2, 4, 3))
    mask = rng.random((2, 4, 3)) > 0.3
    check(BCEWithLogitsLoss(reduction), pred, target, mask=mask)
    check(MSELoss(reduction), pred, target, mask=mask)


def test_mean_counts_only_unmasked_elements():
    loss = MSELoss()
    value = loss.forward(np.array([1.0, 3.0]), np.array([0.0, 0.0]), mask=np.array([True, False]))
    assert value == 1.0
    np.testing.assert_array_equal(loss.backward(), [2.0, 0.0])


def test_bce_is_stable_for_large_logits():
    value = BCEWithLogitsLoss().forward(np.array([1000.0, -1000.0]), np.array([0.0, 1.0]))
    assert value == pytest.approx(1000.0)


def test_losses_reject_mismatched_shapes_and_bad_targets():
    with pytest.raises(ValueError, match="target shape"):
        CrossEntropyLoss().forward(np.zeros((2, 3)), np.zeros(3, int))
    with pytest.raises(TypeError, match="integer"):
        CrossEntropyLoss().forward(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        CrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="differ"):
        MSELoss().forward(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("max")


@requires_torch
def test_losses_match_torch(rng):
    import torch.nn.functional as F

    logits, target = rng.normal(size=(4, 6, 7)), rng.integers(0, 7, size=(4, 6))
    target[1, 2] = -100
    ours = CrossEntropyLoss()
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt.reshape(-1, 7), torch.tensor(target).reshape(-1), ignore_index=-100)
    ref.backward()
    assert ours.forward(logits, target) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(ours.backward(), lt.grad.numpy(), atol=1e-14)

    z, y = rng.normal(size=(3, 5)), rng.random((3, 5))
    zt = torch.tensor(z, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="sum")
    ref.backward()
    bce = BCEWithLogitsLoss("sum")
    assert bce.forward(z, y) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(bce.backward(), zt.grad.numpy(), atol=1e-14)
