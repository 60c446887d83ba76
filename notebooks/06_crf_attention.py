# %% [markdown]
# # 6. Structured outputs: a CRF for tagging, attention for translation
#
# ## The linear-chain CRF
#
# A tagger that predicts each tag on its own can produce impossible sequences (an `I-PER` right after `O`). A
# linear-chain conditional random field (Lafferty et al. 2001) scores a whole tag path $y = (y_1, \dots, y_T)$:
# with emission scores $e_t \in \mathbb{R}^K$ (from a BiLSTM, say), transition scores $A_{ij}$ (from tag $i$
# to tag $j$) and start and end scores $\pi, \omega$,
#
# $$s(y) = \pi_{y_1} + \sum_{t=1}^{T} e_{t, y_t} + \sum_{t=2}^{T} A_{y_{t-1}, y_t} + \omega_{y_T}, \qquad
#   p(y \mid e) = \frac{e^{s(y)}}{Z}, \qquad Z = \sum_{y'} e^{s(y')}.$$
#
# $Z$ sums over $K^T$ paths, but the sum factorises. The **forward algorithm** computes it in $O(T K^2)$, in log
# space for stability:
#
# $$\alpha_1 = \pi + e_1, \qquad \alpha_t(j) = \log \sum_i \exp\big(\alpha_{t-1}(i) + A_{ij}\big) + e_{t,j},
#   \qquad \log Z = \log \sum_j \exp\big(\alpha_T(j) + \omega_j\big).$$
#
# Training minimises $-\log p(y^\ast \mid e) = \log Z - s(y^\ast)$ for the gold path $y^\ast$.

# %%
import matplotlib.pyplot as plt
import numpy as np

import rnnkit
from rnnkit import teaching
from rnnkit.models import Seq2Seq, Seq2SeqConfig, Tagger, TaggerConfig
from rnnkit.tasks.seq2seq import Seq2SeqTask

rng = np.random.default_rng(0)


# %% [markdown]
# **Exercise.** Write `crf_log_partition(emissions, transitions, start, end)` for one sequence: `emissions`
# (T, K), `transitions` (K, K) indexed [from, to], `start` and `end` (K,). Use a stable log-sum-exp
# ($\log \sum_i e^{v_i} = m + \log \sum_i e^{v_i - m}$ with $m = \max_i v_i$).

# %% tags=["exercise"]
def logsumexp(v, axis):
    m = v.max(axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.exp(v - m).sum(axis=axis, keepdims=True)), axis=axis)


def crf_log_partition(emissions, transitions, start, end):
    """log Z of a linear-chain CRF by the forward algorithm; emissions (T, K), transitions (K, K) [from, to]."""
    ### BEGIN SOLUTION
    alpha = start + emissions[0]
    for t in range(1, len(emissions)):
        alpha = logsumexp(alpha[:, None] + transitions, axis=0) + emissions[t]
    return float(logsumexp(alpha + end, axis=0))
    ### END SOLUTION


# %% [markdown]
# Checked against brute force on a tiny example — every one of the $K^T = 3^4 = 81$ paths scored and summed:

# %%
T, K = 4, 3
emissions, transitions = rng.standard_normal((T, K)), rng.standard_normal((K, K))
start, end = rng.standard_normal(K), rng.standard_normal(K)
paths = teaching.brute_force_paths(emissions, transitions, start, end)
scores = np.array([s for s, _ in paths])
print(f"{len(paths)} paths; log Σ exp s(y) = {np.log(np.exp(scores).sum()):.6f}, "
      f"forward algorithm: {crf_log_partition(emissions, transitions, start, end):.6f}")
teaching.check("crf_log_partition", crf_log_partition)

# %% [markdown]
# ## Viterbi decoding
#
# The best path replaces the sum by a max (and remembers where each max came from):
#
# $$\delta_1 = \pi + e_1, \qquad \delta_t(j) = \max_i \big(\delta_{t-1}(i) + A_{ij}\big) + e_{t,j}, \qquad
#   \psi_t(j) = \arg\max_i \big(\delta_{t-1}(i) + A_{ij}\big),$$
#
# then $y_T = \arg\max_j (\delta_T(j) + \omega_j)$ and backwards $y_{t-1} = \psi_t(y_t)$.
#
# **Exercise.** Write `crf_viterbi(emissions, transitions, start, end)` returning the best path (T tag ids).

# %% tags=["exercise"]
def crf_viterbi(emissions, transitions, start, end):
    """The highest-scoring tag path of one sequence (Viterbi)."""
    ### BEGIN SOLUTION
    delta = start + emissions[0]
    pointers = []
    for t in range(1, len(emissions)):
        candidates = delta[:, None] + transitions  # (from, to)
        pointers.append(candidates.argmax(axis=0))
        delta = candidates.max(axis=0) + emissions[t]
    path = [int((delta + end).argmax())]
    for back in reversed(pointers):
        path.append(int(back[path[-1]]))
    return np.array(path[::-1])
    ### END SOLUTION


# %%
best_score, best_path = max(paths)
print("brute force:", list(best_path), f"score {best_score:.4f};  Viterbi:",
      crf_viterbi(emissions, transitions, start, end).tolist())
teaching.check("crf_viterbi", crf_viterbi)

# %% [markdown]
# ## `rnnkit.CRF`: the same, batched, with its gradient
#
# `rnnkit.CRF` runs both recursions over a batch of ragged sequences. Its backward uses the backward recursion
# $\beta$ as well: the gradient of $\log Z$ with respect to the emissions is the matrix of **marginals**
# $P(y_t = j \mid e) = \exp(\alpha_t(j) + \beta_t(j) - \log Z)$, which brute force can confirm too.

# %%
crf = rnnkit.CRF(K, dtype=np.float64)
crf.transitions.data[...], crf.start_transitions.data[...], crf.end_transitions.data[...] = transitions, start, end
print("rnnkit Viterbi:", crf.decode(emissions).tolist())
gold = np.array([0, 1, 1, 2])
nll = crf.forward(emissions, gold)
log_z = crf_log_partition(emissions, transitions, start, end)
print(f"NLL = log Z − s(gold): rnnkit {float(nll):.6f}, ours "
      f"{log_z - teaching.path_score(emissions, transitions, start, end, gold):.6f}")
gradient = crf.backward(np.float64(1.0))  # = marginals − one-hot(gold)
marginals = np.zeros((T, K))
for s, path in paths:
    marginals[np.arange(T), list(path)] += np.exp(s - np.log(np.exp(scores).sum()))
one_hot = np.eye(K)[gold]
print("δemissions == brute-force marginals − one-hot(gold):", np.allclose(gradient, marginals - one_hot))

# %% [markdown]
# ## A BiLSTM-CRF tagger on a toy task
#
# `rnnkit.Tagger` is embedding → bidirectional LSTM → linear emission scores → CRF. A toy "named entity" task:
# tokens 1–4 are name words; a run of them is tagged `B` (begin) then `I` (inside); everything else is `O`.
# An `I` can only follow `B` or `I` — a constraint the CRF's transition scores learn.

# %%
TAGS = ["O", "B", "I"]


def toy_batch(n, steps=10):
    words = rng.integers(1, 12, (n, steps))
    names = words <= 4
    tags = np.where(names, 1, 0)
    tags[:, 1:][names[:, 1:] & names[:, :-1]] = 2  # inside a run of names
    return words, tags


tagger = Tagger(TaggerConfig(vocab_size=12, num_tags=3, embedding_size=8, hidden_size=16), rng=0)
optimizer = rnnkit.Adam(tagger.named_parameters(), lr=2e-2)
lengths = np.full(32, 10)
for _ in range(60):
    words, tags = toy_batch(32)
    tagger.zero_grad()
    emissions_ = tagger.forward(words, lengths)
    nll = tagger.crf.forward(emissions_, tags)
    tagger.backward(tagger.crf.backward(np.full(32, 1 / 32)))
    optimizer.step()
words, tags = toy_batch(200)
with rnnkit.no_grad():
    predicted = np.array(tagger.crf.decode(tagger.forward(words, np.full(200, 10))))
print(f"mean NLL in the last batch {nll.mean():.3f}; tag accuracy on new data {(predicted == tags).mean():.1%}")
print("words:    ", words[0])
print("gold:     ", " ".join(TAGS[t] for t in tags[0]))
print("predicted:", " ".join(TAGS[t] for t in predicted[0]))
print("learned transitions (rows from, columns to; O→I should be low):")
print(np.round(tagger.crf.transitions.data, 2))

# %% [markdown]
# ## Attention: a sequence-to-sequence model
#
# An encoder–decoder translates a source sequence into a target of another length. The encoder (a BiLSTM)
# produces a memory $M_1, \dots, M_S$; at each output step the decoder *attends* to it (Bahdanau et al. 2015):
#
# $$e_s = v^\top \tanh\big(M_s W_k^\top + h_{t-1} W_q^\top\big), \qquad
#   \alpha_s = \frac{\exp e_s}{\sum_{s'} \exp e_{s'}}, \qquad c_t = \sum_s \alpha_s M_s,$$
#
# and reads the context $c_t$ together with the previous output token. The weights $\alpha$ say where the
# model looks. The built-in task reverses digit strings (`"4213"` → `"3124"`): the right alignment is the
# anti-diagonal. A tiny model, 30 seconds of training at most:

# %%
task = Seq2SeqTask(batch_size=64, synthetic_size=4000, seed=0)
seq2seq = Seq2Seq(Seq2SeqConfig.for_task(task, embedding_size=16, hidden_size=48), rng=0)
history = rnnkit.fit(seq2seq, task, epochs=10, lr=1e-2, max_steps=350, time_limit=30, threads=1,
                     progress=False)
print(f"{history[-1]['step']} updates; exact match on held-out strings: {history[-1]['exact_match']:.0%}")

# %%
source = "0123456789"
ids = task.vocab.encode(list(source))
decoded, weights = seq2seq.greedy(ids[None], np.array([len(ids)]))
output = task.target_vocab.decode(decoded[0])
print(f"{source} → {''.join(output)}")
fig, ax = plt.subplots(figsize=(4.6, 4.2))
ax.imshow(weights[0], cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(len(source)), labels=list(source))
ax.set_yticks(range(len(output) + 1), labels=output + ["<eos>"])
ax.set_xlabel("source")
ax.set_ylabel("output")
ax.set_title("attention weights α")
plt.show()
