"""`rnnkit bench`: time RNN / LSTM / GRU against torch in the same process, with a GEMM ceiling and peak memory.

Method: for each (cell, B, H) both implementations get the same weights and inputs (float32, T steps, input size
= H, one layer). Runs are interleaved (rnnkit, torch, rnnkit, torch, ...) after warm-up and the median is
reported; both use the same number of threads (threadpoolctl limits NumPy's BLAS, ``torch.set_num_threads``
limits torch). "Train" is forward + backward (all parameter gradients and the input gradient); "infer" is forward
only (``rnnkit.no_grad`` and ``torch.inference_mode``). rnnkit runs the step kernels chosen by
``RNNKIT_KERNELS`` (``rnnkit bench --kernels``); the report's first lines name them, the BLAS and its kernel.

GFLOP arithmetic (GEMMs only; pointwise work is not counted): with G gates, the forward pass is two GEMMs of
2·T·B·H·G·H flops each (input projection and recurrent matmuls); backward is four more (δx, δW_ih, δh, δW_hh),
so train = 3 × forward. The GEMM ceiling is the throughput of one (T·B × H) @ (H × G·H) NumPy GEMM measured in
the same run: the speed if the whole workload were a single large matrix product.

Threads that spin. After a GEMM, OpenBLAS's worker threads busy-wait (2^28 cycles by default) and torch's OpenMP
threads do likewise after a parallel region; interleaving the two libraries in one process then has each steal
the other's cores (seen here: torch's GRU at B=1 slowed from 7 to 63 ms). `rnnkit bench` therefore runs the
timing in a child process with ``OPENBLAS_THREAD_TIMEOUT=4``, so OpenBLAS's workers sleep almost at once.
torch's OpenMP threads are left as they are: ``OMP_WAIT_POLICY=PASSIVE`` slowed torch's small cases by up to
25× here, which would flatter rnnkit.

Peak memory: the peak resident set size of one training step above the resident size just before it (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``), each measured in a fresh process so that neither library
reuses memory pooled by earlier runs. Before it, each library runs one tiny step (4 units, 2 steps) per code
path, so that loading its code — torch's kernels, rnnkit's compiled kernels (numba and LLVM, ~70 MiB) — is not
counted as memory the step needs.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..module import no_grad
from ..recurrent import catalog

#: the cells with a ``torch.nn`` counterpart (from the cell catalogue) → their number of gates
GATES = {e.name: e.cell_class.num_gates for e in catalog.entries() if e.torch_name}
DEFAULT_BATCHES = (1, 16, 64)
DEFAULT_HIDDEN = (64, 256, 512)


@dataclass
class Result:
    cell: str
    batch: int
    hidden: int
    steps: int
    mode: str  # "train" or "infer"
    rnnkit_ms: float
    torch_ms: float | None
    gflop: float
    ceiling_gflops: float

    @property
    def ratio(self) -> float | None:
        return None if self.torch_ms is None else self.torch_ms / self.rnnkit_ms

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rnnkit_gflops"] = self.gflop / (self.rnnkit_ms / 1e3)
        d["torch_gflops"] = None if self.torch_ms is None else self.gflop / (self.torch_ms / 1e3)
        d["ratio"] = self.ratio
        d["ceiling_fraction"] = d["rnnkit_gflops"] / self.ceiling_gflops
        return d


def _vm(field: str) -> int | None:
    """A memory field of /proc/self/status in bytes (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_step_memory(step) -> int | None:
    """Peak RSS of ``step()`` above the RSS before it, in bytes (None where the kernel cannot say)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark VmHWM
    except OSError:
        return None
    before = _vm("VmRSS")
    step()
    peak = _vm("VmHWM")
    return None if before is None or peak is None else max(peak - before, 0)


def memory_in_subprocess(library: str, cell: str, batch: int, hidden: int, steps: int) -> int | None:
    """Peak memory of one training step of ``library`` ('rnnkit' or 'torch'), measured in a fresh process."""
    code = (f"from rnnkit.training.bench import _memory_child; "
            f"_memory_child({library!r}, {cell!r}, {batch}, {hidden}, {steps})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_environment())
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _warm_up(library: str, cell: str) -> None:
    """One tiny training step per code path (the compiled kernels' whole-sequence and per-step paths; torch's first
    call), so that loading each library's code is not counted as the memory a step needs."""
    for batch in (1, 80):
        ours, theirs = _pair(cell, 4, library == "torch")
        x = np.ones((batch, 2, 4), np.float32)
        if library == "torch":
            import torch

            y, _ = theirs(torch.from_numpy(x))
            y.sum().backward()
        else:
            y, _ = ours.forward(x)
            ours.backward(np.ones_like(y))


def _memory_child(library: str, cell: str, batch: int, hidden: int, steps: int) -> None:
    _warm_up(library, cell)
    ours, theirs = _pair(cell, hidden, library == "torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    dy = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    if library == "torch":
        import torch

        xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

        def step():
            y, _ = theirs(xt)
            y.backward(dyt)
    else:
        def step():
            ours.forward(x)
            ours.backward(dy)
    print(peak_step_memory(step))


def child_environment() -> dict:
    """The environment for timing/memory children: worker threads sleep instead of spinning (see above)."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env["RNNKIT_BENCH_CHILD"] = "1"
    return env


def gemm_ceiling(rows: int, inner: int, cols: int, repeats: int = 5) -> float:
    """GFLOP/s of a float32 (rows × inner) @ (inner × cols) NumPy GEMM, median of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    b = rng.standard_normal((inner, cols), dtype=np.float32)
    out = np.empty((rows, cols), np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    return 2.0 * rows * inner * cols / statistics.median(times) / 1e9


def _median_interleaved(fns, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return [statistics.median(ts) * 1e3 for ts in times]


def _pair(cell: str, hidden: int, with_torch: bool):
    entry = catalog.entry(cell)
    ours = entry.layer(hidden, hidden, rng=0)
    theirs = None
    if with_torch:
        import torch

        theirs = getattr(torch.nn, entry.torch_name)(hidden, hidden, batch_first=True)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def run(cells=tuple(GATES), batches=DEFAULT_BATCHES, hiddens=DEFAULT_HIDDEN, steps: int = 100,
        threads: int | None = None, repeats: int = 5, warmup: int = 2, with_torch: bool = True, memory: bool = True,
        progress=None):
    """Run the grid; yield one dict per (cell, B, H, mode) with timings, GFLOP/s, ratios and memory."""
    from threadpoolctl import threadpool_limits

    if with_torch:
        try:
            import torch
        except ImportError:
            with_torch = False
    limit = threadpool_limits(threads) if threads else None
    if with_torch and threads:
        torch.set_num_threads(threads)
    try:
        for cell in cells:
            for hidden in hiddens:
                for batch in batches:
                    yield from _one(cell, batch, hidden, steps, repeats, warmup, with_torch, memory)
                    if progress:
                        progress()
    finally:
        if limit is not None:
            limit.restore_original_limits()


def _one(cell, batch, hidden, steps, repeats, warmup, with_torch, memory):
    ours, theirs = _pair(cell, hidden, with_torch)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    dy = rng.standard_normal((batch, steps, hidden), dtype=np.float32)

    def ours_train():
        ours.forward(x)
        ours.backward(dy)

    def ours_infer():
        with no_grad():
            ours.forward(x)

    fns_train, fns_infer = [ours_train], [ours_infer]
    if theirs is not None:
        import torch

        xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

        def torch_train():
            y, _ = theirs(xt)
            y.backward(dyt)

        def torch_infer():
            with torch.inference_mode():
                theirs(xt)

        fns_train.append(torch_train)
        fns_infer.append(torch_infer)
    g = GATES[cell] * hidden
    forward_gflop = 2 * 2.0 * steps * batch * hidden * g / 1e9
    ceiling = gemm_ceiling(steps * batch, hidden, g)
    mem = {}
    if memory:
        mem["rnnkit_peak_bytes"] = memory_in_subprocess("rnnkit", cell, batch, hidden, steps)
        if theirs is not None:
            mem["torch_peak_bytes"] = memory_in_subprocess("torch", cell, batch, hidden, steps)
    for mode, fns, gflop in (("train", fns_train, 3 * forward_gflop), ("infer", fns_infer, forward_gflop)):
        times = _median_interleaved(fns, repeats, warmup)
        result = Result(cell, batch, hidden, steps, mode, times[0], times[1] if len(times) > 1 else None, gflop,
                        ceiling)
        record = result.as_dict()
        if mode == "train":
            record.update(mem)
        yield record


def format_table(records: list[dict]) -> str:
    """A fixed-width table of the records (one row per cell, B, H, mode)."""
    header = (f"{'cell':<5}{'B':>4}{'H':>5} {'mode':<6}{'rnnkit ms':>10}{'torch ms':>10}{'ratio':>7}"
              f"{'GFLOP/s':>9}{'ceil %':>8}{'mem MiB':>9}{'torch MiB':>10}")
    lines = [header, "-" * len(header)]
    for r in records:
        torch_ms = f"{r['torch_ms']:10.2f}" if r["torch_ms"] is not None else f"{'-':>10}"
        ratio = f"{r['ratio']:7.2f}" if r["ratio"] is not None else f"{'-':>7}"
        mem = r.get("rnnkit_peak_bytes")
        tmem = r.get("torch_peak_bytes")
        mem_s = f"{mem / 2**20:9.1f}" if mem is not None else f"{'':>9}"
        tmem_s = f"{tmem / 2**20:10.1f}" if tmem is not None else f"{'':>10}"
        lines.append(f"{r['cell']:<5}{r['batch']:>4}{r['hidden']:>5} {r['mode']:<6}{r['rnnkit_ms']:10.2f}{torch_ms}"
                     f"{ratio}{r['rnnkit_gflops']:9.1f}{100 * r['ceiling_fraction']:8.1f}{mem_s}{tmem_s}")
    return "\n".join(lines)


def to_json(records: list[dict], meta: dict) -> str:
    return json.dumps({"meta": meta, "results": records}, indent=1)
