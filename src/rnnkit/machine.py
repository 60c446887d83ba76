"""What this machine offers the numerical core: the BLAS library and kernel in use, and the CPU's vector width.

Most of rnnkit's time is spent in GEMMs, so the BLAS kernel matters. OpenBLAS chooses its kernels from the CPU
model it detects; inside some virtual machines the model is hidden and it falls back to narrower kernels (for
example Haswell's 256-bit AVX2 kernels on a CPU with 512-bit AVX-512), which halves GEMM throughput. The choice
is made when NumPy loads OpenBLAS, so it can only be corrected before that, with ``OPENBLAS_CORETYPE``:

    OPENBLAS_CORETYPE=SkylakeX python my_training.py

`recommended_coretype` says when that is safe (the CPU reports every instruction-set extension the kernel
uses) and useful (the kernel in use is narrower). The ``rnnkit`` command applies it by itself (restarting once,
before any work, unless ``OPENBLAS_CORETYPE`` is already set or ``RNNKIT_BLAS_AUTO=0``), and ``rnnkit info``
and ``rnnkit bench`` print what is in use.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Vector width in bits of OpenBLAS's x86 kernels, by the core name ``threadpoolctl`` reports
OPENBLAS_KERNEL_BITS = {
    "skylakex": 512, "cooperlake": 512, "sapphirerapids": 512,
    "haswell": 256, "zen": 256, "sandybridge": 256,
    "nehalem": 128, "core2": 128, "penryn": 128, "dunnington": 128, "atom": 128, "prescott": 128,
}
#: The extensions OpenBLAS's SkylakeX kernels need (AVX-512 foundation, byte/word, dword/qword, vector length)
SKYLAKEX_NEEDS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's instruction-set flags (Linux; empty where /proc/cpuinfo is missing)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_vector_bits(flags: frozenset[str]) -> int | None:
    """The widest SIMD registers the CPU reports: 512 (AVX-512), 256 (AVX/AVX2), 128 (SSE2/NEON), or None."""
    if "avx512f" in flags:
        return 512
    if "avx2" in flags or "avx" in flags:
        return 256
    if flags & {"sse2", "asimd", "neon"}:
        return 128
    return None


def blas_info() -> dict:
    """The BLAS NumPy uses, from threadpoolctl: library, version, kernel (core) name and threads."""
    import numpy  # noqa: F401  (loads the BLAS so that threadpoolctl can see it)
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return {"library": lib.get("internal_api"), "version": lib.get("version"),
                    "kernel": lib.get("architecture"), "threads": lib.get("num_threads")}
    return {"library": None, "version": None, "kernel": None, "threads": None}


def kernel_bits(blas: dict) -> int | None:
    """The vector width of the BLAS kernel in use, where it is known (OpenBLAS on x86)."""
    if blas.get("library") != "openblas" or not blas.get("kernel"):
        return None
    return OPENBLAS_KERNEL_BITS.get(str(blas["kernel"]).lower())


def recommended_coretype(flags: frozenset[str], blas: dict) -> str | None:
    """``"SkylakeX"`` when OpenBLAS runs narrower kernels than this CPU supports and the CPU has every extension
    the SkylakeX kernels use; else None (nothing to gain, or not safe)."""
    bits = kernel_bits(blas)
    if bits is None or bits >= 512 or not SKYLAKEX_NEEDS <= flags:
        return None
    return "SkylakeX"


def report() -> list[str]:
    """Lines describing the BLAS, its kernel, the CPU's vector width and the step kernels, for people."""
    from . import kernels

    flags, blas = cpu_flags(), blas_info()
    cpu_bits, blas_bits = cpu_vector_bits(flags), kernel_bits(blas)
    lines = [f"BLAS: {blas['library'] or 'unknown'} {blas['version'] or ''} ({blas['threads']} threads), "
             f"kernel {blas['kernel'] or 'unknown'}" + (f" ({blas_bits}-bit)" if blas_bits else ""),
             f"CPU vector width: {cpu_bits or 'unknown'}" + ("-bit" if cpu_bits else ""),
             f"step kernels: {kernels.describe()}"]
    advice = recommended_coretype(flags, blas)
    if advice:
        source = "set by you" if "OPENBLAS_CORETYPE" in os.environ else "not set"
        lines.append(f"note: OpenBLAS runs narrower kernels than this CPU supports; OPENBLAS_CORETYPE={advice} "
                     f"before NumPy loads would use them (OPENBLAS_CORETYPE is {source})")
    return lines


def environment_with_best_blas(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The environment in which a restarted process would use the widest safe OpenBLAS kernels, or None when
    nothing should change (already best, not safe, the user chose OPENBLAS_CORETYPE, or RNNKIT_BLAS_AUTO=0)."""
    env = dict(os.environ if environ is None else environ)
    if "OPENBLAS_CORETYPE" in env or env.get("RNNKIT_BLAS_AUTO", "1") == "0":
        return None
    coretype = recommended_coretype(cpu_flags(), blas_info())
    if coretype is None:
        return None
    return {**env, "OPENBLAS_CORETYPE": coretype}
