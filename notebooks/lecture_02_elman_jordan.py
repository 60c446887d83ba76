# %% [markdown]
# # Lecture deck 002: Elman and Jordan networks
#
# Deck 002 presents the Elman network (hidden state fed back) and the Jordan network (output fed back), the
# forward pass and BPTT's backward pass with $E = \frac{1}{2}\sum (d - y)^2$ summed over time, epochwise versus
# continuous training, and the bidirectional RNN's algorithm. This notebook follows it in its notation.
#
# ## Symbol map
#
# The deck writes column vectors, $\vec{h}(t) = f^H(W^{IH}\vec{x}(t) + W^{HH}\vec{h}(t-1))$, so its matrices have
# rnnkit's (PyTorch's) layout; the entry $w_{ij}^{IH}$ (input $i$ → hidden $j$) is `weight_ih_l0[j, i]`. All decks:
# [the lectures' symbols and conventions](../../lectures/) (`docs/lectures.md`).
#
# | deck 002 | rnnkit |
# |---|---|
# | $W^{IH}$ ($w_{ij}^{IH}$) | `RNN.weight_ih_l0` (H, I) |
# | $W^{HH}$ ($w_{jj}^{HH}$) | `RNN.weight_hh_l0` (H, H) |
# | $W^{HO}$ ($w_{jK}^{HO}$) | `Elman.out.weight` (O, H) |
# | $h_{in}(t)$, $y_{in}(t)$ | the pre-activations of the hidden and output units |
# | $f^H$, $f^O$ | `RNN(nonlinearity="sigmoid")`, `Elman(output_activation="sigmoid" / "softmax")` |
# | no biases | `RNN(bias=False)`, `Elman(..., bias=False)` and `b_y = 0` |
# | $\delta^O_K(t)$, $\delta^H_j(t)$ | the gradients of $y_{in}(t)$ and $h_{in}(t)$ |
# | $E_{tot}(t_s, t_f) = \sum_t E_{ins}(t)$, $E = \frac{1}{2}\sum_K (d_K - y_K)^2$ | `MSELoss(reduction="sum", half=True)` |
# | continuous / epochwise training | `fit(..., reset_state="never", shuffle=False)` / the default |
# | the BRNN | `RNN(..., bidirectional=True)`: outputs [forward \| backward] |

# %%
import numpy as np

import rnnkit
from rnnkit import Elman, Jordan, MSELoss

rng = np.random.default_rng(0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


# %% [markdown]
# ## The Elman network's forward pass
#
# $$h_{in_j}(t) = \sum_i w_{ij}^{IH} x_i(t) + \sum_j w_{jj}^{HH} h_j(t-1), \quad h_j(t) = f^H(h_{in_j}(t)),
#   \quad h_j(0) = 0$$
#
# $$y_{in_K}(t) = \sum_j w_{jK}^{HO} h_j(t), \qquad y_K(t) = f^O(y_{in_K}(t))$$
#
# with sigmoids for $f^H$ and $f^O$ and no biases, as in the deck:

# %%
I, H, O, T, B = 3, 5, 2, 7, 4
net = Elman(I, H, O, nonlinearity="sigmoid", bias=False, dtype=np.float64, rng=1)
net.b_y = np.zeros(O)
W_IH, W_HH, W_HO = net.rnn.weight_ih_l0.data, net.rnn.weight_hh_l0.data, net.out.weight.data
x = rng.standard_normal((B, T, I))
d = rng.random((B, T, O))  # targets d_K(t)

h, hs, ys = np.zeros((B, H)), [], []
for t in range(T):
    h = sigmoid(x[:, t] @ W_IH.T + h @ W_HH.T)  # rows are samples: W x ↔ x Wᵀ
    hs.append(h)
    ys.append(sigmoid(h @ W_HO.T))
y_hand = np.stack(ys, axis=1)
y, _ = net.forward(x)
print("y(t) equal to Elman:", np.abs(y_hand - y).max())

# %% [markdown]
# ## BPTT's backward pass
#
# With $E_{tot} = \sum_t \frac{1}{2}\sum_K (d_K(t) - y_K(t))^2$, for $t = t_f, \dots, t_s$:
#
# $$\delta_K^O(t) = f^{O\prime}(y_{in_K}(t))\,\{-(d_K - y_K(t))\}, \qquad
#   \delta_j^H(t) = f^{H\prime}(h_{in_j}(t))\,\Big\{\sum_K \delta_K^O(t) w_{jK}^{HO}
#   + \sum_j \delta_j^H(t+1) w_{jj}^{HH}\Big\}$$
#
# $$\frac{\partial E_{tot}}{\partial w_{jK}^{HO}} = \sum_t \delta_K^O(t) h_j(t), \quad
#   \frac{\partial E_{tot}}{\partial w_{jj}^{HH}} = \sum_t \delta_j^H(t) h_j(t-1), \quad
#   \frac{\partial E_{tot}}{\partial w_{ij}^{IH}} = \sum_t \delta_j^H(t) x_i(t)$$
#
# (the weight change is $\Delta w = -\eta\, \partial E_{tot} / \partial w$). The sigmoid's derivative comes from its
# output, $f'(\cdot) = y(1 - y)$. Written out against rnnkit's BPTT, with the deck's loss
# `MSELoss(reduction="sum", half=True)` (rnnkit's default MSE is the mean, without the ½):

# %%
loss = MSELoss(reduction="sum", half=True)
E_tot = loss(y, d)
net.zero_grad()
net.backward(loss.backward())

dHO, dHH, dIH, delta_H_next = np.zeros_like(W_HO), np.zeros_like(W_HH), np.zeros_like(W_IH), np.zeros((B, H))
for t in reversed(range(T)):
    delta_O = y_hand[:, t] * (1 - y_hand[:, t]) * -(d[:, t] - y_hand[:, t])
    delta_H = hs[t] * (1 - hs[t]) * (delta_O @ W_HO + delta_H_next @ W_HH)
    h_before = hs[t - 1] if t else np.zeros((B, H))
    dHO += delta_O.T @ hs[t]
    dHH += delta_H.T @ h_before
    dIH += delta_H.T @ x[:, t]
    delta_H_next = delta_H
print(f"E_tot = {E_tot:.6f} = {0.5 * ((d - y_hand) ** 2).sum():.6f}")
for name, mine, theirs in [("W^HO", dHO, net.out.weight.grad), ("W^HH", dHH, net.rnn.weight_hh_l0.grad),
                           ("W^IH", dIH, net.rnn.weight_ih_l0.grad)]:
    print(f"∂E_tot/∂{name} equal to rnnkit: {np.abs(mine - theirs).max():.1e}")

# %% [markdown]
# ## The Jordan network
#
# The Jordan network feeds the *output* back: the state units hold $y(t-1)$ and enter the hidden layer at the next
# step. For multi-class outputs the deck uses a softmax $f^O$: `Jordan(..., output_activation="softmax")`. Its
# outputs are distributions, and its hand-derived backward passes a gradient check:

# %%
jordan = Jordan(I, H, 3, output_activation="softmax", dtype=np.float64, rng=2)
y_jordan, (y_last, state) = jordan.forward(x)
print("outputs", y_jordan.shape, " sum to one:", np.abs(y_jordan.sum(axis=-1) - 1).max())
print("state units = the last output:", np.abs(y_last - y_jordan[:, -1]).max())
print("gradcheck:", rnnkit.gradcheck(jordan, x))

# %% [markdown]
# ## Epochwise versus continuous training
#
# *Epochwise*: the state is reset at each epoch (each pass over the sequences starts from $h(0) = 0$).
# *Continuous*: the state is never reset — each row of the data is a stream, and its state is carried from batch to
# batch and epoch to epoch (gradients stop at the batch boundary). The task: output the input of 3 steps earlier,
# on a stream cut into chunks of 4 steps, so the answer for a chunk's first steps lies in the chunk before.

# %%
stream = (rng.random((8, 40, 1)) > 0.5).astype(float)
target = np.concatenate([np.zeros((8, 3, 1)), stream[:, :-3]], axis=1)
chunks_x = np.concatenate(np.split(stream, 10, axis=1))  # rows (chunk, stream): 80 chunks of 4 steps
chunks_y = np.concatenate(np.split(target, 10, axis=1))
for mode in ("epoch", "never"):
    model = Elman(1, 12, 1, output_activation="identity", dtype=np.float64, rng=3)
    history = rnnkit.fit(model, chunks_x, chunks_y, loss="mse", epochs=40, batch_size=8, lr=2e-2, shuffle=False,
                         reset_state=mode, progress=False)
    print(f"reset_state={mode!r:8} final training MSE {history[-1]['train_loss']:.3f}")

# %% [markdown]
# Continuous training can learn the answers that cross chunk boundaries; epochwise training starts every chunk
# from zero and cannot.
#
# ## The bidirectional RNN
#
# The deck's algorithm: present the sequence forwards to one hidden layer and backwards to another, then the output
# layer reads both; the backward pass computes all output δ first and runs BPTT through each hidden layer in its
# own direction:
#
# 1. for $t = t_s \dots t_f$: forward pass of the forward hidden layer;
# 2. for $t = t_f \dots t_s$: forward pass of the backward hidden layer;
# 3. for all $t$: the output layer from both; then its δ terms, and BPTT through each hidden layer in reverse order
#    of its own pass.
#
# With two unidirectional `RNN`s (the second fed the reversed sequence) against `RNN(bidirectional=True)`, whose
# outputs are [forward | backward] features:

# %%
birnn = rnnkit.RNN(I, H, bidirectional=True, dtype=np.float64, rng=4)
fwd, bwd = rnnkit.RNN(I, H, dtype=np.float64, rng=5), rnnkit.RNN(I, H, dtype=np.float64, rng=6)
for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
    getattr(fwd, name).data[...] = getattr(birnn, name).data
    getattr(bwd, name).data[...] = getattr(birnn, name + "_reverse").data
h_fwd, _ = fwd.forward(x)  # step 1
h_bwd, _ = bwd.forward(x[:, ::-1])  # step 2: t = t_f ... t_s
both = np.concatenate([h_fwd, h_bwd[:, ::-1]], axis=-1)
out, _ = birnn.forward(x)
print("outputs equal:", np.abs(both - out).max())
delta = rng.standard_normal(out.shape)  # step 3: the output layer's δ for every t
birnn.backward(delta)
fwd.backward(delta[..., :H])
bwd.backward(delta[:, ::-1, H:])
print("∂/∂W^HH forward layer equal:", np.abs(fwd.weight_hh_l0.grad - birnn.weight_hh_l0.grad).max())
print("∂/∂W^HH backward layer equal:", np.abs(bwd.weight_hh_l0.grad - birnn.weight_hh_l0_reverse.grad).max())
