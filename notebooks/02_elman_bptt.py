# %% [markdown]
# # 2. The Elman network and backpropagation through time
#
# The simple recurrent network of Elman (1990) keeps a hidden state $h_t$ that is fed back as an input to the
# next step. In PyTorch's notation (rows are batch elements; the same equations as `torch.nn.RNN`):
#
# $$a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}, \qquad h_t = \tanh(a_t),
#   \qquad t = 1, \dots, T,$$
#
# from an initial state $h_0$. A loss $L = \sum_t L_t(h_t)$ is put on the states (through an output layer,
# which we leave out: it only supplies $\partial L_t / \partial h_t$).
#
# In this notebook we write BPTT step by step in NumPy, check it against `rnnkit.RNN`, and then look at
# *truncated* BPTT, stateful layers, and epochwise versus continuous training.

# %%
import tempfile
from pathlib import Path

import numpy as np

import rnnkit
from rnnkit import teaching
from rnnkit.models import ModelConfig, SequenceModel
from rnnkit.tasks.text import TextTask
from rnnkit.training.trainer import tbptt_windows

rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)


# %% [markdown]
# ## The forward pass, by hand
#
# `x` is (B, T, I), `h0` (B, H); we return all states `h` (B, T, H).

# %%
def elman_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    batch, steps, _ = x.shape
    h = np.zeros((batch, steps, weight_hh.shape[0]))
    prev = h0
    for t in range(steps):
        prev = np.tanh(x[:, t] @ weight_ih.T + bias_ih + prev @ weight_hh.T + bias_hh)
        h[:, t] = prev
    return h


B, T, I, H = 3, 7, 4, 5
x, h0 = rng.standard_normal((B, T, I)), rng.standard_normal((B, H))
rnn = rnnkit.RNN(I, H, dtype=np.float64, rng=1)  # the reference, float64
params = [rnn.weight_ih_l0.data, rnn.weight_hh_l0.data, rnn.bias_ih_l0.data, rnn.bias_hh_l0.data]
h = elman_forward(x, h0, *params)
out, h_n = rnn.forward(x, h0[None])
print("our states == rnnkit.RNN's outputs:", np.allclose(h, out), "  final state:", np.allclose(h[:, -1], h_n[0]))

# %% [markdown]
# ## Backpropagation through time
#
# $h_t$ influences the loss twice: directly through $L_t$, and through $h_{t+1}$. So the total gradient that
# reaches $h_t$ is
#
# $$\delta h_t = \frac{\partial L_t}{\partial h_t} + \delta a_{t+1} W_{hh}, \qquad
#   \delta a_t = \delta h_t \odot (1 - h_t^2) \quad (\tanh' = 1 - \tanh^2),$$
#
# computed backwards from $t = T$ (where $\delta a_{T+1} = 0$). The weights are shared by all steps, so their
# gradients are sums over time:
#
# $$\delta W_{ih} = \sum_t \delta a_t^\top x_t, \qquad \delta W_{hh} = \sum_t \delta a_t^\top h_{t-1}, \qquad
#   \delta b_{ih} = \delta b_{hh} = \sum_t \sum_n \delta a_{t,n},$$
#
# and the inputs get $\delta x_t = \delta a_t W_{ih}$, the initial state $\delta h_0 = \delta a_1 W_{hh}$.
#
# **Exercise.** Write `elman_backward(dh, x, h0, h, weight_ih, weight_hh)`, where `dh` (B, T, H) holds
# $\partial L_t / \partial h_t$ (the direct part only), returning `(dx, dh0, dweight_ih, dweight_hh, dbias)`.

# %% tags=["exercise"]
def elman_backward(dh, x, h0, h, weight_ih, weight_hh):
    """BPTT through h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh) → (δx, δh0, δW_ih, δW_hh, δb)."""
    ### BEGIN SOLUTION
    batch, steps, _ = x.shape
    dx = np.zeros_like(x)
    dweight_ih, dweight_hh = np.zeros_like(weight_ih), np.zeros_like(weight_hh)
    dbias = np.zeros(weight_hh.shape[0])
    dnext = np.zeros_like(h0)  # δa_{t+1} W_hh: what flows back from step t + 1
    for t in reversed(range(steps)):
        h_prev = h[:, t - 1] if t > 0 else h0
        da = (dh[:, t] + dnext) * (1.0 - h[:, t] ** 2)
        dx[:, t] = da @ weight_ih
        dweight_ih += da.T @ x[:, t]
        dweight_hh += da.T @ h_prev
        dbias += da.sum(axis=0)
        dnext = da @ weight_hh
    return dx, dnext, dweight_ih, dweight_hh, dbias
    ### END SOLUTION


# %%
teaching.check("elman_backward", elman_backward)

# %% [markdown]
# And against `rnnkit.RNN` directly: same $\delta x$, $\delta h_0$ and parameter gradients (rnnkit computes the
# weight gradients after the loop, as whole-sequence matrix products $\delta A^\top X$; the sums are the same).

# %%
dh = rng.standard_normal((B, T, H))
rnn.zero_grad()
dx_rnnkit, dh0_rnnkit = rnn.backward(dh)
dx, dh0, dw_ih, dw_hh, db = elman_backward(dh, x, h0, h, rnn.weight_ih_l0.data, rnn.weight_hh_l0.data)
for name, ours, theirs in [("δx", dx, dx_rnnkit), ("δh0", dh0, dh0_rnnkit[0]), ("δW_ih", dw_ih, rnn.weight_ih_l0.grad),
                           ("δW_hh", dw_hh, rnn.weight_hh_l0.grad), ("δb", db, rnn.bias_hh_l0.grad)]:
    print(f"{name:6} max |ours − rnnkit| = {np.abs(ours - theirs).max():.1e}")

# %% [markdown]
# ## Truncated BPTT
#
# A long stream (a book, a recording) cannot be backpropagated in one piece. *Truncated* BPTT(k1, k2) makes an
# update every $k_1$ steps and backpropagates each update through the last $k_2 \ge k_1$ steps only (Williams &
# Peng 1990). The forward pass is not truncated: the state at the end of one window is carried into the next —
# but as a constant, so no gradient crosses the boundary. `tbptt_windows` lists the windows as
# `(start, end, loss_start)`: the loss covers `[loss_start, end)`, the gradient flows back to `start`.

# %%
print("k1 = k2 = 4: ", tbptt_windows(12, 4, 4))
print("k1 = 4, k2 = 6:", tbptt_windows(12, 4, 6))

# %% [markdown]
# ### Carrying the state: `stateful=True`
#
# A layer built with `stateful=True` starts each call from the final state of the previous call (what some
# course code calls a `memorize` flag); `reset_state()` forgets it. Run over the sequence in two chunks, it
# computes exactly the states of one pass over the whole sequence...

# %%
stateful = rnnkit.RNN(I, H, dtype=np.float64, stateful=True, rng=1)
first, _ = stateful.forward(x[:, :4], h0[None])
second, _ = stateful.forward(x[:, 4:])  # starts from the state at step 4
print("chunked forward == full forward:", np.allclose(np.concatenate([first, second], axis=1), h))

# %% [markdown]
# ...but the gradients differ: backpropagating each chunk on its own drops every path that crosses the boundary.
# Here is the truncated gradient of $W_{hh}$ compared with the full one, with our `elman_backward` (the second
# chunk starts from the carried state $h_4$, treated as a constant input):

# %%
w_ih, w_hh = rnn.weight_ih_l0.data, rnn.weight_hh_l0.data
full = elman_backward(dh, x, h0, h, w_ih, w_hh)[3]
chunk1 = elman_backward(dh[:, :4], x[:, :4], h0, h[:, :4], w_ih, w_hh)[3]
chunk2 = elman_backward(dh[:, 4:], x[:, 4:], h[:, 3], h[:, 4:], w_ih, w_hh)[3]
print(f"relative difference of δW_hh, truncated vs full: "
      f"{np.abs(chunk1 + chunk2 - full).max() / np.abs(full).max():.2f}")
stateful.discard_saved()

# %% [markdown]
# With the layer's own backward, the same: each chunk's backward stops at its start (`stateful.backward` per
# chunk); and Elman's original training, `detach_state = True`, is the extreme case $k_2 = 1$ — no error is
# propagated through time at all, each step sees $h_{t-1}$ as a constant input.
#
# ## Epochwise versus continuous training
#
# Williams & Zipser distinguish *epochwise* training, where each pass over the data (an epoch) starts from a
# fresh state $h_0 = 0$, from *continuous* training, where the network runs on forever and the state is never
# reset. rnnkit's trainer does both for a text stream: `TrainConfig.reset_state="epoch"` (the default) or
# `"never"` (the state at the end of an epoch carries into the next, as if the corpus were one endless loop).
# A small character model on a short text, trained both ways with `rnnkit.fit`:

# %%
text = ("the cat sat on the mat. the dog sat on the log. " * 60)[:2900]
path = Path(tempfile.mkdtemp()) / "tiny.txt"
path.write_text(text)
for reset in ("epoch", "never"):
    task = TextTask(path, seq_length=20, batch_size=4, val_fraction=0.1)
    model = SequenceModel(ModelConfig.for_task(task, cell="rnn", hidden_size=32, dtype="float64"), rng=0)
    history = rnnkit.fit(model, task, epochs=4, lr=3e-3, k1=20, reset_state=reset, progress=False)
    print(f"reset_state={reset!r:8} validation loss after each epoch:",
          [round(h["val_loss"], 3) for h in history if "val_loss" in h])
