"""Checking rnnkit itself: ``gradcheck`` (every backward against central differences), ``bench`` (speed against
torch) and ``info`` (the BLAS, its kernel, the CPU's vector width and the step kernels in use)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import click
import numpy as np

from ..training.files import atomic_write
from .common import fail, refuse_existing
from .options import TOLERANCE


@click.command("gradcheck")
@click.option("--tol", type=TOLERANCE, default=1e-6, show_default=True, help="Largest relative error that passes.")
def gradcheck_command(tol):
    """Check every layer's backward pass against float64 central differences."""
    from ..training.gradcheck_suite import run_suite

    worst = 0.0
    click.echo(f"{'error':>9}  {'':4}  layer")
    for name, err in run_suite():  # the name last, so that a long one never shifts the columns
        worst = max(worst, err)
        click.echo(f"{err:9.2e}  {'ok' if err < tol else 'FAIL':<4}  {name}")
    click.echo(f"worst relative error {worst:.2e} (tolerance {tol:g})")
    sys.exit(0 if worst < tol else 1)


def _ints(text: str, name: str) -> tuple[int, ...]:
    """Comma-separated positive integers, or a one-line error naming the flag."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        fail(f"--{name} takes comma-separated integers, got {text!r}")
    if min(values) < 1:
        fail(f"--{name} values must be >= 1, got {text!r}")
    return values


def _stacked(text: str) -> tuple[int, int] | None:
    """``--stacked-lstm``: "B,H", or "none"."""
    if text.strip().lower() == "none":
        return None
    values = _ints(text, "stacked-lstm")
    if len(values) != 2:
        fail(f"--stacked-lstm takes the batch and hidden size as B,H (or none), got {text!r}")
    return values


@click.command()
@click.option("--cells", "--cell", "cells", default="rnn,lstm,gru", show_default=True,
              help="Comma-separated subset of rnn,lstm,gru.")
@click.option("--batch", "--batch-size", "batches", default="1,16,64", show_default=True,
              help="Comma-separated batch sizes.")
@click.option("--hidden", "--hidden-size", "hiddens", default="64,256,512", show_default=True,
              help="Comma-separated hidden sizes (input size = hidden size unless --input-size).")
@click.option("--input-size", type=click.IntRange(min=1), default=None,
              help="Input size of the one-layer rows (e.g. a character model's embedding, narrower than the "
              "state) [each row's hidden size].")
@click.option("--stacked-lstm", "stacked", default="32,256", show_default=True,
              help="B,H of the 2-layer bidirectional LSTM row (timed when lstm is among --cells), or 'none'.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Time steps T of each timed sequence.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of every pool in both libraries' processes [all cores].")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed turns per library and case (the median and the minimum are reported).")
@click.option("--no-torch", is_flag=True, help="Time rnnkit alone.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write every figure as JSON (compare two with benchmarks/bench_compare.py).")
@click.option("--kernels", type=click.Choice(["compiled", "numpy"]), default=None,
              help="rnnkit's step kernels [RNNKIT_KERNELS, else compiled where numba is installed].")
@click.option("--variants", is_flag=True, help="Instead: the newer cells and the regularisers (dropout, zoneout, "
              "weight drop), each relative to the plain LSTM/GRU/RNN of the same size (ratio = variant / plain).")
def bench(cells, batches, hiddens, input_size, stacked, steps, threads, repeats, no_torch, no_memory, json_path,
          kernels, variants):
    """Time forward and forward+backward of RNN, LSTM and GRU against torch (see docs/performance.md).

    \b
    How it measures: each library runs in its own worker process, every thread pool in it (BLAS and OpenMP through
    threadpoolctl, torch.set_num_threads, numba) pinned to --threads; the two take turns, one timed call each
    (rnnkit, torch, rnnkit, torch, ...), and the idle one is stopped (SIGSTOP) so that its spinning threads
    cannot steal the other's cores. Each turn runs one untimed call, then the timed one; the figure of a case is
    the median over --repeats turns (the minimum is shown too). Results travel from the workers as JSON. On
    Linux the last lines give the host's steal time over each library's turns (above 0, a hypervisor ran other
    work on these CPUs meanwhile, which can slow a run for stretches) and before how many turns the two cores
    were far apart (a virtual machine's CPUs can move between the host's cores every few seconds; far apart,
    loops that meet on both cores at every step run slower).

    \b
    Columns: 'rnnkit ms' and 'torch ms' per call, medians, each with its 'min' ('train' = forward + backward,
    'infer' = forward under no_grad); 'ratio' = torch ms / rnnkit ms (above 1: rnnkit is faster); 'GFLOP/s' =
    rnnkit's GEMM arithmetic per second (2·M·N·K for the input projection, the recurrent products and, in
    training, the input and weight gradients), 'torch' the same for torch; 'peak %' = that throughput as a share
    of the machine's peak (cores × GHz × flop/cycle from the CPU's vector width, the header says how); 'ceil %' =
    as a share of one NumPy GEMM of the same total size (the BLAS ceiling here); 'mem MiB' / 'torch MiB' = peak
    memory of the call. The header names the BLAS that runs the products.
    """
    from .. import kernels as kernel_choice
    from ..training import bench as bench_lib

    cell_list = tuple(c.strip() for c in cells.split(","))
    unknown = sorted(set(cell_list) - set(bench_lib.GATES))
    if unknown:
        fail(f"--cells must be a subset of {','.join(bench_lib.GATES)}, got {', '.join(unknown)}")
    batch_sizes, hidden_sizes, stacked_row = _ints(batches, "batch"), _ints(hiddens, "hidden"), _stacked(stacked)
    refuse_existing(json_path, "--json")
    if variants and input_size is not None:
        fail("--input-size sets the grid's rows; --variants times each variant at its hidden size")
    extra = stacked_row or ()
    _bench_fits(max(batch_sizes + extra[:1]), max(hidden_sizes + extra[1:] + (input_size or 0,)), steps, stacked_row)
    if not no_torch and not variants and importlib.util.find_spec("torch") is None:
        click.echo("rnnkit: note: torch is not installed, so rnnkit is timed alone (pip install torch to compare; "
                   "--no-torch silences this note)", err=True)
        no_torch = True
    if kernels:
        kernel_choice.use(kernels)
    meta = _bench_header(threads, repeats, steps)
    if variants:
        from ..training import bench_variants

        records = list(bench_variants.run(batches=batch_sizes, hiddens=hidden_sizes, steps=steps, repeats=repeats,
                                          threads=threads, kernels=kernels, meta=meta))
        click.echo(bench_variants.format_table(records))
    else:
        cases = bench_lib.grid(cell_list, batch_sizes, hidden_sizes, steps, stacked_row, input_size)
        records = list(bench_lib.run(cases, threads=threads, repeats=repeats, with_torch=not no_torch,
                                     memory=not no_memory, kernels=kernels, meta=meta))
        click.echo(bench_lib.format_table(records))
    _bench_footer(records, meta)
    if json_path:
        atomic_write(json_path, bench_lib.to_json(records, meta))


def _bench_footer(records: list[dict], meta: dict) -> None:
    """Print each worker's pid, library version and thread pools, then the host's steal time and the cores'
    distance over the turns."""
    from ..training import bench as bench_lib

    for lib, pools in meta["thread_pools"].items():
        click.echo(f"{lib} worker: pid {meta['workers'][lib]}, {lib} {meta['versions'][lib]}, threads "
                   + ", ".join(f"{pool} {count}" for pool, count in pools.items()))
    for line in (bench_lib.steal_line(records), bench_lib.distance_line(records)):
        if line:
            click.echo(line)


def _bench_header(threads: int | None, repeats: int, steps: int) -> dict:
    """Print the machine's lines (the BLAS backend, the peak and how it is estimated) and the method; return the
    JSON file's ``meta`` so far."""
    from threadpoolctl import threadpool_limits

    from .. import machine
    from ..training.bench import available_cores

    cores = threads or available_cores()
    with threadpool_limits(cores):  # this process's pools as the workers' will be
        report = machine.report(cores)
    for line in report:
        click.echo(line)
    method = (f"method: each library in its own process, turns alternating, every thread pool pinned to {cores}, "
              f"median (and min) of {repeats} timed calls per case")
    click.echo(method)
    return {"format": "rnnkit-bench", "version": 2, "pid": os.getpid(), "steps": steps, "repeats": repeats,
            "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": report, "method": method,
            "peak_method": machine.PEAK_METHOD, "clock_ghz": machine.cpu_clock()[0]}


def _bench_fits(batch: int, hidden: int, steps: int, stacked: tuple[int, int] | None = None) -> None:
    """A one-line error unless the largest benchmark fits in memory: an LSTM's weights, gradients and Adam-free
    float32 activations (inputs, output gradients, gates and their gradients per step), torch's copy too; the
    2-layer bidirectional row counts four such layers."""
    from ..validate import fits_in_memory

    layers = 4 if stacked else 1
    elements = layers * (2 * (4 * hidden * 2 * hidden) + batch * steps * hidden * (2 + 6 * 4))
    fits_in_memory(elements, 4, f"bench at --batch {batch} --hidden {hidden} --steps {steps}", copies=2)


@click.command()
def info():
    """Print what runs rnnkit's math here: versions, the BLAS and its kernel, the CPU's vector width, step kernels."""
    from importlib.metadata import version

    from .. import machine

    click.echo(f"rnnkit {version('rnnkit')}, NumPy {np.__version__}, Python {sys.version.split()[0]}")
    for line in machine.report():
        click.echo(line)
