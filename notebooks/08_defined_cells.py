# %% [markdown]
# # 8. Deriving a cell's backward by the tool
#
# In notebook 4 we derived the LSTM's backward by hand. Every gated cell splits a step the same way — GEMMs,
# then a pointwise map — and only the pointwise map is cell-specific. `rnnkit.define` takes that map, written in
# the lecture's notation, and derives its backward (SymPy), writes it back in the cell's own symbols, and
# generates a NumPy step and a fused compiled kernel from the same expressions. Here we let it derive the LSTM
# and put its answer next to ours.

# %%
import numpy as np

import rnnkit
from rnnkit import define

lstm = define.cell("lstm", gates="i f g o", states="h c", equations="""
    i = σ(a_i);  f = σ(a_f);  g = tanh(a_g);  o = σ(a_o)
    c = f⊙c₋₁ + i⊙g
    h = o⊙tanh(c)""")
print(define.backward_text(lstm))

# %% [markdown]
# ## The hand derivation of notebook 4, line by line
#
# With $\delta h_t$ and $\delta c_t$ arriving from the output and from step $t+1$:
#
# $$\delta a_o = \delta h_t \odot \tanh(c_t) \odot o(1 - o), \qquad
#   \delta c = \delta c_t + \delta h_t \odot o \odot (1 - \tanh^2 c_t),$$
#
# $$\delta a_i = \delta c \odot g \odot i (1 - i), \quad \delta a_f = \delta c \odot c_{t-1} \odot f (1 - f),
#   \quad \delta a_g = \delta c \odot i \odot (1 - g^2), \quad \delta c_{t-1} = \delta c \odot f .$$
#
# The tool names each function application (`tanh_c` $= \tanh c$), so its $\delta c$ reads
# $\delta c_t + \delta\mathrm{tanh\_c} \odot (1 - \mathrm{tanh\_c}^2)$ with $\delta\mathrm{tanh\_c} = \delta h_t
# \odot o$ — the same term. Every derivative is written through the forward outputs, $\sigma' = \sigma(1 - \sigma)$
# and $\tanh' = 1 - \tanh^2$, exactly as we did. The same equations as LaTeX:

# %%
print(define.backward_text(lstm, latex=True))

# %% [markdown]
# ## Equal to the hand-written LSTM
#
# A defined cell is a layer like any other. With the hand-written `rnnkit.LSTM`'s weights copied in, outputs and
# every gradient agree to rounding (float64):

# %%
rng = np.random.default_rng(0)
hand = rnnkit.LSTM(3, 5, dtype=np.float64, rng=1)
mine = define.DefinedRNN(3, 5, lstm, dtype=np.float64, rng=2)
mine.load_state_dict(hand.state_dict())
x, dy = rng.standard_normal((2, 7, 3)), rng.standard_normal((2, 7, 5))
for layer in (hand, mine):
    layer.zero_grad()
    out, _ = layer.forward(x)
    layer.backward(dy)
print("output:", np.abs(mine.forward(x)[0] - hand.forward(x)[0]).max())
for name, p in hand.named_parameters():
    print(f"δ{name}:", np.abs(dict(mine.named_parameters())[name].grad - p.grad).max())

# %% [markdown]
# ## The generated step
#
# The NumPy step the tool writes is short, readable, and the oracle its compiled kernel is tested against:

# %%
print(define.numpy_source(lstm))

# %% [markdown]
# ## A cell nobody ships
#
# The coupled input-forget gate LSTM (CIFG, Greff et al. 2017) sets $f = 1 - i$: three gate blocks instead of
# four. Its backward is one edit away from the LSTM's — the path through $c_{t-1}$ now also feeds $\delta a_i$:

# %%
cifg = define.cell("cifg", gates="i g o", states="h c", equations="""
    i = σ(a_i);  g = tanh(a_g);  o = σ(a_o)
    c = (1 − i)⊙c₋₁ + i⊙g
    h = o⊙tanh(c)""")
print(define.backward_text(cifg))
print("gradcheck:", rnnkit.gradcheck(define.DefinedRNN(3, 4, cifg, dtype=np.float64, rng=0),
                                     rng.standard_normal((2, 5, 3))))
