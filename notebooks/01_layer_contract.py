# %% [markdown]
# # 1. The layer contract: a Linear layer, its backward, and a gradient check
#
# Every layer of rnnkit — a `Linear` map, an LSTM, a CRF — keeps the same contract:
#
# * `forward(x)` computes the output $y$ and keeps what its backward will need;
# * `backward(dy)` receives $\delta y = \partial L / \partial y$ (the gradient of some scalar loss $L$ with
#   respect to the output), **returns** $\delta x = \partial L / \partial x$ and **adds** (`+=`) the gradient of
#   every parameter $\theta$ into `theta.grad`;
# * `zero_grad()` clears the parameter gradients explicitly.
#
# There is no automatic differentiation anywhere: each backward is derived by hand, and checked against central
# differences. In this notebook we write the simplest layer, $y = x W^\top + b$, derive its backward, check it,
# and compare it with `rnnkit.Linear`.

# %%
import numpy as np

import rnnkit
from rnnkit import teaching

rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The forward pass
#
# A batch of $N$ rows $x \in \mathbb{R}^{N \times n_\text{in}}$, a weight $W \in \mathbb{R}^{n_\text{out} \times
# n_\text{in}}$ (PyTorch's layout: one row per output unit) and a bias $b \in \mathbb{R}^{n_\text{out}}$:
#
# $$y = x W^\top + b, \qquad y_{nj} = \sum_k x_{nk} W_{jk} + b_j .$$
#
# ## The backward pass
#
# Given $\delta y_{nj} = \partial L / \partial y_{nj}$, the chain rule over every element that depends on the
# quantity we differentiate:
#
# $$\frac{\partial L}{\partial x_{nk}} = \sum_j \delta y_{nj} W_{jk}, \qquad
#   \frac{\partial L}{\partial W_{jk}} = \sum_n \delta y_{nj} x_{nk}, \qquad
#   \frac{\partial L}{\partial b_j} = \sum_n \delta y_{nj},$$
#
# that is, in matrix form, $\delta x = \delta y\, W$, $\delta W = \delta y^\top x$ and $\delta b = \sum_n
# \delta y_n$. A useful sanity check: every gradient has the shape of the thing it is the gradient of.
#
# **Exercise.** Write `linear_backward(dy, x, weight)` returning `(dx, dweight, dbias)`.

# %% tags=["exercise"]
def linear_backward(dy, x, weight):
    """δx = δy W, δW = δyᵀ x, δb = Σ_n δy for y = x Wᵀ + b; x (N, in), weight (out, in), dy (N, out)."""
    ### BEGIN SOLUTION
    dx = dy @ weight
    dweight = dy.T @ x
    dbias = dy.sum(axis=0)
    return dx, dweight, dbias
    ### END SOLUTION


# %% [markdown]
# `teaching.check` compares your function with rnnkit's own `Linear` on random inputs of several shapes, in
# float64, and tells you what is wrong if anything is.

# %%
teaching.check("linear_backward", linear_backward)


# %% [markdown]
# ## A layer of our own
#
# With the backward written, the layer itself is a few lines. It subclasses `rnnkit.Module` and holds two
# `rnnkit.Parameter`s (an array `.data` and its gradient `.grad`). `save_for_backward` pushes what the backward
# needs on the module's stack; `saved_for_backward` pops it — so a layer applied twice and backpropagated twice in
# reverse order accumulates the gradients of *weight sharing*.

# %%
class MyLinear(rnnkit.Module):
    def __init__(self, in_features, out_features, rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        bound = 1 / np.sqrt(in_features)  # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in))
        self.weight = rnnkit.Parameter(rng.uniform(-bound, bound, (out_features, in_features)))
        self.bias = rnnkit.Parameter(rng.uniform(-bound, bound, out_features))

    def forward(self, x):
        self.save_for_backward(x)
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
        (x,) = self.saved_for_backward()
        dx, dweight, dbias = linear_backward(dy, x, self.weight.data)
        self.weight.grad += dweight  # gradients accumulate
        self.bias.grad += dbias
        return dx


mine = MyLinear(3, 4, rng=1)
x = rng.standard_normal((5, 3))
print(mine.forward(x).shape, [name for name, _ in mine.named_parameters()])
mine.discard_saved()

# %% [markdown]
# ## Checking a backward: central differences
#
# `rnnkit.gradcheck(module, *inputs)` puts a scalar on the outputs, $L = \sum w \odot y$ with fixed random weights
# $w$, and compares each analytic derivative with the numerical one,
#
# $$\frac{\partial L}{\partial \theta} \approx \frac{L(\theta + \varepsilon) - L(\theta - \varepsilon)}
#   {2 \varepsilon}, \qquad \varepsilon = 10^{-6},$$
#
# in float64, for every input element and every parameter element. The error of an error-free backward is of the
# order of $\varepsilon^2$ plus rounding, around $10^{-9}$ or less; a wrong one is of order 1. It returns the
# worst relative error, $\max|\text{analytic} - \text{numeric}| / \max(|\text{analytic}|, |\text{numeric}|)$,
# and with `report=True` the error of each input and parameter.

# %%
worst, per_tensor = rnnkit.gradcheck(mine, x, report=True)
print(f"worst relative error {worst:.1e}")
for name, error in per_tensor.items():
    print(f"  {name:9} {error:.1e}")


# %% [markdown]
# A deliberately wrong backward — the bias gradient taken from the first row only, a classic slip when a layer is
# first written for one example — is caught at once, and the report says *which* tensor is wrong:

# %%
class Broken(MyLinear):
    def backward(self, dy):
        (x,) = self.saved_for_backward()
        self.weight.grad += dy.T @ x
        self.bias.grad += dy[0]  # wrong: should sum over the batch
        return dy @ self.weight.data


worst, per_tensor = rnnkit.gradcheck(Broken(3, 4, rng=1), x, report=True)
print(f"worst relative error {worst:.2f}")
for name, error in per_tensor.items():
    print(f"  {name:9} {error:.1e}")

# %% [markdown]
# ## `rnnkit.Linear`
#
# rnnkit's `Linear` is the same map with PyTorch's names and layout (`weight` $(n_\text{out}, n_\text{in})$,
# `bias`), so a state dict moves between the two — and to `torch.nn.Linear` — unchanged. It also accepts any
# number of leading axes, $(B, T, n_\text{in})$ for a sequence, summing the weight gradients over all of them.

# %%
lin = rnnkit.Linear(3, 4, dtype=np.float64)
lin.load_state_dict(mine.state_dict())
dy = rng.standard_normal((5, 4))
mine.zero_grad()
print("outputs equal:", np.allclose(lin.forward(x), mine.forward(x)))
print("δx equal:     ", np.allclose(lin.backward(dy), mine.backward(dy)))
print("δW equal:     ", np.allclose(lin.weight.grad, mine.weight.grad))
print("gradcheck of rnnkit.Linear on a (2, 6, 3) batch of sequences:",
      f"{rnnkit.gradcheck(lin, rng.standard_normal((2, 6, 3))):.1e}")

# %% [markdown]
# ## Gradients accumulate
#
# A backward *adds* into `p.grad`. Applying one layer twice — weight sharing, as a recurrent layer does at every
# time step — and backpropagating both calls (in reverse order) gives the sum of the two contributions; that is
# why an optimizer step is always preceded by `zero_grad()`.

# %%
lin.zero_grad()
x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
lin.forward(x1)
lin.forward(x2)
lin.backward(dy)  # the second call's backward first
lin.backward(dy)
print("δW of the two calls == δyᵀ x1 + δyᵀ x2:", np.allclose(lin.weight.grad, dy.T @ x1 + dy.T @ x2))
