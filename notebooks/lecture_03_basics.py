# %% [markdown]
# # Lecture deck 003: RNN basics — truncated BPTT and multilayer RNNs
#
# Deck 003 introduces the recurrence $h_t = f(h_{t-1}, x_t)$, trains it by backpropagation through time, cuts long
# sequences into chunks (truncated BPTT), names the vanishing and exploding gradients, stacks RNNs into multilayer
# RNNs, and closes with the LSTM (cell candidate $\tilde{C}$) and the GRU (deck 001's notebook has their equations).
#
# ## Symbol map
#
# The deck writes column vectors without biases, so its matrices have rnnkit's layout (all decks:
# [the lectures' symbols and conventions](../../lectures/), `docs/lectures.md`).
#
# | deck 003 | rnnkit |
# |---|---|
# | $h_t = \tanh(W_h h_{t-1} + W_x x_t)$ | `RNN(I, H, bias=False)`: $W_h$ = `weight_hh_l0`, $W_x$ = `weight_ih_l0` |
# | $y_t = W_y h_t$ | `Linear(H, O, bias=False)`: $W_y$ = `weight` |
# | truncated BPTT (chunks of the time steps) | `stateful=True` with one forward per chunk; `rnnkit.fit(..., k1=, k2=)` |
# | multilayer RNNs | `RNN(..., num_layers=L)`: layer $l$ reads layer $l - 1$'s $h_t$ |
# | LSTM's cell candidate $\tilde{C}$ | `LSTM`'s gate g (rows i, f, **g**, o) |

# %%
import numpy as np

import rnnkit
from rnnkit import RNN

rng = np.random.default_rng(0)

# %% [markdown]
# ## The recurrence and BPTT
#
# $$h_t = \tanh(W_h h_{t-1} + W_x x_t), \qquad y_t = W_y h_t$$
#
# BPTT unrolls the recurrence over all time steps and sums each weight's gradient over them. By hand (rows are
# samples, so $W x$ is written $x W^\top$) against `RNN(bias=False)`:

# %%
I, H, T, B = 2, 6, 30, 3
rnn = RNN(I, H, bias=False, dtype=np.float64, rng=1)
W_x, W_h = rnn.weight_ih_l0.data, rnn.weight_hh_l0.data
x = rng.standard_normal((B, T, I))
h, hs = np.zeros((B, H)), []
for t in range(T):
    h = np.tanh(h @ W_h.T + x[:, t] @ W_x.T)
    hs.append(h)
out, _ = rnn.forward(x)
print("h_t equal to RNN:", np.abs(np.stack(hs, axis=1) - out).max())

# %% [markdown]
# ## Truncated BPTT
#
# "For longer sequences it requires huge amount of memory and computations": truncated BPTT splits the time steps
# into chunks, carries the state from one chunk to the next, and backpropagates only within a chunk. The outputs
# are the same; the gradient leaves out the paths that cross a chunk boundary. With `stateful=True` each forward
# starts from the last one's final state (and the gradient stops there):

# %%
dh = np.zeros((B, T, H))
dh[:, -1] = 1.0  # a loss on the last step only: Σ h_T
rnn.zero_grad()
rnn.forward(x)
rnn.backward(dh)
full = rnn.weight_hh_l0.grad.copy()

for k in (5, 10, 15):
    rnn.zero_grad()
    rnn.stateful = True
    pieces = []
    for start in range(0, T, k):
        piece, _ = rnn.forward(x[:, start:start + k])
        rnn.backward(dh[:, start:start + k])
        pieces.append(piece)
    rnn.stateful = False
    rnn.reset_state()
    same = np.abs(np.concatenate(pieces, axis=1) - out).max()
    gap = np.abs(rnn.weight_hh_l0.grad - full).max() / np.abs(full).max()
    print(f"chunks of {k:2}: outputs differ by {same:.1e}; ∂(Σh_T)/∂W_h differs from full BPTT by {gap:.1e} "
          "(relative)")

# %% [markdown]
# The longer the chunk, the closer the truncated gradient: the paths it leaves out are products of many Jacobians
# $\partial h_t / \partial h_{t-1} = \mathrm{diag}(1 - h_t^2)\,W_h$, which shrink here. `rnnkit.fit(..., k1=, k2=)`
# does the same in the trainer (a loss on each new $k_1$ steps, backpropagated through $k_2$).
#
# ## Vanishing and exploding gradients
#
# The size of $\delta h_t = \partial (\sum h_T) / \partial h_t$ as $T - t$ grows, for $W_h$ scaled to a small and a
# large spectral radius:

# %%
for scale in (0.5, 3.0):
    probe = RNN(I, H, bias=False, dtype=np.float64, rng=2)
    w = probe.weight_hh_l0.data
    w *= scale / np.abs(np.linalg.eigvals(w)).max()
    states, _ = probe.forward(x[:1], np.full((1, 1, H), 0.1))
    grad, norms = np.ones(H), []  # δh_T of the loss Σ h_T, then back through ∂h_t/∂h_{t-1} = diag(1 − h_t²) W_h
    for t in range(T - 1, 0, -1):
        grad = (grad * (1 - states[0, t] ** 2)) @ w
        norms.append(np.linalg.norm(grad))
    print(f"spectral radius {scale}: ‖δh_t‖ at T − t = 1, 10, 29:",
          " ".join(f"{norms[i]:.1e}" for i in (0, 9, 28)))

# %% [markdown]
# A radius below one makes the gradient vanish geometrically; a large one makes it explode (the saturation factor
# $1 - h_t^2$ slows the growth but does not stop it here). The LSTM's additive cell update
# $C_t = f_t \odot C_{t-1} + i_t \odot \tilde{C}_t$ is the deck's answer.
#
# ## Multilayer RNNs
#
# A multilayer RNN stacks recurrences: layer 1 reads $x_t$, layer $l$ reads layer $l - 1$'s $h_t$. `RNN(...,
# num_layers=2)` equals two one-layer RNNs applied in turn:

# %%
deep = RNN(I, H, num_layers=2, bias=False, dtype=np.float64, rng=3)
first, second = RNN(I, H, bias=False, dtype=np.float64, rng=4), RNN(H, H, bias=False, dtype=np.float64, rng=5)
for layer, k in ((first, 0), (second, 1)):
    layer.weight_ih_l0.data[...] = getattr(deep, f"weight_ih_l{k}").data
    layer.weight_hh_l0.data[...] = getattr(deep, f"weight_hh_l{k}").data
stacked = second.forward(first.forward(x)[0])[0]
print("two layers by hand equal RNN(num_layers=2):", np.abs(stacked - deep.forward(x)[0]).max())
print("gradcheck of the two-layer RNN:", rnnkit.gradcheck(deep, x[:, :5]))
