"""Optimizers follow torch.optim's update rules step for step; clipping follows clip_grad_norm_."""

import numpy as np
import pytest

from conftest import requires_torch, torch
from rnnkit import SGD, Adagrad, Adam, Linear, Parameter, RMSprop, clip_grad_norm

CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (Adagrad, dict(lr=0.1, weight_decay=0.1)),
    (RMSprop, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),
]


@requires_torch
@pytest.mark.parametrize("cls, kwargs", CONFIGS, ids=lambda c: str(c) if isinstance(c, dict) else c.__name__)
def test_optimizer_matches_torch(cls, kwargs):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4))
    ours = Parameter(w0.copy())
    theirs = torch.tensor(w0.copy(), requires_grad=True)
    opt = cls([ours], **kwargs)
    topt = getattr(torch.optim, cls.__name__)([theirs], **kwargs)
    for _ in range(5):
        g = rng.normal(size=w0.shape)
        ours.grad[...] = g
        theirs.grad = torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_scales_to_the_maximum():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad[...] = [3.0, 0.0]
    b.grad[...] = [4.0]
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    total = np.sqrt((a.grad**2).sum() + (b.grad**2).sum())
    assert total == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm([a, b], 10.0) == pytest.approx(total)


def test_optimizer_state_round_trip_continues_identically():
    layer = Linear(3, 2, dtype=np.float64, rng=0)
    opt = Adam(layer.named_parameters(), lr=0.1)
    for p in layer.parameters():
        p.grad[...] = 1.0
    opt.step()
    saved, weights = opt.state_dict(), layer.state_dict()
    opt.step()
    after = layer.state_dict()
    layer.load_state_dict(weights)
    restored = Adam(layer.named_parameters(), lr=0.1)
    restored.load_state_dict(saved)
    restored.step()
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, after[name])
    assert set(saved) >= {"steps", "weight/exp_avg", "bias/exp_avg_sq"}


def test_optimizer_rejects_bad_settings():
    with pytest.raises(ValueError, match="learning rate"):
        SGD([Parameter(np.zeros(1))], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([Parameter(np.zeros(1))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        Adam([])
