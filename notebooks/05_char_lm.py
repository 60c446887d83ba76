# %% [markdown]
# # 5. A character language model
#
# A character-level language model (Karpathy's char-rnn) reads text one character at a time and predicts the
# next one. With characters $c_1, \dots, c_T$ encoded as one-hot vectors $x_t$:
#
# $$h_t = \operatorname{LSTM}(x_t, h_{t-1}), \qquad z_t = h_t W_{hy}^\top + b_y, \qquad
#   p(c_{t+1} = k \mid c_{\le t}) = \operatorname{softmax}(z_t)_k = \frac{e^{z_{t,k}}}{\sum_j e^{z_{t,j}}}$$
#
# trained by minimising the cross-entropy $L = -\frac{1}{T} \sum_t \log p(c_{t+1} \mid c_{\le t})$, in nats per
# character; $L / \ln 2$ is the number of *bits per character* and $e^L$ the perplexity. The text is one long
# stream, so training uses truncated BPTT in windows of 50 characters with the state carried from window to
# window (notebook 2).

# %%
import matplotlib.pyplot as plt
import numpy as np

import rnnkit
from rnnkit.activations import softmax
from rnnkit.models import ModelConfig, SequenceModel
from rnnkit.tasks.text import TextTask, corpus_path
from rnnkit.training.sampling import sample_text, text_scores
from rnnkit.training.visualize import activations

# %% [markdown]
# ## The data
#
# `"shakespeare"` names the corpus shipped with rnnkit (`rnnkit/data/shakespeare.txt`, the first 250 KB of
# Tiny Shakespeare). `TextTask` cuts it into 32 parallel streams and keeps the last 5% for validation.

# %%
task = TextTask("shakespeare", seq_length=50, batch_size=32)
print(corpus_path("shakespeare").name, f"{task.train_chars:,} training and {task.val_chars:,} validation characters,",
      f"{len(task.vocab)} distinct characters")
print(task.vocab.decode(task.train_stream.x[0, :200]))

# %% [markdown]
# ## A small model, half a minute of training
#
# One LSTM layer of 128 units between the one-hot input and the linear output layer, trained with Adam for at
# most 500 updates or 30 seconds (`time_limit`; one BLAS thread, the fastest for matrices this small) — far from
# converged (a few minutes of a larger model reach about 1.7 nats per character; see the README), but enough to
# learn words, spaces and line structure.

# %%
model = SequenceModel(ModelConfig.for_task(task, cell="lstm", hidden_size=128), rng=0)
print(f"{model.num_parameters():,} parameters")
history = rnnkit.fit(model, task, epochs=4, lr=4e-3, max_steps=500, time_limit=30, threads=1, progress=False)
train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
print(f"{history[-1]['step']} updates; validation loss {history[-1]['val_loss']:.3f} nats/char")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(*zip(*train))
ax.set_xlabel("update")
ax.set_ylabel("training loss (nats/char)")
plt.show()

# %%
scores = text_scores(model, task.vocab, task.vocab.decode(task.val_stream.x.ravel()), window=50)
print(f"validation: {scores['loss']:.3f} nats/char = {scores['bits_per_char']:.2f} bits/char, "
      f"perplexity {scores['perplexity']:.1f} (a uniform guess over {len(task.vocab)} characters: "
      f"{np.log2(len(task.vocab)):.2f} bits)")

# %% [markdown]
# ## Sampling with a temperature
#
# To generate text, feed the model a prime, draw the next character from its distribution, feed that back,
# and so on. A *temperature* $\tau$ reshapes the distribution before drawing:
#
# $$p_\tau(k) = \frac{e^{z_k / \tau}}{\sum_j e^{z_j / \tau}}$$
#
# $\tau \to 0$ approaches the arg-max (repetitive, "safe" text); $\tau = 1$ samples the model's own
# distribution; $\tau > 1$ flattens it towards uniform (more surprising, more mistakes).

# %%
prime = "ROMEO:\n"
ids = task.vocab.encode(prime)
with rnnkit.no_grad():
    logits, _ = model.forward(ids[None])
z = logits[0, -1].astype(np.float64)
top = np.argsort(-z)[:12]
fig, ax = plt.subplots(figsize=(8, 3))
for k, tau in enumerate((0.5, 1.0, 2.0)):
    p = softmax(z / tau)
    ax.bar(np.arange(len(top)) + 0.27 * (k - 1), p[top], width=0.27, label=f"τ = {tau}")
ax.set_xticks(range(len(top)), labels=[repr(task.vocab.chars[i])[1:-1] for i in top])
ax.set_ylabel(f"p(next character | {prime!r})")
ax.legend()
plt.show()

# %%
for tau in (0.5, 1.0):
    print(f"--- temperature {tau} ---")
    print(sample_text(model, task.vocab, 250, prime=prime, temperature=tau, rng=np.random.default_rng(1)))

# %% [markdown]
# ## What the hidden units do
#
# Karpathy, Johnson & Fei-Fei (2015) looked for interpretable cells by colouring text with one unit's activation.
# `rnnkit.training.visualize.activations` runs the model over a text and returns the last layer's $h_t$ for every
# character ( `rnnkit visualize RUN --text ...` writes the same as an interactive HTML page). Here the 16 units
# that vary most over a passage, as a heatmap (blue $-1$, red $+1$):

# %%
passage = task.vocab.decode(task.val_stream.x[0, :90])
hidden, probs = activations(model, task.vocab, passage)
units = np.argsort(-hidden.std(axis=0))[:16]
fig, ax = plt.subplots(figsize=(13, 3.6))
ax.imshow(hidden[:, units].T, cmap="bwr", vmin=-1, vmax=1, aspect="auto")
ax.set_xticks(range(len(passage)), labels=["⏎" if c == "\n" else c for c in passage], fontsize=7)
ax.set_yticks(range(len(units)), labels=[f"unit {u}" for u in units], fontsize=7)
ax.set_title("hidden units h_t over a validation passage")
plt.show()

# %% [markdown]
# The model's confidence along the same passage — the probability it gave to the character that actually came
# next — is high inside words and drops at word and line starts, where many continuations are plausible:

# %%
ids = task.vocab.encode(passage)
p_next = probs[np.arange(len(ids) - 1), ids[1:]]
fig, ax = plt.subplots(figsize=(13, 2.4))
ax.bar(np.arange(len(p_next)), p_next)
ax.set_xticks(range(len(p_next)), labels=["⏎" if c == "\n" else c for c in passage[1:]], fontsize=7)
ax.set_ylabel("p(actual next)")
plt.show()
