# %% [markdown]
# # Lecture deck 001: programming recurrent networks
#
# Deck 001 extends a hand-written framework with a *TimeSeries*, derives the vanilla cell's backward and weight
# updates, gives the GRU (its backward is "your exercise" — here with a grader), the LSTM forward and backward,
# Highway layers and Recurrent Highway Networks. This notebook keeps the deck's notation throughout.
#
# ## Symbol map
#
# Row vectors times matrices, so a deck matrix is the transpose of rnnkit's parameter (the table for all decks:
# [the lectures' symbols and conventions](../../lectures/), `docs/lectures.md`). The deck reuses letters: $o_t$ is
# the vanilla cell's output *and* the GRU's candidate, $W_o$ the output matrix *and* the GRU's/LSTM's gate matrices.
#
# | deck 001 | rnnkit |
# |---|---|
# | vanilla: $W_x$ (x, h), $W_h$ (h, h), $bias$ (h), $W_o$ (h, out) | `RNN.weight_ih_l0`ᵀ, `weight_hh_l0`ᵀ, `bias_ih_l0 + bias_hh_l0`; `Linear(h, out, bias=False).weight`ᵀ |
# | $g_t$, $h_t = \tanh(g_t)$, $o_t = h_t W_o$ | the pre-activation, `RNN`'s output, the `Linear` layer's output |
# | $\delta o_t$, $\delta h_t$, $\delta g_t$, $\delta x_t$ | the gradients `backward` passes (δo from above) |
# | TimeSeries, "just the last output" | `rnnkit.TimeSeries`; `Elman(..., return_sequences=False)` |
# | GRU: $W_{Rz}, W_z, b_z$; $W_{Rr}, W_r, b_r$; $f_t = r_t \odot h_{t-1}$; $W_{Ro}, W_o, b_o$, candidate $o_t$ | `GRUCell(reset_after=False, update_gate="lecture")`, rows **r, z, n** of `weight_hh`/`weight_ih` (n = $o_t$) |
# | LSTM gates $a$ (candidate), $f$, $o$, $i$; $W_{Ra}, W_a, b_a$, ...; $c_t$, $out_t = h_t$ | `LSTMCell`, rows **i, f, g, o** (g = $a$) |
# | Highway $W, b$; $W_T, b_T$, $T(x)$, $\hat{y}$ | `Highway(activation="identity")`: `weight` = [$W^\top$; $W_T^\top$], `bias` = [$b$; $b_T$] |
# | RHN $s_t^l$, $h_t^l$, $t_t^l$, $c_t^l = 1 - t_t^l$, $W_H, W_T$, $W_{RHl}, W_{Rtl}$ | `RHN(depth=L, coupled=True)`: `weight_ih_l0` = [$W_H^\top$; $W_T^\top$], `weight_hh_l0` the $W_{R\cdot l}^\top$ by depth |

# %%
import numpy as np

import rnnkit
from rnnkit import teaching
from rnnkit.teaching_gru import lecture_parameters

rng = np.random.default_rng(0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


# %% [markdown]
# ## TimeSeries
#
# The deck's recurrent layer takes "a list of tensors that is naturally ordered by time" and returns either the
# last output or a TimeSeries of all outputs. `rnnkit.TimeSeries` is that list (item $t$ is the (B, F) batch of
# step $t$); a fully connected layer is applied to every tensor of it with the same parameters.

# %%
B, T, X, Hs, OUT = 2, 5, 3, 4, 2
series = rnnkit.TimeSeries(rng.standard_normal((B, X)) for _ in range(T))
net = rnnkit.Elman(X, Hs, OUT, dtype=np.float64, rng=1)
outputs, _ = net.forward(series)
print("a TimeSeries in, a TimeSeries out:", type(outputs).__name__, len(outputs), "steps of", outputs[0].shape)
net.return_sequences = False
last, _ = net.forward(series)
print("only the last output:", last.shape, " equal:", np.abs(last - outputs[-1]).max())
fc = rnnkit.Linear(X, 6, dtype=np.float64, rng=2)
per_step = rnnkit.TimeSeries(fc.forward(x_t) for x_t in series)
print("FC on each tensor = FC on the stacked (B, T, F) array:",
      np.abs(per_step.stack() - fc.forward(series.stack())).max())

# %% [markdown]
# ## The vanilla cell: forward, backward, weight updates
#
# $$g_t = h_{t-1} W_h + x_t W_x + bias, \qquad h_t = \tanh(g_t), \qquad o_t = h_t W_o, \qquad h_{-1} = 0$$
#
# $$\delta h_t = \delta o_t W_o^\top + \delta g_{t+1} W_h^\top, \qquad \delta g_t = \delta h_t \odot (1 - h_t^2),
#   \qquad \delta x_t = \delta g_t W_x^\top$$
#
# $$\Delta W_h = \sum_t h_{t-1}^\top \delta g_t, \quad \Delta W_x = \sum_t x_t^\top \delta g_t, \quad
#   \Delta bias = \sum_t \delta g_t, \quad \Delta W_o = \sum_t h_t^\top \delta o_t$$
#
# $\delta g_t$ uses $1 - h_t^2$: tanh's derivative from its *output* (deck 000). In the deck's code, against
# rnnkit's `RNN` and a bias-free `Linear`:

# %%
rnn = rnnkit.RNN(X, Hs, dtype=np.float64, rng=3)
out_layer = rnnkit.Linear(Hs, OUT, bias=False, dtype=np.float64, rng=4)
W_x, W_h, W_o = rnn.weight_ih_l0.data.T, rnn.weight_hh_l0.data.T, out_layer.weight.data.T
bias = rnn.bias_ih_l0.data + rnn.bias_hh_l0.data
x = series.stack()
h, hs = np.zeros((B, Hs)), []
for t in range(T):
    h = np.tanh(h @ W_h + x[:, t] @ W_x + bias)
    hs.append(h)
d_o = rng.standard_normal((B, T, OUT))  # δo_t: from above

dg_next, dW_h, dW_x, dbias, dW_o, dx = np.zeros((B, Hs)), 0, 0, 0, 0, np.zeros_like(x)
for t in reversed(range(T)):
    dh = d_o[:, t] @ W_o.T + dg_next @ W_h.T
    dg = dh * (1 - hs[t] ** 2)
    dx[:, t] = dg @ W_x.T
    h_before = hs[t - 1] if t else np.zeros((B, Hs))
    dW_h, dW_x, dbias = dW_h + h_before.T @ dg, dW_x + x[:, t].T @ dg, dbias + dg.sum(axis=0)
    dW_o = dW_o + hs[t].T @ d_o[:, t]
    dg_next = dg

o, _ = rnn.forward(x)
out_layer.forward(o)
dx_rnnkit, _ = rnn.backward(out_layer.backward(d_o))
for name, mine, theirs in [("δx", dx, dx_rnnkit), ("ΔW_h", dW_h, rnn.weight_hh_l0.grad.T),
                           ("ΔW_x", dW_x, rnn.weight_ih_l0.grad.T), ("Δbias", dbias, rnn.bias_ih_l0.grad),
                           ("ΔW_o", dW_o, out_layer.weight.grad.T)]:
    print(f"{name:6} equal to rnnkit: {np.abs(mine - theirs).max():.1e}")

# %% [markdown]
# ## The GRU, and its backward as the exercise
#
# $$z_t = \sigma(h_{t-1} W_{Rz} + x_t W_z + b_z), \qquad r_t = \sigma(h_{t-1} W_{Rr} + x_t W_r + b_r)$$
#
# $$f_t = r_t \odot h_{t-1}, \qquad o_t = \tanh(f_t W_{Ro} + x_t W_o + b_o), \qquad
#   h_t = (1 - z_t) \odot h_{t-1} + z_t \odot o_t$$
#
# Two differences from PyTorch's GRU (rnnkit's default): the reset is applied *before* the recurrent product
# (`reset_after=False`), and $z$ weights the candidate, not the old state (`update_gate="lecture"`). The deck's
# forward equals `GRUCell(..., reset_after=False, update_gate="lecture")`:

# %%
def gru_step(x, h_prev, W, b):
    z = sigmoid(h_prev @ W["W_Rz"] + x @ W["W_z"] + b["b_z"])
    r = sigmoid(h_prev @ W["W_Rr"] + x @ W["W_r"] + b["b_r"])
    f = r * h_prev
    o = np.tanh(f @ W["W_Ro"] + x @ W["W_o"] + b["b_o"])
    h = (1 - z) * h_prev + z * o
    return h, {"x": x, "h_prev": h_prev, "z": z, "r": r, "f": f, "o": o}


gru = rnnkit.GRUCell(X, Hs, reset_after=False, update_gate="lecture", dtype=np.float64, rng=5)
W, b = lecture_parameters(gru)
x_t, h_prev = rng.standard_normal((B, X)), rng.standard_normal((B, Hs))
h_t, cache = gru_step(x_t, h_prev, W, b)
print("h_t equal to rnnkit's lecture GRU:", np.abs(h_t - gru.forward(x_t, h_prev)).max())

# %% [markdown]
# **Exercise.** Write `gru_step_backward(dh, cache, W)` returning
# `(dx, dh_prev, dW_z, dW_r, dW_o, dW_Rz, dW_Rr, dW_Ro, db_z, db_r, db_o)` for one step, given $\delta h_t$ and the
# `cache` of `gru_step`. Walk the forward backwards: $\delta o_t$ and $\delta z_t$ from $h_t$, then the
# pre-activations with the derivatives from the activations, then $\delta f_t = \delta o'_t W_{Ro}^\top$, and
# collect *every* path into $\delta h_{t-1}$ (there are four). The grader names the term an answer is missing.

# %% tags=["exercise"]
def gru_step_backward(dh, cache, W):
    """Backward of deck 001's GRU step → (δx, δh_{t-1}, ΔW_z, ΔW_r, ΔW_o, ΔW_Rz, ΔW_Rr, ΔW_Ro, Δb_z, Δb_r, Δb_o)."""
    ### BEGIN SOLUTION
    x, h_prev, z, r, f, o = (cache[k] for k in ("x", "h_prev", "z", "r", "f", "o"))
    do_ = dh * z * (1 - o**2)  # δo'_t
    dz_ = dh * (o - h_prev) * z * (1 - z)  # δz'_t
    df = do_ @ W["W_Ro"].T  # δf_t
    dr_ = df * h_prev * r * (1 - r)  # δr'_t
    dh_prev = dh * (1 - z) + df * r + dz_ @ W["W_Rz"].T + dr_ @ W["W_Rr"].T
    dx = dz_ @ W["W_z"].T + dr_ @ W["W_r"].T + do_ @ W["W_o"].T
    return (dx, dh_prev, x.T @ dz_, x.T @ dr_, x.T @ do_, h_prev.T @ dz_, h_prev.T @ dr_, f.T @ do_,
            dz_.sum(axis=0), dr_.sum(axis=0), do_.sum(axis=0))
    ### END SOLUTION


# %%
teaching.check("gru_step_backward", gru_step_backward)

# %% [markdown]
# A wrong answer is told what it most likely missed — here the path through $f_t = r_t \odot h_{t-1}$:

# %%
def forgot_the_reset_path(dh, cache, W):
    answer = list(gru_step_backward(dh, cache, W))
    answer[1] = answer[1] - (dh * cache["z"] * (1 - cache["o"] ** 2)) @ W["W_Ro"].T * cache["r"]
    return tuple(answer)


try:
    teaching.check("gru_step_backward", forgot_the_reset_path)
except AssertionError as e:
    print(e)

# %% [markdown]
# ## The LSTM, and the deck's erratum in its backward
#
# $$a_t = \tanh(h_{t-1} W_{Ra} + x_t W_a + b_a), \quad f_t = \sigma(\cdot), \quad o_t = \sigma(\cdot), \quad
#   i_t = \sigma(\cdot)$$
#
# $$c_t = a_t \odot i_t + f_t \odot c_{t-1}, \qquad h_t = \tanh(c_t) \odot o_t$$
#
# The deck prints $\delta c_t = \delta h_t \cdot o_t \cdot (1 - \tanh(c_t)) + \delta c_{t+1} \cdot f_{t+1}$.
# **Erratum:** the derivative of $\tanh$ is $1 - \tanh^2$, so it is
# $\delta c_t = \delta h_t \odot o_t \odot (1 - \tanh^2(c_t)) + \delta c_{t+1} \odot f_{t+1}$. Numerically, on one
# step with $L = \sum w_1 \odot h_t + \sum w_2 \odot c_t$ (so $\delta h_t = w_1$, and $w_2$ plays
# $\delta c_{t+1} f_{t+1}$), against central differences and rnnkit's `LSTMCell` (rows i, f, g, o; g = $a$):

# %%
cell = rnnkit.LSTMCell(X, Hs, dtype=np.float64, rng=6)
c_prev, w1, w2 = rng.standard_normal((B, Hs)), rng.standard_normal((B, Hs)), rng.standard_normal((B, Hs))
W_i, W_f, W_a, W_out = np.split(cell.weight_ih.data.T, 4, axis=1)  # the deck's W_i, W_f, W_a, W_o
W_Ri, W_Rf, W_Ra, W_Ro = np.split(cell.weight_hh.data.T, 4, axis=1)
b_i, b_f, b_a, b_o = np.split(cell.bias_ih.data + cell.bias_hh.data, 4)


def lstm_step(c_prev):
    a = np.tanh(h_prev @ W_Ra + x_t @ W_a + b_a)
    f, o, i = (sigmoid(h_prev @ R + x_t @ Wx + bb) for R, Wx, bb in [(W_Rf, W_f, b_f), (W_Ro, W_out, b_o),
                                                                        (W_Ri, W_i, b_i)])
    c = a * i + f * c_prev
    return np.tanh(c) * o, c, f, o


h, c, f, o = lstm_step(c_prev)
dc_deck = w1 * o * (1 - np.tanh(c)) + w2  # as printed
dc_right = w1 * o * (1 - np.tanh(c) ** 2) + w2
eps, numeric = 1e-6, np.zeros_like(c_prev)
for k in np.ndindex(c_prev.shape):  # ∂L/∂c_{t-1} = δc_t ⊙ f_t, by central differences
    shift = np.zeros_like(c_prev)
    shift[k] = eps
    up, down = lstm_step(c_prev + shift), lstm_step(c_prev - shift)
    numeric[k] = ((w1 * (up[0] - down[0])).sum() + (w2 * (up[1] - down[1])).sum()) / (2 * eps)
cell.forward(x_t, (h_prev, c_prev))
_, (_, dc_prev_rnnkit) = cell.backward((w1, w2))
print("δc_{t-1} with (1 − tanh²(c)):  error", np.abs(dc_right * f - numeric).max())
print("δc_{t-1} with (1 − tanh(c)), as printed:  error", np.abs(dc_deck * f - numeric).max())
print("rnnkit's LSTMCell:  error", np.abs(dc_prev_rnnkit - numeric).max())

# %% [markdown]
# ## Highway layers
#
# $$y = (x W + b) \odot T(x) + x \odot (1 - T(x)), \qquad T(x) = \sigma(x W_T + b_T)$$
#
# `Highway(size, activation="identity")` is this linear form ($\hat{y} = xW + b$); its `weight` stacks
# $W^\top$ and $W_T^\top$. With $T(x) \to 0$ (a very negative $b_T$) the layer passes $x$ through.

# %%
S = 4
hw = rnnkit.Highway(S, activation="identity", dtype=np.float64, rng=7)
W_, W_T = hw.weight.data[:S].T, hw.weight.data[S:].T
b_, b_T = hw.bias.data[:S], hw.bias.data[S:]
x_hw = rng.standard_normal((B, S))
T_x = sigmoid(x_hw @ W_T + b_T)
y_hand = (x_hw @ W_ + b_) * T_x + x_hw * (1 - T_x)
print("y equal to Highway:", np.abs(y_hand - hw.forward(x_hw)).max(), "  gradcheck:", rnnkit.gradcheck(hw, x_hw))
closed = rnnkit.Highway(S, activation="identity", gate_bias=-50.0, dtype=np.float64, rng=7)
print("T(x) ≈ 0 gives y = x:", np.abs(closed.forward(x_hw) - x_hw).max())

# %% [markdown]
# ## Recurrent Highway Networks
#
# Each time step runs $L$ micro-cells; the input enters only the first ($\mathbf{1}_{l=0}$), every depth has its own
# recurrent matrices, and the authors' carry gate is $c_t^l = 1 - t_t^l$:
#
# $$s_t^l = h_t^l \odot t_t^l + s_t^{l-1} \odot c_t^l, \qquad
#   h_t^l = \tanh(x_t W_H \mathbf{1}_{l=0} + s_t^{l-1} W_{RHl} + b_{Hl}), \qquad
#   t_t^l = \sigma(x_t W_T \mathbf{1}_{l=0} + s_t^{l-1} W_{Rtl} + b_{Tl})$$
#
# with $s_t^0$ the previous step's last micro-state. By hand against `RHN(depth=2)` (biases of the first
# micro-cell: rnnkit keeps one for the input and one per depth, their sum is the deck's $b_{H0}$):

# %%
L = 2
rhn = rnnkit.RHN(X, Hs, depth=L, dtype=np.float64, rng=8)
W_in, b_in = rhn.weight_ih_l0.data.T, rhn.bias_ih_l0.data  # [W_H | W_T], (X, 2H)
R = np.split(rhn.weight_hh_l0.data, L)  # per depth: [W_RHl; W_Rtl]ᵀ, (2H, H)
b_R = np.split(rhn.bias_hh_l0.data, L)
s, states = np.zeros((B, Hs)), []
for t in range(T):
    for depth in range(L):
        pre = s @ R[depth].T + b_R[depth] + ((x[:, t] @ W_in + b_in) if depth == 0 else 0)
        h_l, t_l = np.tanh(pre[:, :Hs]), sigmoid(pre[:, Hs:])
        s = h_l * t_l + s * (1 - t_l)
    states.append(s)
out_rhn, _ = rhn.forward(x)
print("s_t equal to RHN:", np.abs(np.stack(states, axis=1) - out_rhn).max(), "  gradcheck:", rnnkit.gradcheck(rhn, x))
