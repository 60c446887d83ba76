"""Attention encoder–decoder for Tx ≠ Ty: teacher forcing, greedy and beam-search decoding.

Encoder: embedding → bidirectional recurrent layer → memory M (B, S, 2H); the decoder's initial state is
h_0 = tanh([h_n(forward) | h_n(backward)] W_bᵀ + b_b) (and c_0 = 0 for an LSTM).

Decoder step t, with y_{t-1} the previous target token (teacher forcing) or prediction (decoding):

* Bahdanau:  c_t = attend(M, q = h_{t-1});  h_t = cell([emb(y_{t-1}); c_t], h_{t-1});  z_t = W_o [h_t; c_t] + b_o
* Luong:     h_t = cell(emb(y_{t-1}), h_{t-1});  c_t = attend(M, q = h_t);  h̃_t = tanh(W_c [c_t; h_t] + b_c);
             z_t = W_o h̃_t + b_o

The output maps (and W_c) do not feed back into the recurrence, so they run once over all steps after the loop.
Backward runs the loop in reverse: each step pops its cell and attention caches (see `StepCell`, attention.py).
Loss: cross-entropy of z_t against y_t over the valid target steps (the target ends with <eos>).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Tanh, log_softmax
from .attention import AdditiveAttention, LuongAttention
from .configs import JSONConfig
from .layers import Embedding, Linear
from .losses import CrossEntropyLoss
from .module import Module, as_rng, check_dtype
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .recurrent.layer import hidden_part
from .sequences import pad_sequences
from .tasks import Batch, DataError, read_text
from .vocab import TokenVocabulary

ENCODERS = {"rnn": (RNN, RNNCell), "lstm": (LSTM, LSTMCell), "gru": (GRU, GRUCell)}
ATTENTIONS = ("bahdanau", "luong-dot", "luong-general")
BOS, EOS = "<bos>", "<eos>"


@dataclass
class Seq2SeqConfig(JSONConfig):
    source_vocab_size: int
    target_vocab_size: int
    embedding_size: int = 64
    cell: str = "lstm"
    hidden_size: int = 128
    attention: str = "bahdanau"
    beam_size: int = 1
    max_length: int = 64
    dtype: str = "float32"
    kind: str = "seq2seq"

    def __post_init__(self):
        if self.cell not in ENCODERS:
            raise ValueError(f"seq2seq supports --cell rnn, lstm or gru, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        check_dtype(self.dtype)


@dataclass
class PairBatch(Batch):
    source: np.ndarray | None = None
    source_lengths: np.ndarray | None = None


class Seq2Seq(Module):
    """``train_batch`` / ``evaluate`` for the trainer; ``translate(source ids, lengths)`` for decoding."""

    def __init__(self, config: Seq2SeqConfig, rng=None):
        super().__init__()
        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        e, h = config.embedding_size, config.hidden_size
        layer_cls, cell_cls = ENCODERS[config.cell]
        self.src_embed = Embedding(config.source_vocab_size, e, padding_idx=0, dtype=dtype, rng=rng)
        self.encoder = layer_cls(e, h, bidirectional=True, dtype=dtype, rng=rng)
        self.bridge = Linear(2 * h, h, dtype=dtype, rng=rng)
        self.bridge_act = Tanh()
        self.tgt_embed = Embedding(config.target_vocab_size, e, padding_idx=0, dtype=dtype, rng=rng)
        self.bahdanau = config.attention == "bahdanau"
        if self.bahdanau:
            self.attention = AdditiveAttention(2 * h, h, h, dtype=dtype, rng=rng)
            self.cell = cell_cls(e + 2 * h, h, dtype=dtype, rng=rng)
            self.out = Linear(3 * h, config.target_vocab_size, dtype=dtype, rng=rng)
        else:
            self.attention = LuongAttention(2 * h, h, score=config.attention.split("-")[1], dtype=dtype, rng=rng)
            self.cell = cell_cls(e, h, dtype=dtype, rng=rng)
            self.combine = Linear(3 * h, h, dtype=dtype, rng=rng)
            self.combine_act = Tanh()
            self.out = Linear(h, config.target_vocab_size, dtype=dtype, rng=rng)
        self.loss = CrossEntropyLoss()

    # -- encoder --------------------------------------------------------------------------------------
    def _encode(self, source, lengths):
        memory, final = self.encoder.forward(self.src_embed.forward(source), lengths=lengths)
        hn = hidden_part(final)
        h0 = self.bridge_act.forward(self.bridge.forward(np.concatenate([hn[0], hn[1]], axis=1)))
        self._final = final
        self.attention.prepare(memory, np.arange(source.shape[1])[None, :] < lengths[:, None])
        return (h0, np.zeros_like(h0)) if self.config.cell == "lstm" else h0

    def _encode_backward(self, dmemory, dh0):
        dcat = self.bridge.backward(self.bridge_act.backward(dh0))
        hs = self.config.hidden_size
        dh = np.stack([dcat[:, :hs], dcat[:, hs:]])
        dfinal = (dh, np.zeros_like(dh)) if isinstance(self._final, tuple) else dh
        dx, _ = self.encoder.backward(dmemory, dfinal)
        self.src_embed.backward(dx)

    # -- one decoder step (shared by training and decoding) -------------------------------------------
    def _step(self, emb_t, state):
        """(new state, features for the output layer, attention weights)."""
        if self.bahdanau:
            context, alpha = self.attention.step(hidden_part(state))
            state = self.cell.forward(np.concatenate([emb_t, context], axis=1), state)
        else:
            state = self.cell.forward(emb_t, state)
            context, alpha = self.attention.step(hidden_part(state))
        return state, np.concatenate([hidden_part(state), context], axis=1), alpha

    def _readout(self, feats):
        """Logits from the step features [h; c] (B, T, 3H), as whole-sequence GEMMs."""
        if self.bahdanau:
            return self.out.forward(feats)
        return self.out.forward(self.combine_act.forward(self.combine.forward(feats)))

    def _readout_backward(self, dlogits):
        if self.bahdanau:
            return self.out.backward(dlogits)
        return self.combine.backward(self.combine_act.backward(self.out.backward(dlogits)))

    # -- teacher forcing ------------------------------------------------------------------------------
    def forward(self, source, source_lengths, target_in):
        state = self._encode(source, source_lengths)
        emb = self.tgt_embed.forward(target_in)
        feats = []
        for t in range(target_in.shape[1]):
            state, feat, _ = self._step(emb[:, t], state)
            feats.append(feat)
        return self._readout(np.stack(feats, axis=1))

    def backward(self, dlogits):
        dfeats = self._readout_backward(dlogits)
        hs, steps = self.config.hidden_size, dlogits.shape[1]
        demb = np.zeros(dfeats.shape[:2] + (self.config.embedding_size,), dfeats.dtype)
        lstm = self.config.cell == "lstm"
        dh = np.zeros((dfeats.shape[0], hs), dfeats.dtype)
        dc = np.zeros_like(dh)
        for t in reversed(range(steps)):
            dh = dh + dfeats[:, t, :hs]
            dcontext = dfeats[:, t, hs:]
            if self.bahdanau:
                dx, dprev = self.cell.backward((dh, dc) if lstm else dh)
                demb[:, t] = dx[:, :self.config.embedding_size]
                dq = self.attention.step_backward(dcontext + dx[:, self.config.embedding_size:])
                dh, dc = (dprev[0] + dq, dprev[1]) if lstm else (dprev + dq, dc)
            else:
                dh = dh + self.attention.step_backward(dcontext)
                dx, dprev = self.cell.backward((dh, dc) if lstm else dh)
                demb[:, t] = dx
                dh, dc = dprev if lstm else (dprev, dc)
        self.tgt_embed.backward(demb)
        self._encode_backward(self.attention.finish_backward(), dh)

    def train_batch(self, batch: PairBatch) -> float:
        self.train()
        logits = self.forward(batch.source, batch.source_lengths, batch.x)
        loss = self.loss.forward(logits, batch.target, mask=batch.mask)
        self.backward(self.loss.backward())
        return loss

    # -- decoding -------------------------------------------------------------------------------------
    def _logprobs(self, feat):
        return log_softmax(self._readout(feat[:, None])[:, 0].astype(np.float64))

    def greedy(self, source, source_lengths, bos: int, eos: int, max_length: int | None = None):
        """Greedy decoding of a batch → (list of token-id arrays without <eos>, list of (T_i, S) weights)."""
        self.eval()
        batch = source.shape[0]
        limit = max_length or self.config.max_length
        state = self._encode(source, source_lengths)
        token = np.full(batch, bos, np.int64)
        outputs, weights = [], []
        done = np.zeros(batch, bool)
        for _ in range(limit):
            state, feat, alpha = self._step(self.tgt_embed.forward(token), state)
            token = self._logprobs(feat).argmax(axis=1)
            outputs.append(token)
            weights.append(alpha)
            done |= token == eos
            if done.all():
                break
        self._clear()
        outputs, weights = np.stack(outputs, axis=1), np.stack(weights, axis=1)
        result, attn = [], []
        for b in range(batch):
            stop = np.flatnonzero(outputs[b] == eos)
            n = stop[0] if len(stop) else outputs.shape[1]
            result.append(outputs[b, :n])
            attn.append(weights[b, :n + 1, :source_lengths[b]])
        return result, attn

    def beam_search(self, source_row, length: int, bos: int, eos: int, beam: int, max_length: int | None = None):
        """Beam search for one source sequence → token ids (without <eos>); scores are length-normalised."""
        self.eval()
        limit = max_length or self.config.max_length
        state = self._encode(np.repeat(source_row[None], beam, 0), np.full(beam, length))
        scores = np.full(beam, -np.inf)
        scores[0] = 0.0  # start from one live hypothesis
        tokens = np.full(beam, bos, np.int64)
        history = [[] for _ in range(beam)]
        finished = []
        for _ in range(limit):
            state, feat, _ = self._step(self.tgt_embed.forward(tokens), state)
            total = scores[:, None] + self._logprobs(feat)
            flat = np.argsort(-total, axis=None)[:2 * beam]
            rows, cols = np.unravel_index(flat, total.shape)
            keep_rows, keep_tokens, keep_scores, new_history = [], [], [], []
            for r, c in zip(rows, cols):
                if not np.isfinite(total[r, c]):
                    continue
                if c == eos:
                    finished.append((total[r, c] / (len(history[r]) + 1), history[r]))
                elif len(keep_rows) < beam:
                    keep_rows.append(r)
                    keep_tokens.append(c)
                    keep_scores.append(total[r, c])
                    new_history.append(history[r] + [int(c)])
            if len(finished) >= beam or not keep_rows:
                break
            while len(keep_rows) < beam:  # pad with dead hypotheses
                keep_rows.append(keep_rows[0])
                keep_tokens.append(keep_tokens[0])
                keep_scores.append(-np.inf)
                new_history.append(new_history[0])
            idx = np.array(keep_rows)
            state = tuple(s[idx] for s in state) if isinstance(state, tuple) else state[idx]
            tokens, scores, history = np.array(keep_tokens), np.array(keep_scores), new_history
        self._clear()
        if not finished:
            finished = [(scores[0] / max(len(history[0]), 1), history[0])]
        return np.array(max(finished, key=lambda f: f[0])[1], dtype=np.int64)

    def _clear(self):
        self.cell.reset_cache()
        self.attention._stack.clear()

    def translate(self, source, source_lengths, bos: int, eos: int):
        if self.config.beam_size > 1:
            return [self.beam_search(source[b], source_lengths[b], bos, eos, self.config.beam_size)
                    for b in range(source.shape[0])]
        return self.greedy(source, source_lengths, bos, eos)[0]

    def evaluate(self, batches: list[PairBatch]) -> dict:
        self.eval()
        total, count, exact, n = 0.0, 0.0, 0, 0
        for batch in batches:
            logits = self.forward(batch.source, batch.source_lengths, batch.x)
            self._clear()
            total += CrossEntropyLoss("sum").forward(logits, batch.target, mask=batch.mask)
            count += batch.mask.sum()
            predictions = self.translate(batch.source, batch.source_lengths, BOS_ID, EOS_ID)
            for b, pred in enumerate(predictions):
                gold = batch.target[b, :batch.lengths[b] - 2]  # the target without <eos>
                exact += int(len(pred) == len(gold) and np.array_equal(pred, gold))
                n += 1
        self.train()
        return {"val_loss": total / max(count, 1), "exact_match": exact / max(n, 1)}


# -- data -------------------------------------------------------------------------------------------------
BOS_ID, EOS_ID = 2, 3  # after <pad>, <unk> in the target vocabulary


def build_target_vocabulary(sequences) -> TokenVocabulary:
    """Target tokens with <bos> = 2 and <eos> = 3 after <pad>, <unk>."""
    built = TokenVocabulary.build(sequences)
    return TokenVocabulary([BOS, EOS] + built.tokens[2:])


def reversal_pairs(count: int, rng: np.random.Generator, low: int = 4, high: int = 12) -> list[tuple[str, str]]:
    """The built-in task: a random digit string and its reverse."""
    pairs = []
    for _ in range(count):
        s = "".join(rng.choice(list("0123456789"), rng.integers(low, high + 1)))
        pairs.append((s, s[::-1]))
    return pairs


def read_pairs(path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        src, tab, tgt = line.partition("\t")
        if not tab or not src.strip() or not tgt.strip():
            raise DataError(f"{path}:{number}: expected 'source<TAB>target', got {line[:60]!r}")
        pairs.append((src, tgt))
    if len(pairs) < 2:
        raise DataError(f"{path}: needs at least 2 'source<TAB>target' lines, got {len(pairs)}")
    return pairs


def make_pair_batches(src, tgt, order, batch_size) -> list[PairBatch]:
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        source, source_lengths = pad_sequences([src[i] for i in idx], dtype=np.int64)
        full, lengths = pad_sequences([np.concatenate([[BOS_ID], tgt[i], [EOS_ID]]) for i in idx], dtype=np.int64)
        target_in, target_out = full[:, :-1], full[:, 1:]
        mask = np.arange(target_out.shape[1])[None, :] < (lengths - 1)[:, None]
        batches.append(PairBatch(target_in, target_out, mask, lengths, source, source_lengths))
    return batches


class Seq2SeqTask:
    name = "seq2seq"
    stream = False
    seq_length = 0

    def __init__(self, path=None, unit: str = "chars", batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0, vocabulary=None, target_vocabulary=None, synthetic_size: int = 20000):
        from .classify import tokenize

        self.path = str(path) if path else None
        self.unit, self.batch_size, self.val_fraction, self.seed = unit, batch_size, val_fraction, seed
        pairs = read_pairs(path) if path else reversal_pairs(synthetic_size, np.random.default_rng([seed, 7]))
        src_tok = [tokenize(s, unit) for s, _ in pairs]
        tgt_tok = [tokenize(t, unit) for _, t in pairs]
        order = np.random.default_rng(seed).permutation(len(pairs))
        n_val = max(1, int(len(pairs) * val_fraction))
        val_idx, train_idx = order[:n_val], order[n_val:]
        if len(train_idx) == 0:
            raise DataError(f"{path}: too few pairs to split off {val_fraction:.0%} for validation")
        self.vocab = vocabulary or TokenVocabulary.build(src_tok[i] for i in train_idx)
        self.target_vocab = target_vocabulary or build_target_vocabulary(tgt_tok[i] for i in train_idx)
        self.src = [self.vocab.encode(s) for s in src_tok]
        self.tgt = [self.target_vocab.encode(t) for t in tgt_tok]
        self.train_idx = train_idx
        self.val = make_pair_batches(self.src, self.tgt, val_idx, 250)
        self.input_size, self.output_size = len(self.vocab), len(self.target_vocab)

    def batches(self, epoch: int):
        order = self.train_idx[np.random.default_rng([self.seed, epoch]).permutation(len(self.train_idx))]
        yield from make_pair_batches(self.src, self.tgt, order, self.batch_size)

    def num_batches(self) -> int:
        return -(-len(self.train_idx) // self.batch_size)

    def config(self) -> dict:
        return {"task": self.name, "data": self.path, "unit": self.unit, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed, "seq_length": 0}
