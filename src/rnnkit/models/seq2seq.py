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

Decoding (`greedy`, `beam_search`) runs inside `rnnkit.no_grad()`. A hypothesis y_1 … y_n <eos> scores
S = (Σ_t log p(y_t | y_<t, x)) / (n + 1), its mean log-probability per emitted token (<eos> included); beam search
keeps the ``beam`` best prefixes by their summed log-probability, moves a prefix that ends in <eos> to the
finished list, and returns the finished hypothesis with the best S — greedy's own hypothesis among the candidates,
so beam search never returns a lower S than greedy decoding.

Data: `rnnkit.tasks.seq2seq` (``source<TAB>target`` lines or the built-in digit reversal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import validate
from ..activations import Tanh, log_softmax
from ..attention import AdditiveAttention, LuongAttention
from ..errors import ConfigError, ShapeError
from ..layers import Embedding, Linear
from ..losses import CrossEntropyLoss
from ..module import Module, _is_int, as_rng, check_dtype
from ..recurrent import catalog
from ..recurrent.states import hidden_part
from ..tasks.seq2seq import BOS_ID, EOS_ID, PairBatch
from .configs import JSONConfig, check_always_bidirectional, check_option_ranges, check_sizes, option
from .protocol import WholeSequenceModel, batched, inference

#: cell name → (encoder layer, decoder step module): the catalogue's cells that have a one-step module
ENCODERS = {e.name: (e.layer, e.step_module) for e in catalog.entries() if e.step_module is not None}
ATTENTIONS = ("bahdanau", "luong-dot", "luong-general")


@dataclass
class Seq2SeqConfig(JSONConfig):
    """A `Seq2Seq` model (stored in checkpoints); ``attention`` and ``beam_size`` are its own flags."""

    source_vocab_size: int
    target_vocab_size: int
    embedding_size: int = 64
    cell: str = "lstm"
    hidden_size: int = 128
    attention: str = option("bahdanau", "seq2seq: attention scoring.", choices=ATTENTIONS)
    beam_size: int = option(1, "seq2seq: beam width for evaluation decoding (1: greedy).", low=1)
    max_length: int = 64
    dtype: str = "float32"
    bidirectional: bool = True  # always: the encoder reads each source sequence both ways (the decoder one way)
    kind: ClassVar[str] = "seq2seq"

    def __post_init__(self):
        check_always_bidirectional(self)
        self.check_cell(self.cell)
        check_sizes(self, "source_vocab_size", "target_vocab_size", "embedding_size", "hidden_size", "max_length")
        validate.count(self.beam_size, "beam_size", validate.MAX_BEAM)
        check_option_ranges(self)
        check_dtype(self.dtype)
        if not _is_int(self.target_vocab_size) or self.target_vocab_size <= max(BOS_ID, EOS_ID):
            raise ConfigError(f"target_vocab_size must count the reserved tokens <bos> ({BOS_ID}) and <eos> "
                              f"({EOS_ID}) and at least one more, got {self.target_vocab_size!r}")

    @classmethod
    def check_cell(cls, cell: str) -> None:
        if cell not in ENCODERS:
            *first, last = ENCODERS
            raise ConfigError(f"seq2seq supports --cell {', '.join(first)} or {last}, got {cell!r}")

    def parameter_count(self) -> int:
        """The model's number of parameters, computed without building it (`rnnkit.models.footprint`)."""
        e, h, layer = self.embedding_size, self.hidden_size, ENCODERS[self.cell][0]
        count = (self.source_vocab_size + self.target_vocab_size) * e
        count += layer.parameter_count(e, h, 1, self.bidirectional)
        count += (2 * h + 1) * h  # the bridge
        if self.attention == "bahdanau":
            count += 3 * h * h + h + layer.parameter_count(e + 2 * h, h) + (3 * h + 1) * self.target_vocab_size
        else:
            general = h * h if self.attention == "luong-general" else 0
            count += 2 * h * h + general + layer.parameter_count(e, h) + (3 * h + 1) * h
            count += (h + 1) * self.target_vocab_size
        return count

    @classmethod
    def for_task(cls, task, **options) -> Seq2SeqConfig:
        return cls(len(task.vocab), len(task.target_vocab), **options)


class Seq2Seq(WholeSequenceModel, Module):
    """``train_batch`` / ``evaluate`` for the trainer; ``translate(source ids, lengths)`` for decoding."""

    def __init__(self, config: Seq2SeqConfig, rng=None):
        super().__init__()
        rng, dtype = as_rng(rng), np.dtype(config.dtype)
        self.config = config
        e, h = config.embedding_size, config.hidden_size
        layer_cls, cell_cls = ENCODERS[config.cell]
        self.src_embed = Embedding(config.source_vocab_size, e, padding_idx=0, dtype=dtype, rng=rng)
        self.encoder = layer_cls(e, h, bidirectional=config.bidirectional, dtype=dtype, rng=rng)
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
        mem = self.attention.prepare(memory, np.arange(source.shape[1])[None, :] < lengths[:, None])
        return ((h0, np.zeros_like(h0)) if self.config.cell == "lstm" else h0), mem

    def _encode_backward(self, dmemory, dh0):
        dcat = self.bridge.backward(self.bridge_act.backward(dh0))
        hs = self.config.hidden_size
        dh = np.stack([dcat[:, :hs], dcat[:, hs:]])
        dfinal = (dh, np.zeros_like(dh)) if self.config.cell == "lstm" else dh
        dx, _ = self.encoder.backward(dmemory, dfinal)
        self.src_embed.backward(dx)

    # -- one decoder step (shared by training and decoding) -------------------------------------------
    def _step(self, emb_t, state, mem):
        """(new state, features for the output layer, attention weights), attending to ``mem``."""
        if self.bahdanau:
            context, alpha = self.attention.step(mem, hidden_part(state))
            state = self.cell.forward(np.concatenate([emb_t, context], axis=1), state)
        else:
            state = self.cell.forward(emb_t, state)
            context, alpha = self.attention.step(mem, hidden_part(state))
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
        """Teacher forcing: source (B, S) with lengths (B,), target_in (B, T) → logits (B, T, V); one unbatched pair
        — source (S,), target_in (T,), lengths None — gives logits (T, V)."""
        source, source_lengths, unbatched = batched(source, source_lengths, self.config.source_vocab_size, "source",
                                                    "source_lengths")
        target_in = validate.token_ids(target_in, "target_in", self.config.target_vocab_size,
                                       ndims=(1,) if unbatched else (2,))
        if unbatched:
            target_in = target_in[None]
        if len(target_in) != len(source):
            raise ShapeError(f"target_in must have one row per source sequence ({len(source)}), got shape "
                             f"{target_in.shape}")
        state, mem = self._encode(source, source_lengths)
        emb = self.tgt_embed.forward(target_in)
        feats = []
        for t in range(target_in.shape[1]):
            state, feat, _ = self._step(emb[:, t], state, mem)
            feats.append(feat)
        self.save_for_backward(mem, unbatched)
        logits = self._readout(np.stack(feats, axis=1))
        return logits[0] if unbatched else logits

    def backward(self, dlogits):
        mem, unbatched = self.saved_for_backward()
        dlogits = dlogits[None] if unbatched else dlogits
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
        self._encode_backward(self.attention.finish_backward(mem), dh)

    def train_batch(self, batch: PairBatch, window=None, state=None) -> float:
        """Teacher-forced cross-entropy over the valid target steps, backpropagated."""
        self.check_whole(batch, window)
        self.train()
        logits = self.forward(batch.source, batch.source_lengths, batch.x)
        loss = self.loss.forward(logits, batch.target, mask=batch.mask)
        if np.isfinite(loss):
            self.backward(self.loss.backward())
        return loss

    # -- decoding (inside no_grad: nothing is saved) --------------------------------------------------
    def _logprobs(self, feat):
        return log_softmax(self._readout(feat[:, None])[:, 0].astype(np.float64))

    def greedy(self, source, source_lengths, bos: int = BOS_ID, eos: int = EOS_ID, max_length: int | None = None):
        """Greedy decoding of a batch → (list of token-id arrays without <eos>, list of (T_i, S) weights)."""
        batch, limit = source.shape[0], max_length or self.config.max_length
        outputs, weights = [], []
        with inference(self):
            state, mem = self._encode(source, source_lengths)
            token = np.full(batch, bos, np.int64)
            done = np.zeros(batch, bool)
            for _ in range(limit):
                state, feat, alpha = self._step(self.tgt_embed.forward(token), state, mem)
                token = self._logprobs(feat).argmax(axis=1)
                outputs.append(token)
                weights.append(alpha)
                done |= token == eos
                if done.all():
                    break
        outputs, weights = np.stack(outputs, axis=1), np.stack(weights, axis=1)
        result, attn = [], []
        for b in range(batch):
            stop = np.flatnonzero(outputs[b] == eos)
            n = stop[0] if len(stop) else outputs.shape[1]
            result.append(outputs[b, :n])
            attn.append(weights[b, :n + 1, :source_lengths[b]])
        return result, attn

    def score(self, source_row, length: int, tokens, bos: int = BOS_ID, eos: int = EOS_ID,
              finished: bool = True) -> float:
        """S = (Σ_t log p(y_t | y_<t, x)) / (number of terms) of the hypothesis ``tokens`` (+ <eos> if
        ``finished``) for one source sequence — the score beam search ranks by."""
        targets = list(tokens) + ([eos] if finished else [])
        if not targets:
            return 0.0
        target_in = np.array([[bos] + list(tokens)[:len(targets) - 1]], np.int64)
        with inference(self):
            logits = self.forward(source_row[None], np.array([length]), target_in)
        logp = log_softmax(logits[0].astype(np.float64))
        return float(logp[np.arange(len(targets)), targets].sum() / len(targets))

    def _beam(self, source_row, length: int, bos: int, eos: int, beam: int, limit: int) -> list[tuple]:
        """(S, tokens) of the hypotheses a beam of width ``beam`` finishes (and of those alive at ``limit``)."""
        state, mem = self._encode(np.repeat(source_row[None], beam, 0), np.full(beam, length))
        scores = np.full(beam, -np.inf)
        scores[0] = 0.0  # start from one live hypothesis
        tokens, history, finished, live = np.full(beam, bos, np.int64), [[] for _ in range(beam)], [], beam
        for _ in range(limit):
            state, feat, _ = self._step(self.tgt_embed.forward(tokens), state, mem)
            total = scores[:, None] + self._logprobs(feat)
            rows, cols = np.unravel_index(np.argsort(-total, axis=None)[:live], total.shape)
            kept = []  # (row, token, summed log-probability) of the prefixes that go on
            for r, c in zip(rows, cols):
                if not np.isfinite(total[r, c]):
                    continue
                if c == eos:  # a finished hypothesis takes its slot in the beam
                    finished.append((total[r, c] / (len(history[r]) + 1), history[r]))
                else:
                    kept.append((r, int(c), total[r, c]))
            live = len(kept)
            if not kept:
                return finished
            kept += [(kept[0][0], kept[0][1], -np.inf)] * (beam - live)  # dead rows keep the arrays full
            idx = np.array([r for r, _, _ in kept])
            state = tuple(s[idx] for s in state) if isinstance(state, tuple) else state[idx]
            history = [history[r] + [c] for r, c, _ in kept]
            tokens, scores = np.array([c for _, c, _ in kept]), np.array([v for _, _, v in kept])
        return finished + [(scores[i] / len(history[i]), history[i]) for i in range(live)]

    def beam_search(self, source_row, length: int, bos: int = BOS_ID, eos: int = EOS_ID, beam: int = 4,
                    max_length: int | None = None) -> np.ndarray:
        """Beam search for one source sequence → token ids (without <eos>): the best S among the finished
        hypotheses and greedy's (see the module docstring)."""
        limit = max_length or self.config.max_length
        with inference(self):
            candidates = self._beam(source_row, length, bos, eos, beam, limit)
        if beam > 1:
            greedy = self.greedy(source_row[None], np.array([length]), bos, eos, limit)[0][0]
            done = len(greedy) < limit
            candidates.append((self.score(source_row, length, greedy, bos, eos, finished=done), list(greedy)))
        best = max(candidates, key=lambda c: c[0])
        return np.array(best[1], dtype=np.int64)

    def translate(self, source, source_lengths, bos: int = BOS_ID, eos: int = EOS_ID):
        """Decode a batch with the config's ``beam_size`` (1: greedy) → list of token-id arrays without <eos>."""
        source, source_lengths, _ = batched(source, source_lengths, self.config.source_vocab_size, "source",
                                            "source_lengths")
        if self.config.beam_size > 1:
            return [self.beam_search(source[b], source_lengths[b], bos, eos, self.config.beam_size)
                    for b in range(source.shape[0])]
        return self.greedy(source, source_lengths, bos, eos)[0]

    def evaluate(self, task) -> dict:
        """``val_loss`` (teacher-forced cross-entropy per target token) and ``exact_match`` of the decoded outputs
        over ``task.val``."""
        total, count, exact, n = 0.0, 0.0, 0, 0
        with inference(self):
            for batch in task.val:
                logits = self.forward(batch.source, batch.source_lengths, batch.x)
                total += CrossEntropyLoss("sum").forward(logits, batch.target, mask=batch.mask)
                count += batch.mask.sum()
                for b, pred in enumerate(self.translate(batch.source, batch.source_lengths)):
                    gold = batch.target[b, :batch.lengths[b] - 2]  # the target without <eos>
                    exact += int(len(pred) == len(gold) and np.array_equal(pred, gold))
                    n += 1
        return {"val_loss": total / max(count, 1), "exact_match": exact / max(n, 1)}
