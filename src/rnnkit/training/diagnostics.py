"""Gradient-flow diagnostics: how the error signal decays through time, gate saturation, spectral radii.

For each model, a loss is put on the *last* step of a validation batch only, and backpropagated; the last layer
records ‖∂L/∂h_t‖ for every t (`RecurrentLayer.record_state_grads`, read from its trace). A vanilla RNN's curve falls
geometrically going back in time (vanishing gradients, Hochreiter 1991; Bengio et al. 1994) or rises (exploding);
an LSTM's constant error carousel keeps it flat for much longer. Saturation is the share of sigmoid gate values
below 0.05 or above 0.95 (or |tanh| above 0.95 for an RNN); the spectral radius ρ(W) = max |λ(W)| of each
(H, H) recurrent block decides, for a linearised RNN, whether signals shrink (ρ < 1) or grow (ρ > 1).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..models.sequence import LOSSES
from .plotting import pyplot, save_figure
from .progress import progress


def state_gradient_norms(model, task, rows: int = 64) -> np.ndarray:
    """‖∂L/∂h_t‖ (mean over rows) for t = 0..T−1, L = the loss at the last valid step of each sequence.
    Read from the last layer's trace (`RecurrentLayer.record_state_grads`); the forward's gate activations stay
    readable afterwards in ``model.rnn.trace()``."""
    batch = task.val[0]
    lengths = None if batch.lengths is None else batch.lengths[:rows]
    steps = batch.x.shape[1] if lengths is None else int(lengths.max())  # these rows' longest, not the batch's
    x, target = batch.x[:rows, :steps], batch.target[:rows, :steps]
    x = x.astype(model.dtype) if x.dtype.kind == "f" else x
    last_step = (lengths if lengths is not None else np.full(x.shape[0], steps)) - 1
    mask = np.arange(steps)[None, :] == last_step[:, None]
    model.rnn.record_state_grads = True
    try:
        model.eval()
        model.zero_grad()
        out, _ = model.forward(x, lengths=lengths)
        loss = LOSSES[task.loss]()
        loss.forward(out, target, mask=mask)
        model.backward(loss.backward())
        return np.array(model.rnn.trace(layer=-1).state_grad_norms)
    finally:
        model.rnn.record_state_grads = False
        model.train()


def gate_values(model, lengths=None) -> dict[str, np.ndarray]:
    """Activations of the last forward's first layer at the valid steps (``lengths`` (B,) of a ragged batch), by the
    cell's gate names (LSTM i, f, g, o; GRU r, z, n; RHN h1, transform1, ...); for a cell without gates (RNN,
    Jordan) its output state h."""
    view = model.rnn.trace(layer=0)
    values = view.gates or {"h": next(iter(view.states.values()))}
    rows, steps = next(iter(values.values())).shape[:2]
    valid = np.ones((rows, steps), bool) if lengths is None else np.arange(steps)[None, :] < lengths[:rows, None]
    return {name: v[valid].ravel() for name, v in values.items()}


TANH_VALUED = ("g", "n", "h")  # the other gates are sigmoids


def saturation(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of saturated activations per gate: |tanh| > 0.95, or a sigmoid below 0.05 or above 0.95."""
    out = {}
    for gate, v in values.items():
        if gate in TANH_VALUED or gate.rstrip("0123456789") == "h":
            out[gate] = float((np.abs(v) > 0.95).mean())
        else:
            out[gate] = float(((v < 0.05) | (v > 0.95)).mean())
    return out


def spectral_radii(model) -> dict[str, float]:
    """ρ of each (H, H) block of the first layer's W_hh, named by the cell's gates (blocks when unnamed); an IndRNN's
    vector u is diag(u), ρ = max |u|; cells without recurrent weights (minGRU, minLSTM) have none."""
    cell = model.rnn.cells[0]
    if getattr(cell, "weight_hh", None) is None:
        return {}
    w = cell.weight_hh.data.astype(np.float64)
    h = cell.hidden_size
    if w.ndim == 1:
        return {"h": float(np.abs(w).max())}
    if w.shape[1] != h:
        return {}
    names = list(cell.gate_names) or ["h"]
    if len(names) * h != w.shape[0]:
        names = [f"block{k}" for k in range(w.shape[0] // h)]
    return {g: float(np.abs(np.linalg.eigvals(w[k * h:(k + 1) * h])).max()) for k, g in enumerate(names)}


def task_label(task) -> str:
    """``adding, T=100``, or the task's name alone when its sequences have no fixed length (the Reber grammar)."""
    return f"{task.name}, T={task.seq_length}" if task.seq_length else task.name


def diagnose(models: dict, task, out_dir: Path) -> dict:
    """Run the diagnostics for ``models`` ({label: SequenceModel}) on ``task``, the data of every model, or on
    {label: task}, each model's own; write grad_norms.png (one panel per task) and saturation.png (gate activations,
    spectral radii); return a summary per label (``task``: the task's label)."""
    tasks = task if isinstance(task, dict) else dict.fromkeys(models, task)
    summary, curves, gates = {}, {}, {}
    for label, model in progress(models.items(), total=len(models), desc="diagnose", unit="model"):
        model = copy.deepcopy(model).to(np.float64)  # tiny gradients would underflow in float32
        norms = state_gradient_norms(model, tasks[label])
        curves[label] = norms
        lengths = tasks[label].val[0].lengths
        gates[label] = gate_values(model, None if lengths is None else lengths[:64])
        first, last = norms[0], norms[-1]  # the signal after T − 1 steps back, and at the loss
        summary[label] = {"task": task_label(tasks[label]), "grad_norm_first_step": float(first),
                          "grad_norm_last_step": float(last),
                          "decay_first_over_last": float(first / last) if last else float("nan"),
                          "saturation": saturation(gates[label]), "spectral_radius": spectral_radii(model)}
    out_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write into it
    save_figure(gradient_figure(curves, {label: s["task"] for label, s in summary.items()}), out_dir / "grad_norms.png")
    radii = {label: s["spectral_radius"] for label, s in summary.items()}
    save_figure(gate_figure(gates, radii), out_dir / "saturation.png")
    return summary


def gradient_figure(curves: dict[str, np.ndarray], tasks: dict[str, str]):
    """‖∂L/∂h_t‖ against t, one panel per task (``tasks``: label → task label), each titled with its task and T."""
    panels = list(dict.fromkeys(tasks.values()))
    fig, axes = pyplot().subplots(1, len(panels), figsize=(7 * len(panels), 4), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, norms in curves.items():
            if tasks[label] == panel:
                ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-30), label=label)
        ax.set_xlabel("time step t (the loss is at the last step)")
        ax.set_ylabel("‖∂L/∂h_t‖")
        ax.set_title(f"{panel}: how the error signal travels back through time")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    return fig


def gate_figure(gates: dict[str, dict[str, np.ndarray]], radii: dict[str, dict[str, float]]):
    """One histogram panel of gate activations per model, and a last panel of the spectral radii ρ(W_hh) of every
    model's recurrent blocks against ρ = 1."""
    fig, axes = pyplot().subplots(1, len(gates) + 1, figsize=(4.2 * (len(gates) + 1), 3.4), dpi=110,
                                   squeeze=False)
    for ax, (label, values) in zip(axes[0], gates.items()):
        for gate, v in values.items():
            ax.hist(v, bins=50, histtype="step", density=True, label=gate)
        ax.set_title(f"{label}: activations")
        ax.set_xlabel("value (sigmoid gates 0 … 1, tanh −1 … 1)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    _radius_panel(axes[0][-1], radii)
    return fig


def _radius_panel(ax, radii: dict[str, dict[str, float]]) -> None:
    """Horizontal bars ``label: gate`` → ρ, with the line ρ = 1 (signals shrink left of it, grow right of it)."""
    bars = [(f"{label}: {gate}", rho) for label, by_gate in radii.items() for gate, rho in by_gate.items()]
    ax.set_title("spectral radius ρ of each W_hh block")
    if not bars:
        ax.text(0.5, 0.5, "no recurrent weight matrices", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    names, values = zip(*bars)
    ax.barh(np.arange(len(bars)), values, color="tab:purple")
    ax.set_yticks(np.arange(len(bars)), names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", ls="--", lw=1, label="ρ = 1")
    ax.set_xlabel("ρ(W_hh) = max |λ|")
    ax.legend(fontsize=8)
