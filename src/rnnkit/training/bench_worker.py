"""The process that times one library for `rnnkit bench`: ``python -m rnnkit.training.bench_worker LIBRARY THREADS
PARENT``.

`rnnkit bench` starts one such worker per library (``rnnkit`` or ``torch``), so that neither library's threads
share a process with the other's. At start the worker pins every thread pool it runs to THREADS (threadpoolctl
for the BLAS and OpenMP libraries, ``torch.set_num_threads``, ``numba.set_num_threads``; the parent also sets
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``NUMBA_NUM_THREADS``) and dies with
PARENT. It then answers requests, one JSON object per line on stdin, with one JSON object per line on stdout (its
own prints go to stderr, so nothing else reaches the pipe; never pickle):

* ``{"op": "hello"}`` → ``{"pid", "library", "version", "threads": {pool: count}}``, the library's version as it
  reports it (`library_version`) and the thread counts as the pools report them;
* ``{"op": "prepare", "key", "case", "warmup"}`` → builds the layer and inputs of ``case`` (see `make_call`) and
  runs ``warmup`` untimed calls;
* ``{"op": "time", "key"}`` → one untimed call (the caches held the other library's data a moment ago), then one
  timed call: ``{"ms", "start", "end", "pid"}``, start and end on the system-wide monotonic clock;
* ``{"op": "ceiling", "rows", "inner", "cols"}`` → the GFLOP/s of one float32 NumPy GEMM of that size;
* ``{"op": "clear"}`` drops every prepared case; ``{"op": "exit"}`` ends the worker.

A request that fails is answered ``{"error": "one line", "kind": "dependency" | "config" | "internal"}``.
``python -m rnnkit.training.bench_worker memory CASE_JSON`` instead prints the peak memory of one training call
of the case in this fresh process (see `rnnkit.training.bench.memory_in_subprocess`).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from contextlib import nullcontext

import numpy as np

from ..allocator import keep_large_blocks
from ..errors import ConfigError, DependencyError, RnnkitError
from ..module import no_grad
from ..recurrent import catalog


def pin_threads(library: str, threads: int) -> dict:
    """Limit every thread pool ``library`` uses to ``threads``; return the counts the pools now report."""
    from threadpoolctl import threadpool_info, threadpool_limits

    counts = {}
    if library == "torch":
        import torch

        torch.set_num_threads(threads)
        counts["torch"] = torch.get_num_threads()
    else:
        from .. import kernels

        if kernels.active() is not None:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            counts["numba"] = numba.get_num_threads()
    threadpool_limits(threads)  # every BLAS and OpenMP library loaded by now (torch's included)
    for lib in threadpool_info():
        counts[f"{lib['internal_api']} ({os.path.basename(lib['filepath'])})"] = lib["num_threads"]
    return counts


def input_width(case: dict) -> int:
    """The input size of ``case``'s first layer (its hidden size in files from before ``--input-size``)."""
    return case.get("input", case["hidden"])


def build_layer(case: dict):
    """The rnnkit layer of ``case``: its ``cell`` from the catalogue, ``hidden`` units, input size ``input``,
    ``layers`` layers, bidirectional or not, the constructor ``options`` and the ``regularize`` rates."""
    entry = catalog.entry(case["cell"])
    stack = {"num_layers": case["layers"]} if case.get("layers", 1) != 1 else {}
    stack |= {"bidirectional": True} if case.get("bidirectional") else {}
    layer = entry.layer(input_width(case), case["hidden"], rng=0, **stack, **case.get("options", {}))
    rates = case.get("regularize") or {}
    return layer.regularize(**rates) if rates else layer


def torch_twin(layer, case: dict):
    """The ``torch.nn`` layer with ``layer``'s weights (the catalogue names the class)."""
    try:
        import torch
    except ImportError:
        raise DependencyError("bench: torch is not installed (pip install torch)") from None
    entry = catalog.entry(case["cell"])
    if entry.torch_name is None or case.get("options") or case.get("regularize"):
        raise ConfigError(f"bench: no torch counterpart for {case['cell']} with {case.get('options')} "
                          f"{case.get('regularize')}")
    twin = getattr(torch.nn, entry.torch_name)(input_width(case), case["hidden"], num_layers=case.get("layers", 1),
                                               bidirectional=case.get("bidirectional", False), batch_first=True)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    return twin


def inputs(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """The float32 input (B, T, I) and output gradient (B, T, D·H) of ``case``, the same in every process."""
    rng = np.random.default_rng(1)
    width = case["hidden"] * (2 if case.get("bidirectional") else 1)
    x = rng.standard_normal((case["batch"], case["steps"], input_width(case)), dtype=np.float32)
    dy = rng.standard_normal((case["batch"], case["steps"], width), dtype=np.float32)
    return x, dy


def make_call(library: str, case: dict):
    """The function that runs ``case`` once in ``library``: ``mode`` "train" = forward + backward (every parameter
    gradient and the input gradient) in training mode; "infer" = forward under no_grad / inference_mode."""
    layer = build_layer(case)
    x, dy = inputs(case)
    if library == "torch":
        return _torch_call(torch_twin(layer, case), x, dy, case["mode"])
    if case["mode"] == "train":
        def train():
            layer.train()
            layer.forward(x)
            layer.backward(dy)
        return train

    def infer():
        layer.eval()
        with no_grad():
            layer.forward(x)
    return infer


def _torch_call(twin, x, dy, mode: str):
    import torch

    xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
    if mode == "train":
        def train():
            y, _ = twin(xt)
            y.backward(dyt)
        return train

    def infer():
        with torch.inference_mode():
            twin(xt)
    return infer


def library_version(library: str) -> str:
    """``library``'s version as it reports it: rnnkit's, or torch's ``torch.__version__``, which names its build
    too (``2.13.0+cpu``; a CUDA build has none or ``+cu…``). The builds of one torch release can time differently on
    the CPU, so a ratio against torch is read with the version it was measured against."""
    if library == "torch":
        import torch

        return torch.__version__
    from .. import __version__

    return __version__


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


class Worker:
    """The requests of one worker process (see the module's docstring)."""

    def __init__(self, library: str, threads: int):
        self.library, self.calls = library, {}
        self.threads = pin_threads(library, threads)

    def hello(self, request: dict) -> dict:
        return {"pid": os.getpid(), "library": self.library, "version": library_version(self.library),
                "threads": self.threads}

    def prepare(self, request: dict) -> dict:
        call = make_call(self.library, request["case"])
        for _ in range(request.get("warmup", 1)):
            call()
        self.calls[request["key"]] = call
        return {}

    def time(self, request: dict) -> dict:
        call = self.calls[request["key"]]
        call()
        start = time.monotonic()
        t = time.perf_counter()
        call()
        ms = (time.perf_counter() - t) * 1e3
        return {"ms": ms, "start": start, "end": time.monotonic(), "pid": os.getpid()}

    def ceiling(self, request: dict) -> dict:
        return {"gflops": gemm_ceiling(request["rows"], request["inner"], request["cols"])}

    def clear(self, request: dict) -> dict:
        self.calls.clear()
        return {}

    def answer(self, request: dict) -> dict:
        handlers = {"hello": self.hello, "prepare": self.prepare, "time": self.time, "ceiling": self.ceiling,
                    "clear": self.clear}
        try:
            return handlers[request["op"]](request)
        except (ImportError, DependencyError) as e:
            return {"error": str(e).splitlines()[0] if str(e) else type(e).__name__, "kind": "dependency"}
        except RnnkitError as e:
            return {"error": str(e), "kind": "config"}
        except Exception as e:  # noqa: BLE001  (reported to the parent, which raises it as an internal error)
            return {"error": f"{type(e).__name__}: {e}", "kind": "internal"}


def serve(library: str, threads: int, parent: int) -> None:
    """Answer requests on stdin until ``exit`` or end of input; replies go to the original stdout only."""
    from .executors import die_with_parent

    die_with_parent(parent)
    keep_large_blocks()  # the same allocator policy for both libraries (rnnkit.allocator)
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to stderr
    sys.stdout = sys.stderr
    try:
        worker = Worker(library, threads)
    except (ImportError, RnnkitError) as e:
        worker = None
        failure = {"error": str(e).splitlines()[0], "kind": "dependency"}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        reply = worker.answer(request) if worker is not None else failure
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _warm_up_code(library: str, case: dict) -> None:
    """One tiny training call per code path (whole-sequence and per-step; rnnkit's loop alone, as a team and as a
    pipeline, which numba compiles apart; a bidirectional case's directions at once, which tiny calls otherwise run
    in turn), so that loading each library's code (torch's kernels, rnnkit's compiled kernels: numba and LLVM,
    30 – 70 MiB; the directions' worker thread) is not counted as the call's memory."""
    from ..kernels import parallel

    rnnkit_code = library == "rnnkit"
    with parallel.using_pairs("always") if rnnkit_code else nullcontext():
        for batch in (1, 80):
            make_call(library, {**case, "batch": batch, "hidden": 4, "steps": 2, "mode": "train"})()
    if rnnkit_code:
        for pipelines in ("never", "always"):
            with parallel.using_teams("always"), parallel.using_pipelines(pipelines):
                make_call(library, {**case, "batch": 2, "hidden": 64, "steps": 2, "mode": "train"})()


def measure_memory(library: str, case: dict) -> None:
    """Print the peak memory of one training call of ``case`` in ``library``, in bytes (or None)."""
    from .bench import peak_step_memory

    keep_large_blocks()
    _warm_up_code(library, case)
    print(peak_step_memory(make_call(library, {**case, "mode": "train"})))


if __name__ == "__main__":
    if sys.argv[1] == "memory":
        measure_memory(sys.argv[2], json.loads(sys.argv[3]))
    else:
        serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
