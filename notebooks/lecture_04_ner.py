# %% [markdown]
# # Lecture deck 004: RNNs for named-entity recognition
#
# Deck 004 tags each word of "Kate Farrahi and Jonathon Hare teach deep learning" as part of a name (1) or not (0),
# with one-hot words, an RNN whose output is a sigmoid per step, binary cross-entropy per step summed over time,
# and an example of BPTT through $a^{\langle t \rangle}$. This notebook follows it in its notation.
#
# ## Symbol map
#
# The deck writes column vectors ($w_{aa} a^{\langle t-1 \rangle}$), so its matrices have rnnkit's layout (all
# decks: [the lectures' symbols and conventions](../../lectures/), `docs/lectures.md`). Note that $a^{\langle t
# \rangle}$ is the *state* here (deck 001 uses $a$ for the LSTM's candidate).
#
# | deck 004 | rnnkit |
# |---|---|
# | $x^{\langle t \rangle}$ (one-hot word), $T_x = T_y = 8$ | `rnnkit.OneHot(V)` of the word ids |
# | $a^{\langle t \rangle} = g(w_{aa} a^{\langle t-1 \rangle} + w_{ax} x^{\langle t \rangle} + b_a)$ | `Elman`'s `RNN`: $w_{aa}$ = `weight_hh_l0`, $w_{ax}$ = `weight_ih_l0`, $b_a$ = `Elman.b_h` |
# | $\hat{y}^{\langle t \rangle} = g(w_{ya} a^{\langle t \rangle} + b_y)$ | `Elman(..., output_activation="sigmoid")`: $w_{ya}$ = `out.weight`, $b_y$ = `Elman.b_y` |
# | $\mathcal{L}^{\langle t \rangle} = -y \log \hat{y} - (1 - y) \log(1 - \hat{y})$ | `BCELoss` (on probabilities) |
# | $\mathcal{L} = \sum_t \mathcal{L}^{\langle t \rangle}$ | `BCELoss(reduction="sum")` (rnnkit's default is the mean) |

# %%
import functools

import numpy as np

import rnnkit
from rnnkit import BCELoss, Elman

words = "Kate Farrahi and Jonathon Hare teach deep learning".split()
labels = np.array([1, 1, 0, 1, 1, 0, 0, 0], dtype=float)
vocabulary = sorted(set(words))
ids = np.array([vocabulary.index(w) for w in words])
x = rnnkit.OneHot(len(vocabulary), dtype=np.float64).forward(ids[None])  # (1, T_x, V)
y = labels.reshape(1, -1, 1)
print("vocabulary:", vocabulary)
print("x^<3> (one-hot of 'and'):", x[0, 2].astype(int))

# %% [markdown]
# ## Forward and the summed loss
#
# $$a^{\langle t \rangle} = \tanh(w_{aa} a^{\langle t-1 \rangle} + w_{ax} x^{\langle t \rangle} + b_a), \qquad
#   \hat{y}^{\langle t \rangle} = \sigma(w_{ya} a^{\langle t \rangle} + b_y)$$
#
# $$\mathcal{L}^{\langle t \rangle} = -y^{\langle t \rangle} \log \hat{y}^{\langle t \rangle}
#   - (1 - y^{\langle t \rangle}) \log(1 - \hat{y}^{\langle t \rangle}), \qquad
#   \mathcal{L} = \sum_{t=1}^{T_y} \mathcal{L}^{\langle t \rangle}$$

# %%
H = 4
net = Elman(len(vocabulary), H, 1, dtype=np.float64, rng=0)
w_aa, w_ax, w_ya = net.rnn.weight_hh_l0.data, net.rnn.weight_ih_l0.data, net.out.weight.data
b_a, b_y = net.b_h, net.b_y


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


a, a_all, y_hat = np.zeros(H), [np.zeros(H)], []
for t in range(len(words)):
    a = np.tanh(w_aa @ a + w_ax @ x[0, t] + b_a)
    a_all.append(a)
    y_hat.append(sigmoid(w_ya @ a + b_y)[0])
y_hat = np.array(y_hat)
L_t = -labels * np.log(y_hat) - (1 - labels) * np.log(1 - y_hat)
pred, _ = net.forward(x)
print("ŷ^<t> equal to Elman:", np.abs(pred[0, :, 0] - y_hat).max())
print("L^<t>:", np.round(L_t, 4))
print(f"L = Σ_t L^<t> = {L_t.sum():.6f};  BCELoss(reduction='sum') = {BCELoss(reduction='sum')(pred, y):.6f};  "
      f"the default mean = {BCELoss()(pred, y):.6f}")

# %% [markdown]
# ## The BPTT example, and the deck's erratum
#
# The deck differentiates $\mathcal{L}^{\langle 3 \rangle}$:
#
# $$\frac{\partial \mathcal{L}^{\langle 3 \rangle}}{\partial w_{ya}} =
#   \frac{\partial \mathcal{L}^{\langle 3 \rangle}}{\partial \hat{y}^{\langle 3 \rangle}}
#   \frac{\partial \hat{y}^{\langle 3 \rangle}}{\partial w_{ya}}
#   = (\hat{y}^{\langle 3 \rangle} - y^{\langle 3 \rangle})\, a^{\langle 3 \rangle}$$
#
# (σ's derivative $\hat{y}(1 - \hat{y})$ cancels against the cross-entropy's). For $w_{aa}$ its equation (8) writes
# one chain through $\partial \hat{y}^{\langle 3 \rangle} / \partial a^{\langle 2 \rangle}$.
# **Erratum:** $\hat{y}^{\langle 3 \rangle}$ depends on $a^{\langle 2 \rangle}$ only *through* $a^{\langle 3 \rangle}$,
# and $w_{aa}$ is used at every step, so the gradient is the sum over all paths:
#
# $$\frac{\partial \mathcal{L}^{\langle 3 \rangle}}{\partial w_{aa}} = \sum_{k=1}^{3}
#   \frac{\partial \mathcal{L}^{\langle 3 \rangle}}{\partial a^{\langle 3 \rangle}}
#   \frac{\partial a^{\langle 3 \rangle}}{\partial a^{\langle k \rangle}}
#   \frac{\partial^{+} a^{\langle k \rangle}}{\partial w_{aa}}$$
#
# ($\partial^{+}$: the direct dependence at step $k$). Each path's term, their sum, rnnkit's BPTT (a loss on step 3
# only, through a mask) and central differences:

# %%
t3 = 2  # the third word, 0-based
delta = (y_hat[t3] - labels[t3]) * w_ya[0]  # ∂L^<3>/∂a^<3>
paths = {}
for k in range(t3, -1, -1):  # k = 3, 2, 1 in the deck's numbering
    delta_pre = delta * (1 - a_all[k + 1] ** 2)  # ∂L^<3>/∂(the pre-activation at step k)
    paths[k + 1] = np.outer(delta_pre, a_all[k])  # ∂⁺a^<k>/∂w_aa: the previous state
    delta = delta_pre @ w_aa  # on to a^<k-1>
total = sum(paths.values())

mask = np.zeros((1, len(words)))
mask[0, t3] = 1
loss = BCELoss(reduction="sum")
net.zero_grad()
pred, _ = net.forward(x)
loss(pred, y, mask)
net.backward(loss.backward())


def loss_3(w):
    a = np.zeros(H)
    for t in range(t3 + 1):
        a = np.tanh(w @ a + w_ax @ x[0, t] + b_a)
    p = sigmoid(w_ya @ a + b_y)[0]
    return -labels[t3] * np.log(p) - (1 - labels[t3]) * np.log(1 - p)


eps, numeric = 1e-6, np.zeros_like(w_aa)
for i in np.ndindex(w_aa.shape):
    step = np.zeros_like(w_aa)
    step[i] = eps
    numeric[i] = (loss_3(w_aa + step) - loss_3(w_aa - step)) / (2 * eps)
scale = np.abs(numeric).max()
by_hand = (y_hat[t3] - labels[t3]) * a_all[t3 + 1]
print(f"∂L^<3>/∂w_ya: (ŷ − y) a^<3> vs rnnkit: {np.abs(by_hand - net.out.weight.grad[0]).max():.1e}")
for k, term in paths.items():
    print(f"path through k = {k} alone: relative error {np.abs(term - numeric).max() / scale:.2e}")
print(f"sum over the paths: relative error {np.abs(total - numeric).max() / scale:.2e}")
print(f"rnnkit's BPTT:      relative error {np.abs(net.rnn.weight_hh_l0.grad - numeric).max() / scale:.2e}")

# %% [markdown]
# No single path is the gradient; the sum is, and it is what rnnkit's runner accumulates (`δW_hh += δaᵀ h_{t-1}` at
# every step). (Here $a^{\langle 0 \rangle} = 0$, so the path $k = 1$ contributes nothing at all.)
#
# ## Training the tagger
#
# Plain SGD attached to the layer, the summed loss, a few hundred steps on the one sentence:

# %%
net.optimizer = functools.partial(rnnkit.SGD, lr=0.1)
for _ in range(200):
    net.zero_grad()
    pred, _ = net.forward(x)
    value = loss(pred, y)
    net.backward(loss.backward())
print(f"L after training: {value:.4f}")
for word, p, label in zip(words, pred[0, :, 0], labels):
    print(f"{word:10} ŷ = {p:.3f}   y = {label:.0f}")
