"""A compiled kernel gives the same bits whether this process compiled it or loaded it from numba's disk cache.

numba keeps several compiled copies of a helper (its own, and one inside each caller's cached code) and binds a call
to whichever copy was loaded first; under ``fastmath=True`` LLVM fused a·b + c differently in each copy, so a
training run that compiled its kernels and its resumed run that loaded them computed different last bits. The
kernels' fast-math flags now leave every finite result as the code writes it (`rnnkit.kernels.jit.JIT`)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="numba is not installed: there are no compiled kernels")

#: one process: the LSTM's and GRU's pointwise steps and layer norm's rows, forward and backward, float32 and
#: float64, on fixed random inputs; prints a digest of every output and how many kernels it compiled
PROBE = """
import hashlib
import numpy as np
from rnnkit.kernels import gru, layernorm, lstm

digest, n, H = hashlib.sha256(), 5, 24
for dtype in (np.float32, np.float64):
    rng = np.random.default_rng(0)

    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)
    gates, xp, c_prev, w = draw(n, 4 * H), draw(n, 4 * H), draw(n, H), draw(H)
    c_new, tanh_c, out, dxp = draw(n, H), draw(n, H), draw(n, H), draw(n, 4 * H)
    lstm.lstm_forward(gates, xp, c_prev, w, w, w, True, c_new, tanh_c, out)
    dc = draw(n, H)
    lstm.lstm_backward(draw(n, H), dc, gates, tanh_c, c_prev, w, w, w, True, dxp, False)
    g3, x3, inner, h_new = draw(n, 3 * H), draw(n, 3 * H), draw(n, H), draw(n, H)
    gru.gru_forward_reset_after(g3, x3, w, c_prev, inner, h_new, False, False)
    v, hat, inv_std, normed, dv = draw(n, H), draw(n, H), draw(n, 1), draw(n, H), draw(n, H)
    layernorm.layer_norm_rows(v, w, w, hat, inv_std, normed)
    layernorm.layer_norm_rows_backward(draw(n, H), w, hat, inv_std, dv)
    for array in (gates, c_new, tanh_c, out, dc, dxp, g3, inner, h_new, hat, inv_std, normed, dv):
        digest.update(array.tobytes())
kernels = (lstm.lstm_forward, lstm.lstm_backward, gru.gru_forward_reset_after, layernorm.layer_norm_rows,
           layernorm.layer_norm_rows_backward)
print(digest.hexdigest(), sum(sum(k.stats.cache_misses.values()) for k in kernels))
"""


def probe(cache) -> tuple[str, int]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    digest, compiled = done.stdout.split()
    return digest, int(compiled)


def test_a_kernel_compiled_in_this_process_and_one_loaded_from_the_cache_compute_the_same_bits(tmp_path):
    fresh, compiled = probe(tmp_path)
    loaded, compiled_again = probe(tmp_path)
    assert compiled == 10 and compiled_again == 0  # five kernels, two dtypes: compiled once, then loaded
    assert loaded == fresh


def test_the_kernels_fast_math_cannot_change_a_finite_result():
    from rnnkit.kernels.jit import JIT, REDUCE

    value_changing = {"fast", "contract", "reassoc", "arcp", "afn"}
    assert not JIT["fastmath"] & value_changing
    assert REDUCE["fastmath"] - JIT["fastmath"] == {"reassoc", "contract"}  # the row sums alone
