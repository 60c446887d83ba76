"""The allocator policy of the compiled paths (`rnnkit.allocator`): on glibc, a layer's large per-call arrays reuse
the memory of the last call without fresh page faults; ``RNNKIT_MALLOC=system`` leaves malloc as it is (the
compiled kernels apply the policy when they load, so the children apply it themselves: the NumPy-only install too)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

CHILD = r"""
import resource, sys
import numpy as np
import rnnkit
from rnnkit.allocator import keep_large_blocks
applied = keep_large_blocks()
layer = getattr(rnnkit, sys.argv[1])(256, 256, rng=0)
x = np.ones((16, 100, 256), np.float32)  # its input projection: 1600 × 4H floats, 4.9 MB (GRU) per call
def faults_of_one_call():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with rnnkit.no_grad():
        layer.forward(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_call(), faults_of_one_call()
print(applied, min(faults_of_one_call() for _ in range(3)))
"""


def run_child(layer: str, **env) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", CHILD, layer], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    applied, faults = result.stdout.split()
    return applied, int(faults)


def test_an_lstm_call_reuses_the_memory_of_the_last_without_page_faults():
    """Pipelines off, so that only the policy is measured (a pipeline's writer takes panels of 2 MiB or more from
    pages mapped afresh on every call, on purpose: `rnnkit.kernels.panels.transient`)."""
    applied, faults = run_child("LSTM", RNNKIT_PIPELINES="never")
    assert applied == "True" and faults < 100


def test_rnnkit_malloc_system_leaves_glibcs_policy_which_maps_the_projection_afresh_every_call():
    """A GRU's inference call on the compiled path: the same call takes about 1 fault under the policy. (The LSTM's
    allocation pattern since its gates go over the projection, and the NumPy per-step path's, happen to reuse
    memory under glibc's own adaptive threshold.)"""
    pytest.importorskip("numba", reason="numba is not installed: the compiled path is not available")
    applied, faults = run_child("GRU", RNNKIT_MALLOC="system", RNNKIT_KERNELS="compiled")
    assert applied == "False" and faults > 1000  # 4.9 MB = 1,200 pages
