# %% [markdown]
# # 7. Deeper transitions and newer cells, and regularising the recurrence
#
# The LSTM and GRU are from 1997 and 2014. This notebook looks at four later ideas, each a cell of rnnkit with
# the same contract (forward, hand-derived backward, gradient-checked): the recurrent highway network, the
# Mogrifier LSTM, minGRU with its parallel scan, and the layer-normalised LSTM — and then at the regularisers that
# act on the recurrence itself.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import rnnkit

rng = np.random.default_rng(0)
x = rng.standard_normal((4, 30, 6))

# %% [markdown]
# ## Recurrent highway networks: depth *within* a time step
#
# An RHN (Zilly et al. 2017) makes the transition from $s_{t-1}$ to $s_t$ deep: $L$ highway micro-cells per
# step, with $s^0 = s_{t-1}$ and, for $l = 1, \dots, L$ (the input enters the first only),
#
# $$h^l = \tanh\big(s^{l-1} R_{l,h}^\top + b_{l,h} + [l = 1]\, x_t W_{h}^\top\big), \qquad
#   \tau^l = \sigma\big(s^{l-1} R_{l,\tau}^\top + b_{l,\tau} + [l = 1]\, x_t W_{\tau}^\top\big),$$
#
# $$s^l = h^l \odot \tau^l + s^{l-1} \odot (1 - \tau^l), \qquad s_t = s^L .$$
#
# The transform gate $\tau$ starts mostly closed (bias $-2$), so each micro-cell starts close to the identity
# and the deep transition still passes gradients.

# %%
rhn = rnnkit.RHN(6, 16, depth=3, rng=0)
out, s_n = rhn.forward(x)
print("output", out.shape, " parameters:", [(n, p.shape) for n, p in rhn.named_parameters()])
gates = rhn.trace().gates
print("gates recorded:", list(gates), " mean transform gate of micro-cell 1:",
      f"{gates[list(gates)[1]].mean():.3f} (σ(−2) = {1 / (1 + np.exp(2)):.3f})")
rhn.discard_saved()
print(f"gradcheck: {rnnkit.gradcheck(rnnkit.RHN(3, 4, depth=3, rng=0), rng.standard_normal((2, 5, 3))):.1e}")

# %% [markdown]
# ## The Mogrifier LSTM: let the input and the state gate each other first
#
# Before the ordinary LSTM step, the Mogrifier (Melis et al. 2020) runs $r$ rounds in which $x$ and $h$
# rescale each other, starting from $x^{-1} = x_t$, $h^0 = h_{t-1}$:
#
# $$x^i = 2\sigma\big(h^{i-1} Q_i^\top\big) \odot x^{i-2} \quad (i \text{ odd}), \qquad
#   h^i = 2\sigma\big(x^{i-1} R_i^\top\big) \odot h^{i-2} \quad (i \text{ even}),$$
#
# then the LSTM equations on the last $x$ and $h$. With $r = 0$ rounds it **is** the LSTM — which we can check
# by loading an LSTM's state dict into it (PyTorch's names and layout):

# %%
lstm = rnnkit.LSTM(6, 16, dtype=np.float64, rng=0)
mog0 = rnnkit.MogrifierLSTM(6, 16, rounds=0, dtype=np.float64, rng=1)
mog0.load_state_dict(lstm.state_dict())
with rnnkit.no_grad():
    print("Mogrifier with 0 rounds == LSTM:", np.allclose(mog0.forward(x)[0], lstm.forward(x)[0]))
mog = rnnkit.MogrifierLSTM(6, 16, rounds=5, rng=0)
print("extra parameters of 5 rounds:", [(n, p.shape) for n, p in mog.named_parameters() if "_m" in n])
print(f"gradcheck: {rnnkit.gradcheck(rnnkit.MogrifierLSTM(3, 4, rounds=4, rng=0), rng.standard_normal((2, 5, 3))):.1e}")

# %% [markdown]
# ## minGRU and the parallel scan
#
# minGRU (Feng et al. 2024) drops the state from the gates: $z_t = \sigma(x_t W_z^\top + b_z)$,
# $\tilde h_t = x_t W_h^\top + b_h$ and
#
# $$h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t = a_t \odot h_{t-1} + b_t .$$
#
# All $a_t$ and $b_t$ can be computed at once, and the linear recurrence has a closed form. With
# $a^\ast_t = \sum_{s \le t} \log a_s$:
#
# $$h_t = e^{a^\ast_t} \Big( h_0 + \sum_{s \le t} b_s\, e^{-a^\ast_s} \Big),$$
#
# a cumulative sum — computable for all $t$ in parallel (a *scan*), in log space for stability. rnnkit's
# `MinGRU(mode="scan")` does this with no Python loop over time; `mode="sequential"` is the ordinary step-by-step
# runner. They compute the same function:

# %%
mingru = rnnkit.MinGRU(6, 16, dtype=np.float64, rng=0)  # sequential
seq_out, _ = mingru.forward(x)
dy = rng.standard_normal(seq_out.shape)
seq_dx, _ = mingru.backward(dy)
seq_grad = mingru.weight_ih_l0.grad.copy()
mingru.zero_grad()
mingru.mode = "scan"  # the same layer, the same weights, the other runner
scan_out, _ = mingru.forward(x)
scan_dx, _ = mingru.backward(dy)
print(f"outputs   max |scan − sequential| = {np.abs(scan_out - seq_out).max():.1e}")
print(f"δx        max |scan − sequential| = {np.abs(scan_dx - seq_dx).max():.1e}")
print(f"δW_ih     max |scan − sequential| = {np.abs(mingru.weight_ih_l0.grad - seq_grad).max():.1e}")

# %% [markdown]
# The hand-written loop, for good measure — three lines:

# %%
z, h_tilde = np.split(x @ mingru.weight_ih_l0.data.T + mingru.bias_ih_l0.data, 2, axis=-1)
h = np.zeros((4, 16))
for t in range(x.shape[1]):
    sig = 1 / (1 + np.exp(-z[:, t]))
    h = (1 - sig) * h + sig * h_tilde[:, t]
print("hand loop == scan at the last step:", np.allclose(h, scan_out[:, -1]))

# %% [markdown]
# On a CPU the scan is not faster than the compiled sequential loop (it does more arithmetic; it is made for
# parallel hardware — see `benchmarks/min_rnn_scan.py`), but its cost does not grow with Python's per-step
# overhead:

# %%
long_x = rng.standard_normal((8, 500, 6))
for mode in ("sequential", "scan"):
    layer = rnnkit.MinGRU(6, 64, mode=mode, rng=0)
    with rnnkit.no_grad():
        layer.forward(long_x)  # warm up (compiles the sequential kernel once)
        start = time.perf_counter()
        layer.forward(long_x)
    print(f"{mode:10} forward of 8 × 500 steps: {1e3 * (time.perf_counter() - start):6.1f} ms")

# %% [markdown]
# ## Layer normalisation inside the cell
#
# Layer normalisation (Ba, Kiros & Hinton 2016) normalises each row $v$ of $K$ features,
# $\operatorname{LN}(v; \gamma, \beta) = \gamma \odot (v - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta$ with
# $\mu, \sigma^2$ the mean and variance of $v$. The layer-normalised LSTM applies it to the input and recurrent
# pre-activations separately and to the cell:
#
# $$a = \operatorname{LN}(x_t W_{ih}^\top; \gamma_x, \beta_x) + \operatorname{LN}(h_{t-1} W_{hh}^\top;
#   \gamma_h, \beta_h) + b, \qquad c_t = f \odot c_{t-1} + i \odot g, \qquad
#   h_t = o \odot \tanh\big(\operatorname{LN}(c_t; \gamma_c, \beta_c)\big).$$
#
# Because $\operatorname{LN}(\lambda v) = \operatorname{LN}(v)$ for any $\lambda > 0$ (up to the small
# $\epsilon$), the layer hardly cares about the scale of its input — a quick way to see the normalisation at work:

# %%
ln_lstm = rnnkit.LayerNormLSTM(6, 16, dtype=np.float64, rng=0)
plain = rnnkit.LSTM(6, 16, dtype=np.float64, rng=0)
with rnnkit.no_grad():
    ln_1, ln_10 = ln_lstm.forward(x)[0], ln_lstm.forward(10 * x)[0]
    lstm_1, lstm_10 = plain.forward(x)[0], plain.forward(10 * x)[0]
print(f"LayerNormLSTM: max |h(10 x) − h(x)| = {np.abs(ln_10 - ln_1).max():.1e}")
print(f"LSTM:          max |h(10 x) − h(x)| = {np.abs(lstm_10 - lstm_1).max():.2f}")
print("parameters:", [n for n, _ in ln_lstm.named_parameters()])
seqs = rng.standard_normal((2, 5, 3))
print(f"gradcheck LayerNormLSTM: {rnnkit.gradcheck(rnnkit.LayerNormLSTM(3, 4, rng=0), seqs):.1e},",
      f"LayerNormGRU: {rnnkit.gradcheck(rnnkit.LayerNormGRU(3, 4, rng=0), seqs):.1e}")

# %% [markdown]
# ## Regularising the recurrence
#
# An ordinary `Dropout` layer draws a new mask for every element; applied to $h_{t-1}$ at every step it would
# wipe out the memory. The regularisers of `layer.regularize(...)` draw masks with structure over time, once per
# call, in training mode only:
#
# * **variational dropout** (Gal & Ghahramani 2016): one mask $m_x$ on the input features and one mask $m_h$ on
#   $h_{t-1}$ where it enters the recurrent product, the **same at every step**
#   (`dropout_input=`, `dropout_recurrent=`);
# * **weight drop** (Merity et al. 2017): DropConnect on $W_{hh}$, one mask $M$ per call, $\tilde W_{hh} = W_{hh}
#   \odot M / (1 - p)$ (`weight_drop=`);
# * **zoneout** (Krueger et al. 2017): each unit keeps its previous value with probability $z$,
#   $s_t = d_t \odot s_{t-1} + (1 - d_t) \odot \tilde s_t$ with $d_t \sim \operatorname{Bernoulli}(z)$; in
#   evaluation the expectation $s_t = z\, s_{t-1} + (1 - z)\, \tilde s_t$ (`zoneout=`).

# %%
reg = rnnkit.LSTM(6, 16, dtype=np.float64, rng=0).regularize(dropout_input=0.2, dropout_recurrent=0.25,
                                                               zoneout=0.1, weight_drop=0.3)
reg.train()
with rnnkit.no_grad():
    a, b = reg.forward(x)[0], reg.forward(x)[0]
    print(f"training: two calls differ (new masks each call): max |a − b| = {np.abs(a - b).max():.2f}")
    reg.eval()
    a, b = reg.forward(x)[0], reg.forward(x)[0]
    print(f"evaluation: deterministic: max |a − b| = {np.abs(a - b).max():.1e}")

# %% [markdown]
# The masks are part of the forward, so the backward is still exact: `gradcheck` copies the layer with its random
# generator for every evaluation, so every evaluation draws the same masks, and the analytic gradient matches the
# numerical one with all four regularisers on.

# %%
small = rnnkit.LSTM(3, 4, rng=0).regularize(dropout_input=0.2, dropout_recurrent=0.25, zoneout=0.1,
                                             weight_drop=0.3)
print(f"gradcheck with every regulariser on: {rnnkit.gradcheck(small, rng.standard_normal((2, 6, 3))):.1e}")

# %% [markdown]
# Zoneout in a picture: with $z = 0.5$, in training, many units simply hold their value from one step to the next.

# %%
zone = rnnkit.GRU(6, 8, rng=0).regularize(zoneout=0.5)
zone.train()
out, _ = zone.forward(x[:1])
zone.discard_saved()
held = np.isclose(out[0, 1:], out[0, :-1])
fig, ax = plt.subplots(figsize=(8, 2.4))
ax.imshow(held.T, cmap="Greys", aspect="auto")
ax.set_xlabel("time step t")
ax.set_ylabel("unit")
ax.set_title(f"units that kept h_(t-1) (black): {held.mean():.0%}")
plt.show()
