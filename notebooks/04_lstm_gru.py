# %% [markdown]
# # 4. LSTM and GRU: the gate equations next to the code
#
# ## One LSTM step
#
# PyTorch's LSTM (and rnnkit's) fuses the four gates into one matrix product and splits the result in the order
# **i, f, g, o**:
#
# $$a = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh} = [a_i, a_f, a_g, a_o]$$
#
# $$i = \sigma(a_i), \quad f = \sigma(a_f), \quad g = \tanh(a_g), \quad o = \sigma(a_o)$$
#
# $$c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)$$
#
# The input gate $i$ decides how much of the candidate $g$ is written, the forget gate $f$ how much of the old
# cell is kept, the output gate $o$ how much of the cell is shown.

# %%
import matplotlib.pyplot as plt
import numpy as np

import rnnkit
from rnnkit import teaching

rng = np.random.default_rng(0)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
    a = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    cache = {"x": x, "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "c_new": c_new}
    return h_new, c_new, cache


B, I, H = 3, 4, 5
cell = rnnkit.LSTMCell(I, H, dtype=np.float64, rng=1)
x, h0, c0 = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
weights = (cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data, cell.bias_hh.data)
h1, c1, cache = lstm_step(x, h0, c0, *weights)
h1_rnnkit, c1_rnnkit = cell.forward(x, (h0, c0))
print("h_t equal:", np.allclose(h1, h1_rnnkit), "  c_t equal:", np.allclose(c1, c1_rnnkit))

# %% [markdown]
# ## Its backward
#
# Given $\delta h_t$ and $\delta c_t$ (from the output at $t$ and from step $t+1$), walk the forward
# backwards. $h_t = o \odot \tanh(c_t)$ gives
#
# $$\delta a_o = \delta h_t \odot \tanh(c_t) \odot o (1 - o), \qquad
#   \delta c = \delta c_t + \delta h_t \odot o \odot (1 - \tanh^2 c_t),$$
#
# then $c_t = f \odot c_{t-1} + i \odot g$ gives
#
# $$\delta a_i = \delta c \odot g \odot i (1 - i), \quad \delta a_f = \delta c \odot c_{t-1} \odot f (1 - f),
#   \quad \delta a_g = \delta c \odot i \odot (1 - g^2), \quad \delta c_{t-1} = \delta c \odot f,$$
#
# and the fused pre-activation $\delta a = [\delta a_i, \delta a_f, \delta a_g, \delta a_o]$ flows into the
# matrix products: $\delta x = \delta a\, W_{ih}$, $\delta h_{t-1} = \delta a\, W_{hh}$,
# $\delta W_{ih} = \delta a^\top x$, $\delta W_{hh} = \delta a^\top h_{t-1}$, $\delta b = \sum_n \delta a_n$.
#
# **Exercise.** Write `lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh)` returning
# `(dx, dh, dc, dweight_ih, dweight_hh, dbias)`, with the `cache` of `lstm_step` above.

# %% tags=["exercise"]
def lstm_step_backward(dh_new, dc_new, cache, weight_ih, weight_hh):
    """Backward of one LSTM step (gate order i, f, g, o) → (δx, δh_{t-1}, δc_{t-1}, δW_ih, δW_hh, δb)."""
    ### BEGIN SOLUTION
    i, f, g, o, c_new = cache["i"], cache["f"], cache["g"], cache["o"], cache["c_new"]
    tanh_c = np.tanh(c_new)
    da_o = dh_new * tanh_c * o * (1 - o)
    dc = dc_new + dh_new * o * (1 - tanh_c**2)
    da_i = dc * g * i * (1 - i)
    da_f = dc * cache["c"] * f * (1 - f)
    da_g = dc * i * (1 - g**2)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    dx = da @ weight_ih
    dh = da @ weight_hh
    return dx, dh, dc * f, da.T @ cache["x"], da.T @ cache["h"], da.sum(axis=0)
    ### END SOLUTION


# %%
teaching.check("lstm_step_backward", lstm_step_backward)

# %% [markdown]
# `LSTMCell`'s own backward, for comparison (`rnnkit.recurrent.LSTMStep` holds the same equations in its
# docstring, and a fused compiled kernel runs them):

# %%
dh1, dc1 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
dx_rnnkit, (dh0_rnnkit, dc0_rnnkit) = cell.backward((dh1, dc1))
dx, dh0, dc0, dw_ih, dw_hh, db = lstm_step_backward(dh1, dc1, cache, cell.weight_ih.data, cell.weight_hh.data)
print("δx, δh, δc, δW_ih, δW_hh equal:", np.allclose(dx, dx_rnnkit), np.allclose(dh0, dh0_rnnkit),
      np.allclose(dc0, dc0_rnnkit), np.allclose(dw_ih, cell.weight_ih.grad), np.allclose(dw_hh, cell.weight_hh.grad))


# %% [markdown]
# ## One GRU step, and where the reset gate goes
#
# The GRU (Cho et al. 2014) has two gates, in PyTorch's order **r, z, n**:
#
# $$r = \sigma(x W_{ir}^\top + b_{ir} + h_{t-1} W_{hr}^\top + b_{hr}), \qquad
#   z = \sigma(x W_{iz}^\top + b_{iz} + h_{t-1} W_{hz}^\top + b_{hz})$$
#
# $$h_t = (1 - z) \odot n + z \odot h_{t-1}$$
#
# and two ways to apply the reset gate $r$ in the candidate $n$:
#
# * **reset after** the matrix product (PyTorch, cuDNN, Keras's default, `reset_after=True`):
#   $n = \tanh\big(x W_{in}^\top + b_{in} + r \odot (h_{t-1} W_{hn}^\top + b_{hn})\big)$ — one fused recurrent
#   product per step, for all three gates;
# * **reset before** it (the paper's form, `reset_after=False`):
#   $n = \tanh\big(x W_{in}^\top + b_{in} + (r \odot h_{t-1}) W_{hn}^\top + b_{hn}\big)$ — the product for $n$
#   has to wait for $r$: two recurrent products per step.
#
# Same parameters, different functions.

# %%
def gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh, reset_after=True):
    xr, xz, xn = np.split(x @ weight_ih.T + bias_ih, 3, axis=-1)
    w_hr, w_hz, w_hn = np.split(weight_hh, 3)
    b_hr, b_hz, b_hn = np.split(bias_hh, 3)
    r = sigmoid(xr + h @ w_hr.T + b_hr)
    z = sigmoid(xz + h @ w_hz.T + b_hz)
    if reset_after:
        n = np.tanh(xn + r * (h @ w_hn.T + b_hn))
    else:
        n = np.tanh(xn + (r * h) @ w_hn.T + b_hn)
    return (1 - z) * n + z * h


gru = rnnkit.GRUCell(I, H, dtype=np.float64, rng=2)
gru_before = rnnkit.GRUCell(I, H, dtype=np.float64, rng=2, reset_after=False)  # the same weights (same seed)
gru_weights = (gru.weight_ih.data, gru.weight_hh.data, gru.bias_ih.data, gru.bias_hh.data)
after, before = gru_step(x, h0, *gru_weights), gru_step(x, h0, *gru_weights, reset_after=False)
print("reset after  == GRUCell:                   ", np.allclose(after, gru.forward(x, h0)))
print("reset before == GRUCell(reset_after=False):", np.allclose(before, gru_before.forward(x, h0)))
print(f"the two placements differ by up to {np.abs(after - before).max():.3f}")
seqs = rng.standard_normal((2, 6, I))
print(f"gradcheck, reset after: {rnnkit.gradcheck(rnnkit.GRU(I, H, rng=2), seqs):.1e}, "
      f"reset before: {rnnkit.gradcheck(rnnkit.GRU(I, H, reset_after=False, rng=2), seqs):.1e}")
gru.discard_saved()
gru_before.discard_saved()

# %% [markdown]
# Over a whole sequence the two stay close but not equal; either trains as well as the other in practice. The
# reset-after form is what `torch.nn.GRU` computes, so only it can be exchanged with PyTorch
# (`rnnkit.to_torch`); the reset-before form is the one in most lecture notes.

# %%
xs = rng.standard_normal((1, 40, I))
out_after, _ = rnnkit.GRU(I, H, rng=2, dtype=np.float64).forward(xs)
out_before, _ = rnnkit.GRU(I, H, rng=2, dtype=np.float64, reset_after=False).forward(xs)
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(out_after[0, :, 0], label="reset after (PyTorch)")
ax.plot(out_before[0, :, 0], "--", label="reset before (Cho et al. 2014)")
ax.set_xlabel("time step t")
ax.set_ylabel("h_t, unit 0")
ax.legend()
plt.show()

# %% [markdown]
# ## Looking at the gates
#
# `layer.trace()` is a read-only view of the last forward: the states after every step and the gate
# activations by name. The LSTM's gates over a random sequence, one row per hidden unit:

# %%
lstm = rnnkit.LSTM(I, H, dtype=np.float64, rng=1)
lstm.forward(rng.standard_normal((1, 30, I)))
gates = lstm.trace().gates
fig, axes = plt.subplots(1, 4, figsize=(11, 2.2), sharey=True)
for ax, name in zip(axes, "ifgo"):
    ax.imshow(gates[name][0].T, aspect="auto", cmap="viridis", vmin=-1 if name == "g" else 0, vmax=1)
    ax.set_title(f"gate {name}")
    ax.set_xlabel("t")
axes[0].set_ylabel("unit")
plt.show()
lstm.discard_saved()
