"""Checking rnnkit itself: ``gradcheck`` (every backward against central differences), ``bench`` (speed against
torch) and ``info`` (the BLAS, its kernel, the CPU's vector width and the step kernels in use)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
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


@click.command()
@click.option("--cells", "--cell", "cells", default="rnn,lstm,gru", show_default=True,
              help="Comma-separated subset of rnn,lstm,gru.")
@click.option("--batch", "--batch-size", "batches", default="1,16,64", show_default=True,
              help="Comma-separated batch sizes.")
@click.option("--hidden", "--hidden-size", "hiddens", default="64,256,512", show_default=True,
              help="Comma-separated hidden sizes (input size = hidden size).")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Time steps T of each timed sequence.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for both NumPy's BLAS and torch [all cores].")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed calls per case (the median is reported).")
@click.option("--no-torch", is_flag=True, help="Time rnnkit alone.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
@click.option("--kernels", type=click.Choice(["compiled", "numpy"]), default=None,
              help="rnnkit's step kernels [RNNKIT_KERNELS, else compiled where numba is installed].")
@click.option("--variants", is_flag=True, help="Instead: the newer cells and the regularisers (dropout, zoneout, "
              "weight drop), each relative to the plain LSTM/GRU/RNN of the same size (ratio = variant / plain).")
def bench(cells, batches, hiddens, steps, threads, repeats, no_torch, no_memory, json_path, kernels, variants):
    """Time forward and forward+backward of RNN, LSTM and GRU against torch (see docs/performance.md).

    \b
    Columns: 'rnnkit ms' and 'torch ms' per call ('train' = forward + backward, 'infer' = forward under no_grad);
    'ratio' = torch ms / rnnkit ms (above 1: rnnkit is faster); 'GFLOP/s' = rnnkit's useful arithmetic per second;
    'ceil %' = that throughput as a share of one NumPy GEMM of the same total size (the BLAS ceiling here);
    'mem MiB' / 'torch MiB' = peak memory of the call.
    """
    from .. import machine
    from ..training import bench as bench_lib

    cell_list = tuple(c.strip() for c in cells.split(","))
    unknown = sorted(set(cell_list) - set(bench_lib.GATES))
    if unknown:
        fail(f"--cells must be a subset of {','.join(bench_lib.GATES)}, got {', '.join(unknown)}")
    batch_sizes, hidden_sizes = _ints(batches, "batch"), _ints(hiddens, "hidden")
    refuse_existing(json_path, "--json")
    _bench_fits(max(batch_sizes), max(hidden_sizes), steps)
    if not no_torch and not variants and importlib.util.find_spec("torch") is None:
        click.echo("rnnkit: note: torch is not installed, so rnnkit is timed alone (pip install torch to compare; "
                   "--no-torch silences this note)", err=True)
        no_torch = True
    if os.environ.get("RNNKIT_BENCH_CHILD") != "1":  # time in a child whose BLAS/OpenMP threads do not spin
        args = ["bench", "--cells", cells, "--batch", batches, "--hidden", hiddens, "--steps", str(steps),
                "--repeats", str(repeats)] + (["--threads", str(threads)] if threads else []) \
            + (["--no-torch"] if no_torch else []) + (["--no-memory"] if no_memory else []) \
            + (["--json", json_path] if json_path else []) + (["--variants"] if variants else [])
        env = bench_lib.child_environment() | ({"RNNKIT_KERNELS": kernels} if kernels else {})
        child = subprocess.run([sys.executable, "-m", "rnnkit", *args], env=env)
        if child.returncode:
            sys.exit(child.returncode)
        return
    report = machine.report()
    for line in report:
        click.echo(line, err=True)
    if variants:
        return _bench_variants(batch_sizes, hidden_sizes, steps, threads, repeats, json_path, report)
    records = list(bench_lib.run(cell_list, batch_sizes, hidden_sizes, steps=steps,
                                 threads=threads, repeats=repeats, with_torch=not no_torch, memory=not no_memory))
    click.echo(bench_lib.format_table(records))
    if json_path:
        meta = {"steps": steps, "threads": threads or os.cpu_count(), "repeats": repeats,
                "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": report}
        atomic_write(json_path, bench_lib.to_json(records, meta))


def _bench_fits(batch: int, hidden: int, steps: int) -> None:
    """A one-line error unless the largest benchmark fits in memory: an LSTM's weights, gradients and Adam-free
    float32 activations (inputs, output gradients, gates and their gradients per step), torch's copy too."""
    from ..validate import fits_in_memory

    elements = 2 * (4 * hidden * 2 * hidden) + batch * steps * hidden * (2 + 6 * 4)
    fits_in_memory(elements, 4, f"bench at --batch {batch} --hidden {hidden} --steps {steps}", copies=2)


def _bench_variants(batch_sizes, hidden_sizes, steps, threads, repeats, json_path, report) -> None:
    """`bench --variants`: each variant against its plain cell, for every (B, H)."""
    from threadpoolctl import threadpool_limits

    from ..training import bench as bench_lib
    from ..training import bench_variants

    with threadpool_limits(threads) if threads else _no_limit():
        records = [r for b in batch_sizes for h in hidden_sizes
                   for r in bench_variants.run(batch=b, hidden=h, steps=steps, repeats=repeats)]
    click.echo(bench_variants.format_table(records))
    if json_path:
        meta = {"steps": steps, "threads": threads or os.cpu_count(), "repeats": repeats,
                "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": report}
        atomic_write(json_path, bench_lib.to_json(records, meta))


def _no_limit():
    from contextlib import nullcontext

    return nullcontext()


@click.command()
def info():
    """Print what runs rnnkit's math here: versions, the BLAS and its kernel, the CPU's vector width, step kernels."""
    from importlib.metadata import version

    from .. import machine

    click.echo(f"rnnkit {version('rnnkit')}, NumPy {np.__version__}, Python {sys.version.split()[0]}")
    for line in machine.report():
        click.echo(line)
