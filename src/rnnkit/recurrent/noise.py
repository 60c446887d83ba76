"""Regularisers of the recurrence itself: variational dropout, zoneout and weight drop, as masks of one call.

Where an ordinary ``Dropout`` layer draws a new mask for every element, these draw masks with structure over time,
once per call of a layer (in training mode), one set per layer and direction:

* **variational dropout** (Gal & Ghahramani 2016): one mask m_x (B, I) on the input features and one mask m_h
  (B, R) on the state h_{t−1} *where it enters the recurrent matmuls*, the same at every step and for every gate,
  scaled by 1/(1 − p). The input side is whole-sequence work (x_t ⊙ m_x before the projection); the recurrent
  side is applied by the cell (``Cell.recurrent_input``). Off in evaluation.
* **weight drop** (DropConnect on W_hh, Merity et al. 2017): a mask M like W_hh, scaled by 1/(1 − p), drawn once per
  call; the recurrent matmuls use W_hh ⊙ M and δW_hh reaches only the kept weights (δW_hh ⊙ M). Off in evaluation.
* **zoneout** (Krueger et al. 2017): per unit and step, d_t ~ Bernoulli(z), and each state component is
  s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ s̃_t where s̃_t is what the cell computed; in evaluation the expectation
  s_t = z s_{t−1} + (1 − z) s̃_t. One rate per state component (an LSTM's h and c). The runner applies it, so it works
  for every cell.

Backward, with the masks of the forward: δx_t ← δx_t ⊙ m_x;  inside the cell δh_{t−1} gets (δa W̃_hh) ⊙ m_h through
the matmuls, W̃_hh = W_hh ⊙ M, and δW_hh += (Σ_t δaᵀ (h_{t−1} ⊙ m_h)) ⊙ M;  zoneout: δs̃_t = (1 − d_t) ⊙ δs_t and
δs_{t−1} gains d_t ⊙ δs_t besides what flows through the cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..module import bernoulli, check_probability, keep_mask


def loop_zoneout(rates: tuple | None, steps: int, batch: int, sizes: tuple[int, ...], dtype,
                 ragged: bool = True) -> tuple:
    """Zoneout as the compiled loop takes it (`rnnkit.kernels.sequence_loop`), for the masks ``rates`` (`Noise.zoneout`:
    per state component None, (T, B, S_k) or (B, S_k); or None for a call without zoneout): (keeps, proposed, saved,
    direct), each a tuple over the state components — the keep-previous masks d as (T, B, S_k), or (1, B, S_k)
    holding the rate z in evaluation; the history of s̃_t, (``steps``, B, S_k), filled by the forward, where
    ``steps`` is 1 for a call that no backward follows (one slot, overwritten at every step:
    `rnnkit.kernels.sequence_loop.history_slot`), zeroed only where the batch is ``ragged`` (the loop never writes
    the rows past a sequence's end, and the weight sums read every row; otherwise it writes every row of every slot,
    and zeroing two (T, B, H) histories first took 0.43 ms of an LSTM's training call at B = 16, H = 256); and two
    (B, S_k) scratch arrays for the backward. A component without zoneout gets empty arrays, and so does every
    component of a call without it: the loop sees one type either way, so numba compiles one loop for both (a loop
    of its own for zoneout doubled the test suite's compiles; its code costs the plain loop's first use about 1 s)."""
    rates = (None,) * len(sizes) if rates is None else rates
    none3, none2 = np.empty((0, 0, 0), dtype), np.empty((0, 0), dtype)
    keeps = tuple(none3 if d is None else np.ascontiguousarray(d if d.ndim == 3 else d[None], dtype) for d in rates)
    history = np.zeros if ragged else np.empty
    proposed = tuple(none3 if d is None else history((steps, batch, size), dtype) for d, size in zip(rates, sizes))
    saved, direct = (tuple(none2 if d is None else np.empty((batch, size), dtype) for d, size in zip(rates, sizes))
                     for _ in range(2))
    return keeps, proposed, saved, direct


@dataclass
class Noise:
    """The masks of one call of one layer and direction (rows in the order the runner sees them).

    ``input_mask`` (B, I) and ``state_mask`` (B, R): scaled keep-masks of variational dropout; ``weight_mask``: like
    W_hh; ``zoneout``: per state component, the keep-previous masks d (T, B, S_k) in training, or (B, S_k) filled
    with the rate z in evaluation (the expectation, the same at every step), or None for a component without it."""

    input_mask: np.ndarray | None = None
    state_mask: np.ndarray | None = None
    weight_mask: np.ndarray | None = None
    zoneout: tuple | None = None

    def keep(self, k: int, t: int, n: int) -> np.ndarray | None:
        """Zoneout's keep-previous mask of state component k at step t for the first n rows, (n, S_k), or None."""
        d = self.zoneout[k]
        if d is None:
            return None
        return d[t, :n] if d.ndim == 3 else d[:n]

    def rows(self, order: np.ndarray | None) -> Noise:
        """The same masks with rows (the batch axis) taken in ``order`` (the runner's sort by length)."""
        if order is None:
            return self

        def take(a, axis):
            return a if a is None else np.take(a, order, axis=axis)
        zoneout = None if self.zoneout is None else tuple(None if d is None else take(d, d.ndim - 2)
                                                          for d in self.zoneout)
        return Noise(take(self.input_mask, 0), take(self.state_mask, 0), self.weight_mask, zoneout)


@dataclass(frozen=True)
class Regularization:
    """The rates of a recurrent layer: ``dropout_input``, ``dropout_recurrent``, ``weight_drop`` in [0, 1) and
    ``zoneout``, one rate per state component (an LSTM's (z_h, z_c)); all zero: nothing is drawn."""

    dropout_input: float = 0.0
    dropout_recurrent: float = 0.0
    weight_drop: float = 0.0
    zoneout: tuple[float, ...] = ()

    @classmethod
    def checked(cls, state_names: tuple[str, ...], dropout_input=0.0, dropout_recurrent=0.0, weight_drop=0.0,
                zoneout=0.0) -> Regularization:
        """Validated rates; ``zoneout`` a rate for every state component or one rate per component."""
        rates = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout,) * len(state_names)
        if len(rates) != len(state_names):
            raise ConfigError(f"zoneout must be one rate or one per state component {state_names}, got {zoneout!r}")
        rates = tuple(check_probability(f"zoneout rate of {name}", z) for name, z in zip(state_names, rates))
        return cls(check_probability("dropout_input", dropout_input),
                   check_probability("dropout_recurrent", dropout_recurrent),
                   check_probability("weight_drop", weight_drop), rates if any(rates) else ())

    @property
    def active(self) -> bool:
        return bool(self.dropout_input or self.dropout_recurrent or self.weight_drop or self.zoneout)

    def sample(self, rng: np.random.Generator, training: bool, steps: int, batch: int, input_size: int,
               state_sizes: tuple[int, ...], weight_shape: tuple[int, ...], dtype) -> Noise | None:
        """The masks of one call (rows in the caller's order); None when nothing applies."""
        if not self.active or not (training or self.zoneout):
            return None
        if not training:  # evaluation: no dropout, the expectation of zoneout
            return Noise(zoneout=tuple(np.full((batch, size), z, dtype) if z else None
                                       for z, size in zip(self.zoneout, state_sizes)))

        def mask(p, shape):
            return keep_mask(rng, p, shape, dtype) if p else None
        zoneout = None
        if self.zoneout:
            zoneout = tuple(bernoulli(rng, z, (steps, batch, size)).astype(dtype) if z else None
                            for z, size in zip(self.zoneout, state_sizes))
        return Noise(mask(self.dropout_input, (batch, input_size)),
                     mask(self.dropout_recurrent, (batch, state_sizes[0])),
                     mask(self.weight_drop, weight_shape), zoneout)


def mix_zoneout(kernels, prev: np.ndarray, proposed: np.ndarray, keep: np.ndarray, out: np.ndarray) -> None:
    """Zoneout at one step, into ``out``: s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t (exactly s_{t−1} where d = 1); all (n, S).
    ``kernels``: the compiled kernels (`rnnkit.kernels.compiled.zoneout_mix`) or None for this NumPy code."""
    if kernels is not None:
        kernels.zoneout_mix(prev, proposed, keep, out)
        return
    np.multiply(prev, keep, out=out)
    out += (1 - keep) * proposed


def split_zoneout(kernels, ds: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Zoneout's backward at one step: δs̃_t = (1 − d) ⊙ δs_t in place in ``ds``; returns d ⊙ δs_t, the part that
    reaches s_{t−1} around the cell. ``kernels``: as in `mix_zoneout` (the kernel `compiled.zoneout_split`)."""
    direct = np.empty_like(ds)
    if kernels is not None:
        kernels.zoneout_split(ds, keep, direct)
        return direct
    np.multiply(ds, keep, out=direct)
    ds *= 1 - keep
    return direct
