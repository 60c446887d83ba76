"""Shared test helpers: an optional torch import and random-array factories."""

import numpy as np
import pytest

try:  # PyTorch is the test oracle when it is installed; parity tests skip cleanly without it.
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

GRADCHECK_TOL = 1e-6
PARITY_TOL = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_close(actual, expected, tol, what=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    err = float(np.abs(actual - expected).max(initial=0.0)) / scale
    assert err <= tol, f"{what}: error {err:.3g} > {tol:.1g}"



@pytest.fixture
def pack_every_weight(monkeypatch):
    """MKL packs every weight of the compiled loops in this test (``RNNKIT_PACK=all``), the small ones too."""
    from rnnkit.kernels import blas

    monkeypatch.setattr(blas, "PACK", "all")


def count_calls(monkeypatch, owner, names: dict) -> dict:
    """Wrap each attribute of ``owner`` that ``names`` maps a key to ({key: attribute name}) so that its calls are
    counted (each still runs); return the counts by key, which the calls update."""
    counts = dict.fromkeys(names, 0)
    for key, attribute in names.items():
        original = getattr(owner, attribute)

        def counted(*args, _key=key, _original=original, **kwargs):
            counts[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, counted)
    return counts


def validation_losses(run_dir):
    """The validation losses a training run recorded in its metrics.jsonl, in order."""
    import json

    return [json.loads(line)["val_loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"val_loss"' in line]


def run_cli(argv, capsys):
    """Run the rnnkit command in-process; return (exit status, stdout, stderr)."""
    from rnnkit.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
