# %% [markdown]
# # Lecture deck 000: RNN and LSTM layers in a hand-written framework
#
# The exercise deck builds an Elman cell and an LSTM cell as *composites* of the framework's fully connected
# layers and activations, with the weights exposed as members, a memory switch for truncated BPTT, and an LSTM
# with a trainable output layer. This notebook follows the deck in its own notation, with rnnkit's `Elman` and
# `LSTMNet` (`rnnkit.recurrent.elman`) as the finished framework.
#
# ## Symbol map
#
# The deck writes row vectors times matrices ($x_t \cdot W$); rnnkit keeps PyTorch's layouts, so a deck matrix is
# the transpose of rnnkit's parameter. The whole table for the five decks is in
# [the lectures' symbols and conventions](../../lectures/) (`docs/lectures.md`).
#
# | deck 000 | meaning | rnnkit |
# |---|---|---|
# | $W_{xh}$ (I, H) | input → hidden | `Elman.W_xh` = `rnn.weight_ih_l0`ᵀ (a view, assignable) |
# | $W_{hh}$ (H, H) | hidden → hidden | `Elman.W_hh` = `rnn.weight_hh_l0`ᵀ |
# | $W_{hy}$ (H, O) | hidden → output | `Elman.W_hy` = `out.weight`ᵀ |
# | $b_h$ | the hidden bias | `Elman.b_h` = `bias_ih_l0 + bias_hh_l0` |
# | $b_y$ | the output bias | `Elman.b_y` = `out.bias` |
# | $W_h$ over $\tilde{x}_t = [x_t, h_{t-1}, 1]$ | the "single fully connected layer" | `Elman.weights`, its gradient `gradient_weights` |
# | the memory switch | reuse the last hidden state | `Elman.memorize` (the library's `stateful`), `reset_state()` |
# | $k_1$, $k_2$ | chunk length, TBPTT length | the length of one forward's chunk; `rnnkit.fit(..., k1=, k2=)` |
# | $f'(x) = f(x)(1 - f(x))$, $1 - f(x)^2$ | derivatives from the activation | `recurrent.cell.dsigmoid`, `dtanh` |
#
# $$h_t = \tanh(h_{t-1} \cdot W_{hh} + x_t \cdot W_{xh} + b_h), \qquad y_t = \sigma(h_t \cdot W_{hy} + b_y)$$

# %%
import functools

import numpy as np

import rnnkit
from rnnkit import Elman, LSTMNet
from rnnkit.recurrent.cell import dsigmoid, dtanh

rng = np.random.default_rng(0)

# %% [markdown]
# ## Derivatives "solely expressed in terms of the activation"
#
# The deck's first slides: for $f(x) = \sigma(x)$, $f'(x) = f(x)(1 - f(x))$, and for $f(x) = \tanh(x)$,
# $f'(x) = 1 - f(x)^2$. So a layer's backward needs only the output it stored in its forward — every backward in
# rnnkit is written this way. Against central differences:

# %%
a = np.linspace(-4, 4, 9)
eps = 1e-6
sig = 1 / (1 + np.exp(-a))
numeric_sig = (1 / (1 + np.exp(-(a + eps))) - 1 / (1 + np.exp(-(a - eps)))) / (2 * eps)
numeric_tanh = (np.tanh(a + eps) - np.tanh(a - eps)) / (2 * eps)
print("σ'    from σ(a):   ", np.abs(dsigmoid(sig, np.empty_like(a)) - numeric_sig).max())
print("tanh' from tanh(a):", np.abs(dtanh(np.tanh(a), np.empty_like(a)) - numeric_tanh).max())

# %% [markdown]
# ## The Elman cell, by hand in the deck's notation
#
# The deck asks for the weights as members with getters and setters. `Elman` gives the deck's matrices as views of
# its parameters, so a forward written with them equals the layer's:

# %%
I, H, O, T, B = 3, 4, 2, 6, 2
net = Elman(I, H, O, dtype=np.float64, rng=1)
x = rng.standard_normal((B, T, I))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def elman_forward(x, W_xh, W_hh, W_hy, b_h, b_y, h=None):
    h = np.zeros((x.shape[0], W_hh.shape[0])) if h is None else h
    hs, ys = [], []
    for t in range(x.shape[1]):
        h = np.tanh(h @ W_hh + x[:, t] @ W_xh + b_h)
        hs.append(h)
        ys.append(sigmoid(h @ W_hy + b_y))
    return np.stack(ys, axis=1), np.stack(hs, axis=1)


y_hand, h_hand = elman_forward(x, net.W_xh, net.W_hh, net.W_hy, net.b_h, net.b_y)
y, _ = net.forward(x)
print("y_t equal to Elman.forward:", np.abs(y_hand - y).max())

# %% [markdown]
# The deck's second form uses *one* fully connected layer: $h_t = \tanh(\tilde{x}_t \cdot W_h)$ with
# $\tilde{x}_t = [x_t, h_{t-1}, 1]$, so $W_h = [W_{xh}; W_{hh}; b_h]$ stacked by rows. That is `net.weights`
# (shape (I + H + 1, H)); assigning `net.weights = W` writes all three at once (the setter the deck asks for).

# %%
W_h = net.weights
h_prev = np.zeros((B, H))
for t in range(T):
    x_tilde = np.concatenate([x[:, t], h_prev, np.ones((B, 1))], axis=1)
    h_prev = np.tanh(x_tilde @ W_h)
print("W_h shape", W_h.shape, "  last h_t equal:", np.abs(h_prev - h_hand[:, -1]).max())

# %% [markdown]
# ## Backward: sum, multiply, copy
#
# The deck's rules: the gradient of a sum is copied to both inputs, of a product is the upstream gradient times the
# *other* input, and a value copied to two places receives the sum of both gradients. With $E = \sum_t E_t$ the
# gradient of $W_h$ is $\sum_t \tilde{x}_t^\top \delta a_t$ with $\delta a_t = \delta h_t \odot (1 - h_t^2)$ and
# $\delta h_t$ the sum of what comes from $y_t$ and from step $t + 1$. Written out and compared with
# `net.gradient_weights` (rnnkit's BPTT):

# %%
dy = rng.standard_normal((B, T, O))
net.zero_grad()
net.forward(x)
net.backward(dy)

dW_h, dW_hy, dh_next = np.zeros_like(W_h), np.zeros_like(net.W_hy), np.zeros((B, H))
for t in reversed(range(T)):
    y_t = y_hand[:, t]
    dz = dy[:, t] * y_t * (1 - y_t)  # σ' from the activation
    dW_hy += h_hand[:, t].T @ dz
    dh = dz @ net.W_hy.T + dh_next  # copy: the output's gradient plus the next step's
    da = dh * (1 - h_hand[:, t] ** 2)  # tanh' from the activation
    h_before = h_hand[:, t - 1] if t else np.zeros((B, H))
    x_tilde = np.concatenate([x[:, t], h_before, np.ones((B, 1))], axis=1)
    dW_h += x_tilde.T @ da
    dh_next = da @ net.W_hh.T
print("∂E/∂W_h  equal:", np.abs(dW_h - net.gradient_weights).max())
print("∂E/∂W_hy equal:", np.abs(dW_hy - net.out.weight.grad.T).max())

# %% [markdown]
# ## The memory switch and truncated BPTT
#
# "Store the last hidden state and implement a method switching whether this state is reused in subsequent forward
# passes": `net.memorize = True`. A long sequence fed in chunks of $k_1$ steps then gives the same outputs as fed at
# once; the gradient of each chunk stops at its start (the deck's TBPTT with $k_1 = k_2$). `reset_state()` forgets
# the state (a new stream); `memorize = False` also forgets it.

# %%
long_x = rng.standard_normal((B, 12, I))
whole, _ = net.forward(long_x)
net.memorize = True
k1 = 4
chunks = [net.forward(long_x[:, s:s + k1])[0] for s in range(0, 12, k1)]
print("chunked outputs equal the whole sequence's:", np.abs(np.concatenate(chunks, axis=1) - whole).max())
net.reset_state()
print("after reset_state the next chunk starts from zero:",
      np.abs(net.forward(long_x[:, :k1])[0] - whole[:, :k1]).max())
net.memorize = False
try:
    net.memorise = True  # a misspelt switch is an error, not silently ignored
except rnnkit.errors.ConfigError as e:
    print("ConfigError:", e)

# %% [markdown]
# ## Optimizer, initializer and regularizer attached to the layer
#
# The framework's layers carry their optimizer (stepped after each backward), their initializers and a
# regulariser whose loss is added to the data loss. Trained this way, the Elman net learns to output the previous
# step's input bit ($y_t = x_{t-1}$), with the deck's loss summed over time:

# %%
net = Elman(1, 8, 1, dtype=np.float64, rng=2)
net.initialize(rnnkit.init.xavier_uniform, 0.0)
net.optimizer = functools.partial(rnnkit.SGD, lr=0.1)
net.regularizer = rnnkit.recurrent.elman.L2Regularizer(1e-4)
loss = rnnkit.BCELoss(reduction="sum")
bits = (rng.random((16, 10, 1)) > 0.5).astype(float)
target = np.concatenate([np.zeros((16, 1, 1)), bits[:, :-1]], axis=1)
for epoch in range(300):
    net.zero_grad()  # gradients accumulate with += (rnnkit's contract); the optimizer only steps
    y, _ = net.forward(bits)
    value = loss(y, target) / len(bits) + net.regularization_loss()
    net.backward(loss.backward() / len(bits))  # the attached SGD steps here
    if epoch % 100 == 0 or epoch == 299:
        print(f"epoch {epoch:3}  loss {value:.4f}  accuracy {((y > 0.5) == target).mean():.2f}")

# %% [markdown]
# ## The LSTM with its output layer
#
# "Unlike in the lecture, the output gate is a trainable fully connected layer to allow different output sizes":
# `LSTMNet` is an `LSTM` and the output layer $y_t = \sigma(h_t \cdot W_{hy} + b_y)$. Its $W_h$ holds the four
# gates side by side, $4H$ columns, in rnnkit's order i, f, g, o (the deck's gate "a" is rnnkit's g).

# %%
lstm_net = LSTMNet(I, H, 5, dtype=np.float64, rng=3)
y, (h_n, c_n) = lstm_net.forward(x)
print("output", y.shape, " W_h", lstm_net.weights.shape, " gates per row: 4 ×", H)
print("gradcheck of LSTMNet:", rnnkit.gradcheck(lstm_net, x))
