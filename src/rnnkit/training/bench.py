"""`rnnkit bench`: time RNN / LSTM / GRU (and a 2-layer bidirectional LSTM) against torch, each library in its own
process, in turns; GFLOP/s against the machine's peak and a GEMM ceiling; peak memory.

Method. Both libraries get the same weights and inputs (float32, T steps, input size = H). Each library runs in its
own worker process with every thread pool pinned to ``--threads``, and the two take turns, one timed call per turn
(rnnkit, torch, rnnkit, torch, ...), the idle one stopped (`rnnkit.training.bench_processes` says why and how).
Each turn runs one untimed call, then the timed one; the figure of a configuration is the median over the
``--repeats`` turns (the minimum is reported too). "Train" is forward + backward (all parameter gradients and the
input gradient); "infer" is forward only (``rnnkit.no_grad`` and ``torch.inference_mode``). rnnkit runs the step
kernels chosen by ``RNNKIT_KERNELS`` (``rnnkit bench --kernels``); the header names them and the BLAS.

GFLOP arithmetic (`gemm_flops`; GEMMs only, pointwise work not counted). A layer of G gates, input size I, hidden
size H, batch B and T steps does, per direction, two forward GEMMs: the input projection (2·T·B·I·G·H flops) and
the recurrent products (2·T·B·H·G·H); backward does four: δx and δW_ih (each as many flops as the input projection),
δh and δW_hh (each as many as the recurrent products); so train = 3 × forward. Layer l > 0 of a stack reads the
D·H outputs of the layer below (I = D·H, D = 2 directions when bidirectional). The peak is the arithmetic peak of
``--threads`` cores (`rnnkit.machine.PEAK_METHOD`); the GEMM ceiling is the GFLOP/s of one (T·B × H)·(H × G·H)
NumPy GEMM measured in the rnnkit worker: the speed if the whole workload were a single large product.

Peak memory: the peak resident set size of one training call above the resident size just before it (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``), each library measured in a fresh process so that neither
reuses memory pooled by earlier runs, after one tiny call per code path so that loading code is not counted.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys

from .. import machine
from ..recurrent import catalog
from .bench_processes import Workers, alternate, child_environment
from .bench_worker import input_width

#: the cells with a ``torch.nn`` counterpart (from the cell catalogue) → their number of gates
GATES = {e.name: e.cell_class.num_gates for e in catalog.entries() if e.torch_name}
DEFAULT_BATCHES = (1, 16, 64)
DEFAULT_HIDDEN = (64, 256, 512)
#: the 2-layer bidirectional LSTM row: (batch, hidden)
STACKED_LSTM = (32, 256)
MODES = ("train", "infer")
LIBRARIES = ("rnnkit", "torch")


def gemm_flops(gates: int, hidden: int, batch: int, steps: int, mode: str, layers: int = 1,
               bidirectional: bool = False, input_size: int | None = None) -> float:
    """The flops of the GEMMs of one call (see the module's docstring): forward = Σ over layers and directions of
    2·T·B·(I + H)·G·H; train = 3 × forward."""
    directions = 2 if bidirectional else 1
    forward = 0.0
    for layer in range(layers):
        inputs = (input_size or hidden) if layer == 0 else directions * hidden
        forward += directions * 2.0 * steps * batch * (inputs + hidden) * gates * hidden
    return 3 * forward if mode == "train" else forward


def grid(cells, batches, hiddens, steps: int, stacked: tuple[int, int] | None = STACKED_LSTM,
         input_size: int | None = None) -> list[dict]:
    """The configurations of a bench: every (cell, H, B) with one layer, its input ``input_size`` wide (None: H),
    then the 2-layer bidirectional LSTM of ``stacked`` = (batch, hidden), its input as wide as its state, where the
    LSTM is among ``cells`` (None: no such row)."""
    cases = [{"cell": cell, "batch": batch, "hidden": hidden, "input": input_size or hidden, "steps": steps,
              "layers": 1, "bidirectional": False}
             for cell in cells for hidden in hiddens for batch in batches]
    if stacked and "lstm" in cells:
        cases.append({"cell": "lstm", "batch": stacked[0], "hidden": stacked[1], "input": stacked[1],
                      "steps": steps, "layers": 2, "bidirectional": True})
    return cases


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else the CPU count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def memory_in_subprocess(library: str, case: dict, threads: int | None = None,
                         kernels: str | None = None) -> int | None:
    """Peak memory of one training call of ``case`` in ``library`` ('rnnkit' or 'torch'), in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "rnnkit.training.bench_worker", "memory", library,
                           json.dumps(case)], capture_output=True, text=True,
                          env=child_environment(threads, kernels))
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _spread(samples: list[dict], library: str) -> dict:
    times = [s["ms"] for s in samples if s["library"] == library]
    if not times:
        return {f"{library}_ms": None, f"{library}_min_ms": None, f"{library}_samples_ms": [],
                f"{library}_pid": None}
    pid = {s["pid"] for s in samples if s["library"] == library}.pop()
    return {f"{library}_ms": statistics.median(times), f"{library}_min_ms": min(times),
            f"{library}_samples_ms": times, f"{library}_pid": pid}


def record(case: dict, mode: str, samples: list[dict], peak: float | None, ceiling: float) -> dict:
    """The figures of one (configuration, mode) from its timed samples: medians, minima, ratio, GFLOP/s."""
    gflop = gemm_flops(GATES[case["cell"]], case["hidden"], case["batch"], case["steps"], mode,
                       case["layers"], case["bidirectional"], input_width(case)) / 1e9
    r = {**case, "mode": mode, **_spread(samples, "rnnkit"), **_spread(samples, "torch"), "gflop": gflop}
    r["ratio"] = None if r["torch_ms"] is None else r["torch_ms"] / r["rnnkit_ms"]
    r["rnnkit_gflops"] = gflop / (r["rnnkit_ms"] / 1e3)
    r["torch_gflops"] = None if r["torch_ms"] is None else gflop / (r["torch_ms"] / 1e3)
    r["peak_gflops"], r["ceiling_gflops"] = peak, ceiling
    r["peak_fraction"] = None if not peak else r["rnnkit_gflops"] / peak
    r["ceiling_fraction"] = r["rnnkit_gflops"] / ceiling
    r["turns"] = turns_of(samples)
    r["steal_ms"] = steal_by_library(samples)
    return r


def turns_of(samples: list[dict]) -> list[dict]:
    """What the JSON keeps of each timed turn: whose, when, the host's steal time over it and the cores' distance
    before it (`rnnkit.training.bench_processes.alternate`)."""
    return [{k: s.get(k) for k in ("library", "pid", "start", "end", "steal_ms", "round_trip_ns")} for s in samples]


def steal_by_library(samples: list[dict]) -> dict[str, float | None]:
    """Each library's host steal time over its turns, ms (None where the system does not count it)."""
    totals: dict[str, float | None] = {}
    for s in samples:
        counted = totals.get(s["library"], 0.0)
        totals[s["library"]] = None if counted is None or s["steal_ms"] is None else counted + s["steal_ms"]
    return totals


def steal_line(records: list[dict]) -> str | None:
    """One line for the end of a bench: the host's steal time over each library's turns, and the time their timed
    calls took; None where the system does not count it."""
    totals: dict[str, float] = {}
    for r in records:
        for library, ms in r["steal_ms"].items():
            if ms is None:
                return None
            totals[library] = totals.get(library, 0.0) + ms
    timed = sum(sum(t["end"] - t["start"] for t in r.get("turns", ())) for r in records)
    each = ", ".join(f"{library} {ms:.0f} ms" for library, ms in totals.items())
    took = f" (their timed calls took {timed:.1f} s)" if timed else ""
    return (f"host steal time over each library's turns (/proc/stat): {each}{took}; above 0, the host ran other "
            "work on these CPUs meanwhile, which can slow the turns")


def distance_line(records: list[dict]) -> str | None:
    """One line for the end of a bench: before how many of each library's turns the two cores were far apart
    (`rnnkit.kernels.distance`); None where no turn's distance was measured."""
    counts: dict[str, list[int]] = {}
    for r in records:
        for turn in r.get("turns", ()):
            if turn.get("round_trip_ns") is not None:
                far, measured = counts.setdefault(turn["library"], [0, 0])
                counts[turn["library"]] = [far + (turn["round_trip_ns"] >= _far_ns()), measured + 1]
    if not counts:
        return None
    each = ", ".join(f"{far} of {measured} {library} turns" for library, (far, measured) in counts.items())
    return (f"the two cores were far apart (a cache line's round trip of {_far_ns():.0f} ns or more, measured "
            f"before each turn) before {each}; far apart, loops that meet on both cores at every step (rnnkit's "
            "teams, torch's threads) run slower, so runs with different shares differ")


def _far_ns() -> float:
    from ..kernels.distance import FAR_NS  # only where a distance was measured, so numba is there

    return FAR_NS


def run(cases: list[dict], threads: int | None = None, repeats: int = 5, warmup: int = 2, with_torch: bool = True,
        memory: bool = True, kernels: str | None = None, progress=None, meta: dict | None = None):
    """Time every case in both modes; yield one record per (case, mode) (see `record`). ``meta``, where given,
    receives the workers' pids and thread pools."""
    threads = threads or available_cores()
    libraries = LIBRARIES if with_torch else LIBRARIES[:1]
    peak = machine.peak_gflops(threads)
    with Workers(libraries, threads, kernels) as workers:
        if meta is not None:
            meta.update(threads=threads, **workers.meta())
        for case in cases:
            g = GATES[case["cell"]] * case["hidden"]
            ceiling = workers["rnnkit"].request("ceiling", rows=case["steps"] * case["batch"], inner=case["hidden"],
                                                cols=g)["gflops"]
            records = {}
            for mode in MODES:
                cases_by_key = {lib: {**case, "mode": mode} for lib in libraries}
                samples = list(alternate([(workers[lib], lib) for lib in libraries], repeats, warmup, cases_by_key))
                records[mode] = record(case, mode, samples, peak, ceiling)
            # measured after the timing, whose workers have compiled (and cached) the case's kernels: a process
            # that compiles them first measured a call 1.9 MiB lower than one that loads them from the cache
            mem = {f"{lib}_peak_bytes": memory_in_subprocess(lib, case, threads, kernels)
                   for lib in libraries} if memory else {}
            for mode in MODES:
                yield records[mode] | (mem if mode == "train" else {})
            if progress:
                progress()


def label(r: dict) -> str:
    """A row's cell, with its stack and its input where it is not as wide as the state: ``lstm``, ``lstm×2 bi``
    for a 2-layer bidirectional LSTM, ``lstm i64`` for an input 64 wide."""
    stack = f"×{r.get('layers', 1)}" if r.get("layers", 1) != 1 else ""
    narrow = f" i{input_width(r)}" if input_width(r) != r["hidden"] else ""
    return r["cell"] + stack + (" bi" if r.get("bidirectional") else "") + narrow


def _cell(value, width: int, fmt: str) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}{fmt}}"


def _mebibytes(size: int | None, width: int) -> str:
    return f"{'':>{width}}" if size is None else f"{size / 2**20:{width}.1f}"


def format_table(records: list[dict]) -> str:
    """A fixed-width table of the records (one row per configuration and mode)."""
    header = (f"{'cell':<10}{'B':>4}{'H':>5} {'mode':<6}{'rnnkit ms':>10}{'min':>9}{'torch ms':>10}{'min':>9}"
              f"{'ratio':>7}{'GFLOP/s':>9}{'torch':>7}{'peak %':>8}{'ceil %':>8}{'mem MiB':>9}{'torch MiB':>10}")
    lines = [header, "-" * len(header)]
    for r in records:
        mem, tmem = r.get("rnnkit_peak_bytes"), r.get("torch_peak_bytes")
        peak = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
        lines.append(
            f"{label(r):<10}{r['batch']:>4}{r['hidden']:>5} {r['mode']:<6}{r['rnnkit_ms']:10.2f}"
            f"{r['rnnkit_min_ms']:9.2f}{_cell(r['torch_ms'], 10, '.2f')}{_cell(r['torch_min_ms'], 9, '.2f')}"
            f"{_cell(r['ratio'], 7, '.2f')}{r['rnnkit_gflops']:9.1f}{_cell(r['torch_gflops'], 7, '.1f')}"
            f"{_cell(peak, 8, '.1f')}{100 * r['ceiling_fraction']:8.1f}"
            f"{_mebibytes(mem, 9)}{_mebibytes(tmem, 10)}")
    return "\n".join(lines)


def to_json(records: list[dict], meta: dict) -> str:
    return json.dumps({"meta": meta, "results": records}, indent=1)
