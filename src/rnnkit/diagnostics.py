"""Gradient-flow diagnostics: how the error signal decays through time, gate saturation, spectral radii.

For each model, a loss is put on the *last* step of a validation batch only, and backpropagated; the runner of the
last layer records ‖∂L/∂h_t‖ for every t (`Recurrence.track_state_grads`). A vanilla RNN's curve falls
geometrically going back in time (vanishing gradients, Hochreiter 1991; Bengio et al. 1994) or rises (exploding);
an LSTM's constant error carousel keeps it flat for much longer. Saturation is the share of sigmoid gate values
below 0.05 or above 0.95 (or |tanh| above 0.95 for an RNN); the spectral radius ρ(W) = max |λ(W)| of each
(H, H) recurrent block decides, for a linearised RNN, whether signals shrink (ρ < 1) or grow (ρ > 1).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .plotting import save_figure

LOSSES = {"ce": CrossEntropyLoss, "mse": MSELoss, "bce": BCEWithLogitsLoss}


def state_gradient_norms(model, task, rows: int = 64) -> np.ndarray:
    """‖∂L/∂h_t‖ (mean over rows) for t = 0..T−1, L = the loss at the last valid step of each sequence."""
    batch = task.val[0]
    x = batch.x[:rows]
    x = x.astype(model.dtype) if x.dtype.kind == "f" else x
    lengths = None if batch.lengths is None else batch.lengths[:rows]
    runner = model.rnn.runners[-1][0]
    runner.track_state_grads = True
    try:
        model.eval()
        model.zero_grad()
        out, _ = model.forward(x, lengths=lengths)
        last = (np.arange(x.shape[1])[None, :] == ((lengths if lengths is not None else x.shape[1]) - 1)
                if lengths is not None else np.arange(x.shape[1])[None, :] == x.shape[1] - 1)
        mask = np.broadcast_to(last, x.shape[:2])
        loss = LOSSES[task.loss]()
        loss.forward(out, batch.target[:rows], mask=mask)
        model.backward(loss.backward())
        return runner.state_grad_norms.copy()
    finally:
        runner.track_state_grads = False
        model.train()


def gate_values(model) -> dict[str, np.ndarray]:
    """Activations of the last forward's first cell, by gate: LSTM i, f, g, o; GRU r, z, n; RNN h."""
    cell = model.rnn.runners[0][0].cell
    runner = model.rnn.runners[0][0]
    h = cell.hidden_size
    name = type(cell).__name__
    if name in ("LSTMStep", "MogrifierStep"):
        gates = cell.cache[0].reshape(-1, 4 * h)
        return {g: gates[:, k * h:(k + 1) * h].ravel() for k, g in enumerate("ifgo")}
    if name == "GRUStep":
        gates = cell.cache[0].reshape(-1, 3 * h)
        return {g: gates[:, k * h:(k + 1) * h].ravel() for k, g in enumerate("rzn")}
    return {"h": runner._states[0][1:].ravel()}


def saturation(values: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for gate, v in values.items():
        if gate in ("g", "n", "h"):  # tanh-valued
            out[gate] = float((np.abs(v) > 0.95).mean())
        else:
            out[gate] = float(((v < 0.05) | (v > 0.95)).mean())
    return out


def spectral_radii(model) -> dict[str, float]:
    """ρ of each (H, H) block of the first layer's W_hh (one per gate)."""
    cell = model.rnn.runners[0][0].cell
    w = cell.weight_hh.data.astype(np.float64)
    h = cell.hidden_size
    if w.shape[1] != h:
        return {}
    names = {"LSTMStep": "ifgo", "MogrifierStep": "ifgo", "GRUStep": "rzn"}.get(type(cell).__name__, "h")
    if len(names) * h != w.shape[0]:
        names = [f"block{k}" for k in range(w.shape[0] // h)]
    return {g: float(np.abs(np.linalg.eigvals(w[k * h:(k + 1) * h])).max()) for k, g in enumerate(names)}


def diagnose(models: dict, task, out_dir: Path) -> dict:
    """Run the diagnostics for ``models`` ({label: SequenceModel}); write PNGs; return a summary per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    summary, curves, gates = {}, {}, {}
    for label, model in models.items():
        model = copy.deepcopy(model).to(np.float64)  # tiny gradients would underflow in float32
        norms = state_gradient_norms(model, task)
        curves[label] = norms
        gates[label] = gate_values(model)
        first, last = norms[0], norms[-1]  # the signal after T − 1 steps back, and at the loss
        summary[label] = {"grad_norm_first_step": float(first), "grad_norm_last_step": float(last),
                          "decay_first_over_last": float(first / last) if last else float("nan"),
                          "saturation": saturation(gates[label]), "spectral_radius": spectral_radii(model)}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, norms in curves.items():
        ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-30), label=label)
    ax.set_xlabel("time step t (the loss is at the last step)")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title("How the error signal travels back through time")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, out_dir / "grad_norms.png")
    fig, axes = plt.subplots(1, len(gates), figsize=(4.2 * len(gates), 3.4), dpi=110, squeeze=False)
    for ax, (label, values) in zip(axes[0], gates.items()):
        for gate, v in values.items():
            ax.hist(v, bins=50, histtype="step", density=True, label=gate)
        ax.set_title(f"{label}: activations")
        ax.legend(fontsize=8)
    save_figure(fig, out_dir / "saturation.png")
    return summary
