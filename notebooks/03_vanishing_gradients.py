# %% [markdown]
# # 3. Vanishing gradients: RNN, LSTM and GRU
#
# BPTT multiplies the error signal by one Jacobian per step. For the Elman network
# $h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)$:
#
# $$\frac{\partial h_T}{\partial h_t} = \prod_{k=t+1}^{T} \frac{\partial h_k}{\partial h_{k-1}}
#   = \prod_{k=t+1}^{T} \operatorname{diag}(1 - h_k^2)\, W_{hh}, \qquad
#   \Big\| \frac{\partial h_T}{\partial h_t} \Big\| \le \big( \|W_{hh}\| \big)^{T-t},$$
#
# since $|\tanh'| \le 1$. When the largest singular value of $W_{hh}$ is below 1 the signal decays
# geometrically with the distance $T - t$ (Hochreiter 1991; Bengio, Simard & Frasconi 1994): the network cannot
# learn what happened long ago. Above 1 it may explode. The LSTM's cell state $c_t = f_t \odot c_{t-1} + i_t
# \odot g_t$ has the Jacobian $\partial c_t / \partial c_{t-1} = \operatorname{diag}(f_t)$ along its own path —
# no weight matrix, no squashing — so with forget gates near 1 the error is carried unchanged (the *constant
# error carousel*). The GRU's $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ has the same kind of path.
#
# We measure $\|\partial L / \partial h_t\|$ for every $t$ with a loss on the **last** step only.

# %%
import matplotlib.pyplot as plt
import numpy as np

import rnnkit
from rnnkit.models import ModelConfig, SequenceModel
from rnnkit.tasks.memory import ReberTask
from rnnkit.training.diagnostics import state_gradient_norms

rng = np.random.default_rng(0)


# %% [markdown]
# ## Measuring the error signal
#
# With `layer.record_state_grads = True`, each backward records $\|\partial L / \partial h_t\|$ per step; it is
# read from `layer.trace().state_grad_norms` (the mean over the batch of the per-row norms). The loss here is
# $L = \sum w \odot h_T$ with random $w$: only the last step receives an error directly.

# %%
def error_signal(layer, x):
    layer.record_state_grads = True
    out, _ = layer.forward(x)
    dy = np.zeros_like(out)
    dy[:, -1] = rng.standard_normal(dy[:, -1].shape)
    layer.backward(dy)
    return np.array(layer.trace().state_grad_norms)


T, H = 80, 32
x = rng.standard_normal((16, T, 8))
layers = {"RNN": rnnkit.RNN(8, H, dtype=np.float64, rng=3), "LSTM": rnnkit.LSTM(8, H, dtype=np.float64, rng=3),
          "GRU": rnnkit.GRU(8, H, dtype=np.float64, rng=3),
          "LSTM, forget bias 3": rnnkit.LSTM(8, H, forget_bias=3.0, dtype=np.float64, rng=3)}
curves = {name: error_signal(layer, x) for name, layer in layers.items()}

fig, ax = plt.subplots(figsize=(7, 3.6))
for name, norms in curves.items():
    ax.semilogy(np.arange(T), np.maximum(norms, 1e-300), label=name)
ax.set_xlabel("time step t (the loss is at the last step)")
ax.set_ylabel("‖∂L/∂h_t‖")
ax.set_title("The error signal travelling back through time (untrained layers)")
ax.grid(alpha=0.3, which="both")
ax.legend()
plt.show()
for name, norms in curves.items():
    print(f"{name:20}: ‖∂L/∂h_t‖ at t = 0 is {norms[0] / norms[-1]:.1e} of its value at the loss")

# %% [markdown]
# Untrained, with PyTorch's initialisation, all three lose the signal: the LSTM's forget gates start around
# $\sigma(0) = 0.5$, and $0.5^{80} \approx 10^{-24}$. What the gated cells have is a path the network *can*
# open: with the forget gate's bias at 3 ($f \approx \sigma(3) = 0.95$) the LSTM keeps a sizeable part of the
# error over all 80 steps, while no choice of the vanilla RNN's weights gives a stable carousel that is also
# sensitive to its inputs. Training sets the gates; the next sections show it.

# %% [markdown]
# ## The spectral radius decides
#
# For the vanilla RNN the decay rate is set by $W_{hh}$. Rescaling it to spectral radius
# $\rho(W_{hh}) = \max |\lambda|$ of 0.5, 1 and 1.5 (with small inputs, so $\tanh$ stays near its linear
# regime) moves the curve from fast decay to roughly constant to growth:

# %%
small = 0.1 * x
fig, ax = plt.subplots(figsize=(7, 3.6))
for radius in (0.5, 1.0, 1.5):
    rnn = rnnkit.RNN(8, H, dtype=np.float64, rng=3)
    w = rnn.weight_hh_l0.data
    w *= radius / np.abs(np.linalg.eigvals(w)).max()
    ax.semilogy(np.arange(T), error_signal(rnn, small), label=f"ρ(W_hh) = {radius}")
ax.set_xlabel("time step t")
ax.set_ylabel("‖∂L/∂h_t‖")
ax.grid(alpha=0.3, which="both")
ax.legend()
plt.show()

# %% [markdown]
# ## The embedded Reber grammar
#
# Hochreiter & Schmidhuber's (1997) first experiment. Strings come from the Reber grammar, wrapped as
# `B T <Reber string> T E` or `B P <Reber string> P E`: the network reads one symbol per step and must
# predict the set of symbols that can come next. Inside the inner string that is easy (the grammar is
# local), but the second-to-last symbol must repeat the *second* one — a dependency across the whole inner
# string, ten or more steps. A string counts as correct when at every step exactly the possible next symbols get
# an output above 0.5.

# %%
task = ReberTask(batch_size=16, seed=0)
for text, _ in task.train_strings[:5]:
    print(text)
print("lengths of the training strings:", min(len(s) for s, _ in task.train_strings), "…",
      max(len(s) for s, _ in task.train_strings))

# %% [markdown]
# An LSTM with 16 units (forget-gate bias 1, as in char-rnn and Keras), trained briefly with `rnnkit.fit`
# (Adam; 60 epochs of 16 batches; the task supplies the loss, binary cross-entropy on the multi-hot targets, and
# its own score):

# %%
model = SequenceModel(ModelConfig.for_task(task, cell="lstm", hidden_size=16, forget_bias=1.0), rng=0)
history = rnnkit.fit(model, task, epochs=60, lr=1e-2, progress=False)
scores = task.metrics(model)
print(f"after {history[-1]['step']} updates: {scores['train_strings_correct']:.0%} of the training strings and "
      f"{scores['test_strings_correct']:.0%} of the test strings predicted correctly")

# %% [markdown]
# And the error signal of the trained LSTM on the test strings (loss on the last step, the `E` that must follow
# the repeated symbol) — `rnnkit.training.diagnostics.state_gradient_norms` is what `rnnkit diagnose` plots:

# %%
norms = state_gradient_norms(model, task)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.semilogy(np.arange(len(norms)), norms)
ax.set_xlabel("time step t")
ax.set_ylabel("‖∂L/∂h_t‖")
ax.set_title("Trained LSTM on the embedded Reber grammar")
ax.grid(alpha=0.3, which="both")
plt.show()
