"""The per-step names of the compiled kernels (``ws.kernels.NAME``: every cell family's fused step kernels, each
defined in its family's module and re-exported here) and zoneout's two kernels for the runner's step-by-step loop.

A fused step kernel is the pointwise part of one time step in one pass over the gates: the exact counterpart of a
block of NumPy code in a cell's ``step`` or ``step_backward`` (named in its docstring), called between the same
BLAS GEMMs and writing into the same workspace arrays, so the NumPy code stays the readable definition and the
oracle the tests compare against.

How every kernel module is written, so that LLVM vectorizes the kernels (AVX2/AVX-512):

* ``error_model="numpy"`` — the default error model puts a zero-division branch into every division and blocks
  SIMD — and fast-math only where it cannot change a finite result (`rnnkit.kernels.jit.JIT`): a fused
  multiply-add is written out (`muladd`) where it pays, and sums over a row are `row_sum` / `row_dot`, so a kernel
  gives the same bits whether it was compiled in this process or loaded from the cache;
* one simple loop over a row's contiguous units; no Python-float literals in the arithmetic (a float64 constant
  would promote float32 math): constants come from the typed helpers of `rnnkit.kernels.jit`;
* float32: tanh is Eigen's clamped rational (13/6) approximation — no libm call, a few ulp (< 4e-7 relative);
  σ(a) = ½ tanh(a/2) + ½ as in `rnnkit.activations.sigmoid`; e^x is Cephes' polynomial with the scale 2^n written
  into the exponent field (1.01 ulp at most over 2 million points of float32's range, 0 where e^x underflows;
  like every kernel's arithmetic, for results that are finite); log x is Cephes' polynomial on the mantissa read
  from the bits (0.82 ulp at most over every binade). float64 calls libm's tanh, exp and log (accurate to 1 ulp).
  A loop that calls libm on float32 does not vectorize.

Kernels are cached on disk (``cache=True``), so only the first use after installation compiles them.
"""

from __future__ import annotations

# -- each cell family's step kernels, from its own module, exported here for ``ws.kernels.NAME`` ------------------
from .gru import (  # noqa: F401 - re-exported
    gru_backward_reset_after,
    gru_backward_reset_before_r,
    gru_backward_reset_before_zn,
    gru_forward_reset_after,
    gru_gates_reset_before,
    gru_output_reset_before,
)
from .indrnn import indrnn_backward, indrnn_forward  # noqa: F401 - re-exported
from .jit import JIT, njit, one
from .jordan import (  # noqa: F401 - re-exported
    jordan_hidden,
    jordan_hidden_backward,
    jordan_output,
    jordan_output_backward,
    jordan_state,
)
from .layernorm import (  # noqa: F401 - re-exported
    layer_norm_rows,
    layer_norm_rows_backward,
    lngru_backward,
    lngru_forward,
    lnlstm_backward,
    lnlstm_forward,
)
from .lstm import lstm_backward, lstm_forward  # noqa: F401 - re-exported
from .mogrifier import mogrifier_round, mogrifier_round_backward  # noqa: F401 - re-exported
from .rhn import rhn_backward, rhn_forward  # noqa: F401 - re-exported
from .rnn import rnn_backward, rnn_forward  # noqa: F401 - re-exported

# -- Zoneout (applied by the runner, for every cell) -------------------------------------------------------------
#: d·prev + (1 − d)·proposed stays exactly prev where d = 1: `JIT` neither reassociates nor fuses


@njit(**JIT)
def zoneout_mix(prev, proposed, keep, out):
    """`Recurrence._zoneout_loop`: s_t = d ⊙ s_{t−1} + (1 − d) ⊙ s̃_t. All (n, S), one row at a time."""
    for b in range(out.shape[0]):
        p, q, d, o = prev[b], proposed[b], keep[b], out[b]
        for j in range(o.shape[0]):
            o[j] = d[j] * p[j] + (one(d[j]) - d[j]) * q[j]


@njit(**JIT)
def zoneout_split(ds, keep, direct):
    """Zoneout's backward: ``direct`` = d ⊙ δs_t (to s_{t−1}, around the cell), δs_t ← (1 − d) ⊙ δs_t (to s̃_t)."""
    for b in range(ds.shape[0]):
        g, d, out = ds[b], keep[b], direct[b]
        for j in range(g.shape[0]):
            dj, gj = d[j], g[j]
            out[j] = dj * gj
            g[j] = (one(dj) - dj) * gj
