"""The GRU step-backward exercise of deck 001 ("GRU backward: your exercise"), in the deck's notation and its GRU.

Deck 001's GRU (row vectors, the reset applied *before* the recurrent product, z taking the candidate):

    z'_t = h_{t-1} W_Rz + x_t W_z + b_z          z_t = σ(z'_t)
    r'_t = h_{t-1} W_Rr + x_t W_r + b_r          r_t = σ(r'_t)
    f_t  = r_t ⊙ h_{t-1}
    o'_t = f_t W_Ro + x_t W_o + b_o              o_t = tanh(o'_t)
    h_t  = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ o_t

is rnnkit's ``GRUCell(I, H, reset_after=False, update_gate="lecture")``: its rows r, z, n of ``weight_ih`` are
W_rᵀ, W_zᵀ, W_oᵀ, those of ``weight_hh`` W_Rrᵀ, W_Rzᵀ, W_Roᵀ, and b_z = b_iz + b_hz (likewise b_r, b_o).

The exercise: ``gru_step_backward(dh, cache, weights) -> (dx, dh_prev, dW_z, dW_r, dW_o, dW_Rz, dW_Rr, dW_Ro, db_z,
db_r, db_o)`` with δh = ∂L/∂h_t (B, H), the ``cache`` {x, h_prev, z, r, f, o} of `gru_step_forward` and the six
matrices {W_z, W_r, W_o (I, H); W_Rz, W_Rr, W_Ro (H, H)}. The answer, each line from its forward line:

    δo_t = δh ⊙ z_t                     δo'_t = δo_t ⊙ (1 − o_t²)
    δz_t = δh ⊙ (o_t − h_{t-1})         δz'_t = δz_t ⊙ z_t (1 − z_t)
    δf_t = δo'_t W_Roᵀ                  δr'_t = δf_t ⊙ h_{t-1} ⊙ r_t (1 − r_t)
    δh_{t-1} = δh ⊙ (1 − z_t) + δf_t ⊙ r_t + δz'_t W_Rzᵀ + δr'_t W_Rrᵀ
    δx_t = δz'_t W_zᵀ + δr'_t W_rᵀ + δo'_t W_oᵀ
    ΔW_g = x_tᵀ δg'_t,  ΔW_Rz = h_{t-1}ᵀ δz'_t,  ΔW_Rr = h_{t-1}ᵀ δr'_t,  ΔW_Ro = f_tᵀ δo'_t,  Δb_g = Σ_n δg'_t

The cases are computed with `rnnkit.GRUCell`; when an answer is wrong, the judge also computes the answers with the
usual mistakes (a missing term, PyTorch's z, 1 − o for 1 − o², ...) and names the one the answer matches.
"""

from __future__ import annotations

import numpy as np

NAME = "gru_step_backward"
#: the returned arrays, in order
OUTPUTS = ("dx", "dh_prev", "dW_z", "dW_r", "dW_o", "dW_Rz", "dW_Rr", "dW_Ro", "db_z", "db_r", "db_o")
#: what each returned array is made of: named when an answer is wrong and matches no known mistake
TERMS = {
    "dx": "δz'_t W_zᵀ + δr'_t W_rᵀ + δo'_t W_oᵀ",
    "dh_prev": "δh ⊙ (1 − z_t) + δf_t ⊙ r_t + δz'_t W_Rzᵀ + δr'_t W_Rrᵀ",
    "dW_z": "x_tᵀ δz'_t", "dW_r": "x_tᵀ δr'_t", "dW_o": "x_tᵀ δo'_t",
    "dW_Rz": "h_{t-1}ᵀ δz'_t", "dW_Rr": "h_{t-1}ᵀ δr'_t", "dW_Ro": "f_tᵀ δo'_t (f_t = r_t ⊙ h_{t-1})",
    "db_z": "Σ_n δz'_t", "db_r": "Σ_n δr'_t", "db_o": "Σ_n δo'_t",
}
#: the usual mistakes: flag of `reference_backward` → what the grader says an answer matching it did
MISTAKES = {
    "pytorch_z": "PyTorch's update gate (z keeping h_{t-1}); the lecture's h_t = (1 − z) ⊙ h_{t-1} + z ⊙ o_t gives "
                 "δo_t = δh ⊙ z_t and δz_t = δh ⊙ (o_t − h_{t-1})",
    "tanh_not_squared": "δo'_t with (1 − o_t) instead of (1 − o_t²)",
    "no_tanh_derivative": "δo'_t without the tanh derivative (1 − o_t²)",
    "no_sigmoid_derivative": "δz'_t, δr'_t without the sigmoid derivatives z_t(1 − z_t), r_t(1 − r_t)",
    "no_direct_path": "δh_{t-1} without its direct path δh ⊙ (1 − z_t)",
    "no_reset_path": "δh_{t-1} without the path through f_t = r_t ⊙ h_{t-1}: the term δf_t ⊙ r_t",
    "no_gate_paths": "δh_{t-1} without the gates' recurrent terms δz'_t W_Rzᵀ + δr'_t W_Rrᵀ",
    "W_Ro_from_h": "ΔW_Ro = h_{t-1}ᵀ δo'_t: the product W_Ro multiplies is f_t = r_t ⊙ h_{t-1}",
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def gru_step_forward(x, h_prev, weights, biases):
    """Deck 001's GRU step → (h_t, cache); ``weights`` {W_z, W_r, W_o, W_Rz, W_Rr, W_Ro}, ``biases`` {b_z, b_r,
    b_o}; ``cache`` is the dict {x, h_prev, z, r, f, o} that ``gru_step_backward`` receives."""
    w, b = weights, biases
    z = _sigmoid(h_prev @ w["W_Rz"] + x @ w["W_z"] + b["b_z"])
    r = _sigmoid(h_prev @ w["W_Rr"] + x @ w["W_r"] + b["b_r"])
    f = r * h_prev
    o = np.tanh(f @ w["W_Ro"] + x @ w["W_o"] + b["b_o"])
    h = (1 - z) * h_prev + z * o
    return h, {"x": x, "h_prev": h_prev, "z": z, "r": r, "f": f, "o": o}


def reference_backward(dh, cache, weights, mistake: str | None = None) -> tuple:
    """The answer (`OUTPUTS`, in order), or the answer with one of the `MISTAKES` made."""
    x, h_prev, z, r, f, o = (cache[k] for k in ("x", "h_prev", "z", "r", "f", "o"))
    w = weights
    keep, take = (z, 1 - z) if mistake == "pytorch_z" else (1 - z, z)  # the weights of h_{t-1} and o_t
    do = dh * take
    do_ = do * {"tanh_not_squared": 1 - o, "no_tanh_derivative": 1.0}.get(mistake, 1 - o * o)
    dz = dh * ((h_prev - o) if mistake == "pytorch_z" else (o - h_prev))
    gates = mistake != "no_sigmoid_derivative"
    dz_ = dz * (z * (1 - z) if gates else 1.0)
    df = do_ @ w["W_Ro"].T
    dr_ = df * h_prev * (r * (1 - r) if gates else 1.0)
    dh_prev = ((0.0 if mistake == "no_direct_path" else dh * keep)
               + (0.0 if mistake == "no_reset_path" else df * r)
               + (0.0 if mistake == "no_gate_paths" else dz_ @ w["W_Rz"].T + dr_ @ w["W_Rr"].T))
    dx = dz_ @ w["W_z"].T + dr_ @ w["W_r"].T + do_ @ w["W_o"].T
    recurrent_input_of_o = h_prev if mistake == "W_Ro_from_h" else f
    return (dx, dh_prev, x.T @ dz_, x.T @ dr_, x.T @ do_, h_prev.T @ dz_, h_prev.T @ dr_,
            recurrent_input_of_o.T @ do_, dz_.sum(axis=0), dr_.sum(axis=0), do_.sum(axis=0))


def lecture_parameters(cell) -> tuple[dict, dict]:
    """The deck's {W_z, W_r, W_o, W_Rz, W_Rr, W_Ro} and {b_z, b_r, b_o} of an rnnkit `GRUCell` (copies)."""
    rows = dict(zip("rzo", np.split(cell.weight_ih.data, 3)))
    recurrent = dict(zip("rzo", np.split(cell.weight_hh.data, 3)))
    bias = dict(zip("rzo", np.split(cell.bias_ih.data + cell.bias_hh.data, 3)))
    weights = {f"W_{g}": rows[g].T.copy() for g in "zro"} | {f"W_R{g}": recurrent[g].T.copy() for g in "zro"}
    return weights, {f"b_{g}": bias[g] for g in "zro"}


def _from_cell(cell, dx, dh_prev) -> dict:
    """The expected answer ({name: array}, in `OUTPUTS` order) from the cell's backward."""
    gw, gr, gb = (dict(zip("rzo", np.split(p.grad, 3))) for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih))
    grads = ([gw[g].T for g in "zro"] + [gr[g].T for g in "zro"] + [gb[g] for g in "zro"])
    return dict(zip(OUTPUTS, [dx, dh_prev, *grads]))


def gru_step_backward_cases():
    """``gru_step_backward(dh, cache, weights)`` (see the module docstring) for the step of `gru_step_forward`;
    compared with `rnnkit.GRUCell(reset_after=False, update_gate='lecture')` (float64)."""
    from .recurrent import GRUCell

    for seed, (b, i, h) in enumerate([(3, 4, 5), (1, 2, 3), (4, 3, 2)]):
        rng = np.random.default_rng(seed)
        cell = GRUCell(i, h, reset_after=False, update_gate="lecture", dtype=np.float64, rng=rng)
        x, h0, dh = rng.standard_normal((b, i)), rng.standard_normal((b, h)), rng.standard_normal((b, h))
        weights, biases = lecture_parameters(cell)
        h1, cache = gru_step_forward(x, h0, weights, biases)
        h1_cell = cell.forward(x, h0)
        dx, dh0 = cell.backward(dh)
        expected = _from_cell(cell, dx, dh0)
        reference = reference_backward(dh, cache, weights)
        assert np.allclose(h1, h1_cell, atol=1e-12) and all(
            np.allclose(a, e, atol=1e-12) for a, e in zip(reference, expected.values())), \
            "internal: the lecture GRU disagrees with rnnkit.GRUCell"
        yield (dh, cache, weights), expected


def judge(got, expected: dict, arguments: tuple, tol: float = 1e-8) -> float:
    """The worst relative error of an answer, or `AssertionError` naming the first wrong array and the mistake it
    matches (or, matching none, the terms that array is made of)."""
    from .teaching import _compare

    try:
        return _compare(NAME, got, expected, tol)
    except AssertionError as wrong:
        message = str(wrong)
        name = next((n for n in OUTPUTS if f": {n} is wrong" in message), None)
        if name is None:  # a count or a shape: the message says it
            raise
        raise AssertionError(f"{message}; {likely_mistake(name, got[OUTPUTS.index(name)], arguments)}") from None


def likely_mistake(name: str, value, arguments: tuple) -> str:
    """Which of the `MISTAKES` gives ``value`` for the output ``name`` (else what that output is made of)."""
    index = OUTPUTS.index(name)
    value = np.asarray(value, np.float64)
    for mistake, description in MISTAKES.items():
        variant = reference_backward(*arguments, mistake=mistake)[index]
        scale = max(float(np.abs(variant).max(initial=0.0)), 1e-12)
        if float(np.abs(value - variant).max(initial=0.0)) / scale < 1e-6:
            return f"it matches {description}"
    return f"{name} = {TERMS[name]}"
