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

import functools
import os
import platform
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


def blas_libraries() -> list[dict]:
    """Every BLAS loaded in this process (threadpoolctl), each with ``owner``: the package whose wheel ships it
    (``numpy``, ``scipy``, ...: the folder ``<package>.libs`` holding the file), else the file's name."""
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    from threadpoolctl import threadpool_info

    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS: the compiled loop calls it where NumPy's has no gemm)
    except ImportError:
        pass
    found = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            path = Path(lib.get("filepath") or "")
            owner = path.parent.name.removesuffix(".libs") if path.parent.name.endswith(".libs") else path.name
            found.append({"library": lib.get("internal_api"), "version": lib.get("version"), "owner": owner,
                          "kernel": lib.get("architecture"), "threads": lib.get("num_threads")})
    return sorted(found, key=lambda lib: lib["owner"] != "numpy")  # NumPy's first


def blas_backend() -> str:
    """Which BLAS runs rnnkit's products, in one line: NumPy's (the ``@`` of the NumPy paths and the whole-sequence
    GEMMs), and which one the compiled time loop calls (`rnnkit.kernels.blas`: MKL with ``RNNKIT_BLAS=mkl``, else
    NumPy's own where it exports its ``gemm``, else SciPy's ``scipy.linalg.cython_blas``)."""
    libraries = blas_libraries()
    if not libraries:
        return "unknown (threadpoolctl sees no BLAS)"
    loop = loop_blas()
    libraries = blas_libraries()  # again: the compiled loop may have loaded MKL
    roles = {"numpy": "NumPy's @", "scipy": "SciPy's"}

    def role(lib: dict) -> str:
        if lib["library"] == "mkl":
            return ("the compiled loop's gemm, packed weights; the layers' whole-sequence products" if loop == "mkl"
                    else lib["owner"])
        text = roles.get(lib["owner"], lib["owner"])
        if lib["owner"] != loop:
            return text
        return f"{text} and the compiled loop's gemm{_skinny_products()}"

    def rank(lib: dict) -> int:  # NumPy's, then MKL, then the rest: the same line whatever loaded first
        return 0 if lib["owner"] == "numpy" and lib["library"] != "mkl" else 1 if lib["library"] == "mkl" else 2

    return "; ".join(f"{lib['library']} {lib['version']} ({role(lib)})" for lib in sorted(libraries, key=rank))


def _skinny_products() -> str:
    """How the compiled loop runs its skinny per-step products on OpenBLAS, as a clause for `blas_backend`."""
    try:
        from .kernels import blas
    except ImportError:
        return ""
    if blas.PANELS:
        return (", its skinny products and the layers' whole-sequence products by a weight on packed panels by "
                "rnnkit's AVX-512 micro-kernel")
    return ", small-matrix kernels for its skinny float32 products" if small_matrix_blocks() else ""


def small_matrix_blocks() -> bool:
    """Whether the compiled loop runs its skinny float32 products in column blocks on OpenBLAS's small-matrix
    kernels (`rnnkit.kernels.blas.small_kernels`)."""
    try:
        from .kernels import blas
    except ImportError:
        return False
    return blas.small_kernels("float32")


def loop_blas() -> str | None:
    """Whose BLAS the compiled time loop calls: ``"numpy"``, ``"scipy"`` or ``"mkl"`` (``RNNKIT_BLAS``, see
    `rnnkit.kernels.blas`); None without numba."""
    try:
        from .kernels import blas
    except ImportError:
        return None
    return blas.SOURCE


#: Floating-point operations per vector lane per cycle: two FMA pipes × 2 flops (multiply and add) per FMA
FLOPS_PER_LANE_PER_CYCLE = 4
#: CPU families whose FMA pipes are narrower than their widest vectors, by (vendor, family): AMD's Zen 4 (family
#: 0x19, the first AMD cores with AVX-512) runs each 512-bit operation as two halves on its two 256-bit FMA pipes
NARROW_FMA_PIPES = {("AuthenticAMD", 0x19): 256}
PEAK_METHOD = ("peak = cores × GHz × flop/cycle; flop/cycle = lanes of the CPU's FMA pipes (the widest vectors, or "
               "256 bits where AMD's Zen 4 splits 512-bit operations in two; lanes = bits / 8·itemsize) × 2 FMA pipes "
               "× 2; GHz = the CPU's maximum frequency from /sys cpufreq, else measured (a chain of dependent "
               "one-cycle integer operations, x86-64), else the 'cpu MHz' of /proc/cpuinfo")


def cpu_identity(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str | None, int | None]:
    """The CPU's vendor (``vendor_id``, e.g. ``AuthenticAMD``) and family number from /proc/cpuinfo, each None
    where it is not said."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    family = fields.get("cpu family", "")
    return fields.get("vendor_id") or None, int(family) if family.isdigit() else None


def fma_pipe_bits(vector_bits: int | None, vendor: str | None = None, family: int | None = None) -> int | None:
    """The width in bits of one FMA pipe: the widest vectors, except on the CPUs of `NARROW_FMA_PIPES`."""
    narrow = NARROW_FMA_PIPES.get((vendor, family))
    return min(vector_bits, narrow) if vector_bits and narrow else vector_bits


def cpu_ghz(cpuinfo: str | Path = "/proc/cpuinfo",
            cpufreq: str | Path = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
            measure: bool = True) -> float | None:
    """The CPU's clock in GHz (`cpu_clock`)."""
    return cpu_clock(cpuinfo, cpufreq, measure)[0]


def cpu_clock(cpuinfo: str | Path = "/proc/cpuinfo",
              cpufreq: str | Path = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
              measure: bool = True) -> tuple[float | None, str]:
    """The CPU's clock in GHz and where it comes from: its maximum frequency where Linux's cpufreq says
    (``"maximum"``), else measured (`measured_ghz`, where ``measure``), else the largest ``cpu MHz`` of
    /proc/cpuinfo (``"nominal"``: a virtual machine's, which its cores may exceed); None where none is known."""
    try:
        return int(Path(cpufreq).read_text().strip()) / 1e6, "maximum"  # kHz
    except (OSError, ValueError):
        pass
    measured = measured_ghz() if measure else None
    if measured:
        return measured, "measured"
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, "unknown"
    mhz = [float(v) for k, _, v in (line.partition(":") for line in text.splitlines())
           if k.strip() == "cpu MHz" and v.strip().replace(".", "", 1).isdigit()]
    return (max(mhz) / 1e3, "nominal") if mhz else (None, "unknown")


@functools.cache
def measured_ghz() -> float | None:
    """This core's clock in GHz, measured: a compiled chain of dependent shifts and adds (one cycle each on every
    x86-64 core), best of three; None off x86-64 or without numba."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        from .kernels.clock import cycles_per_second
    except ImportError:
        return None
    return cycles_per_second() / 1e9


def peak_gflops(cores: int, itemsize: int = 4, ghz: float | None = None,
                vector_bits: int | None = None, pipe_bits: int | None = None) -> float | None:
    """The arithmetic peak of ``cores`` cores in GFLOP/s for ``itemsize``-byte floats (see `PEAK_METHOD`); None
    where the clock or the vector width is unknown. ``ghz`` and ``vector_bits`` default to this machine's;
    ``pipe_bits`` (one FMA pipe's width, `fma_pipe_bits`) to this machine's with its own vectors, else to
    ``vector_bits`` (pipes as wide as the vectors)."""
    ghz = cpu_ghz() if ghz is None else ghz
    if vector_bits is None:
        bits = cpu_vector_bits(cpu_flags())
        pipe = fma_pipe_bits(bits, *cpu_identity()) if pipe_bits is None else pipe_bits
    else:
        bits, pipe = vector_bits, vector_bits if pipe_bits is None else pipe_bits
    if not ghz or not pipe:
        return None
    return cores * ghz * pipe / (8 * itemsize) * FLOPS_PER_LANE_PER_CYCLE


def describe_peak(cores: int, itemsize: int = 4) -> str:
    """One line: the peak of ``cores`` cores and how it was estimated."""
    (ghz, clock), bits = cpu_clock(), cpu_vector_bits(cpu_flags())
    pipe = fma_pipe_bits(bits, *cpu_identity())
    peak = peak_gflops(cores, itemsize, ghz, bits, pipe)
    if peak is None:
        return f"peak: unknown (clock {ghz or 'unknown'} GHz, vector width {bits or 'unknown'} bits)"
    lanes = pipe // (8 * itemsize)
    pipes = f"{bits}-bit vectors on" if pipe == bits else f"{bits}-bit vectors in two halves on"
    return (f"peak: {peak:.0f} GFLOP/s float{8 * itemsize} = {cores} core{'s' if cores != 1 else ''} × {ghz:.2f} GHz "
            f"({clock}) × {lanes * FLOPS_PER_LANE_PER_CYCLE} flop/cycle ({pipes} 2 FMA pipes of {pipe} bits: "
            f"{lanes} lanes × 2 pipes × 2)")


def report(cores: int | None = None) -> list[str]:
    """Lines describing the BLAS, its kernel, the CPU's vector width, the step kernels, which BLAS runs the products
    and the arithmetic peak of ``cores`` cores (all of them by default), for people."""
    from . import kernels

    flags, blas = cpu_flags(), blas_info()
    cpu_bits, blas_bits = cpu_vector_bits(flags), kernel_bits(blas)
    lines = [f"BLAS: {blas['library'] or 'unknown'} {blas['version'] or ''} ({blas['threads']} threads), "
             f"kernel {blas['kernel'] or 'unknown'}" + (f" ({blas_bits}-bit)" if blas_bits else ""),
             f"CPU vector width: {cpu_bits or 'unknown'}" + ("-bit" if cpu_bits else ""),
             f"step kernels: {kernels.describe()}",
             f"BLAS backend: {blas_backend()}",
             f"loops on both cores: {describe_teams()}",
             f"a batch in two halves at once: {describe_halves()}",
             f"input projections ahead of the loop: {describe_pipelines()}",
             f"weight gradients behind the backward loop: {describe_sums_behind()}",
             f"the two cores: {describe_cores()}",
             f"backward loops compiled ahead: {describe_compile_ahead()}",
             describe_peak(cores or os.cpu_count() or 1)]
    advice = recommended_coretype(flags, blas)
    if advice:
        source = "set by you" if "OPENBLAS_CORETYPE" in os.environ else "not set"
        lines.append(f"note: OpenBLAS runs narrower kernels than this CPU supports; OPENBLAS_CORETYPE={advice} "
                     f"before NumPy loads would use them (OPENBLAS_CORETYPE is {source})")
    return lines


def describe_teams() -> str:
    """One line: whether the LSTM's, GRU's and RNN's loops split their units over two cores (`rnnkit.kernels.team`)
    where the shape measured faster, and why not where they do not."""
    try:
        from .kernels import blas, parallel
    except ImportError:
        return "no (needs numba)"
    choice = parallel.teams_choice()
    if choice != "auto":
        return f"{choice} (RNNKIT_TEAMS={choice})"
    panels, small = blas.panels_apply("float32"), blas.small_kernels("float32")
    shares = blas.packs_shares("float32")
    if not panels and not small and not shares:
        return ("no (they need the products on panels or OpenBLAS's small-matrix kernels, both on AVX-512 machines, "
                "or on MKL)")
    if not blas_spin_bounded():
        return f"no (OpenBLAS's idle threads may spin longer than 2^22 cycles: {_unbounded_spin_advice()})"
    low, high = parallel.TEAM_WORK
    shapes = f"float32 and float64 shapes of {low:,} multiply-adds a core a step and more" if panels or shares else (
        f"float32 shapes of {low:,}-{high:,} multiply-adds a core a step")
    if shares:
        shapes += ", each core multiplying by its own columns of the weight, packed by MKL, on one MKL thread"
    return f"{shapes} (OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}; RNNKIT_TEAMS=never " \
           "turns them off)"


def describe_halves() -> str:
    """One line: where a one-direction layer's batch runs as two halves at once, one on each core
    (`rnnkit.recurrent.halves`)."""
    from .recurrent import halves

    choice = halves.HALVES.choice
    if choice != "auto":
        return f"{choice} for the layers that can (RNNKIT_BATCH_HALVES={choice})"
    return ("one-direction LSTM, GRU and RNN layers (layer-normalised ones in inference only) whose forward would "
            "run on both cores (the line above) with an input narrower than 3/4 of the state, every row to the end "
            "of the sequence: the first half of the rows on one core, the rest on the other "
            "(RNNKIT_BATCH_HALVES=never turns it off)")


def _unbounded_spin_advice() -> str:
    """Why `blas_spin_bounded` does not hold, and what to do about it."""
    from . import _startup

    if _startup.NUMPY_LOADED_FIRST and _startup.SPIN_BOUND_SET:
        return ("NumPy loaded OpenBLAS before rnnkit, and rnnkit could not restart its threads: another thread of "
                "the program was running, or this OpenBLAS runs on OpenMP or does not export the functions; import "
                "rnnkit first")
    return "set OPENBLAS_THREAD_TIMEOUT=22 or less before NumPy loads"


def describe_pipelines() -> str:
    """One line: where a forward loop of one core runs while the other writes its input projection
    (`rnnkit.kernels.ahead`)."""
    try:
        from .kernels import blas, parallel
    except ImportError:
        return "no (needs numba)"
    choice = parallel.PIPELINES.choice
    if choice != "auto":
        return f"{choice} for the loops that would run on both cores (RNNKIT_PIPELINES={choice})"
    if not blas.packs_weights("float32"):
        return "no (they need the products on panels, on AVX-512 machines, or on MKL)"
    return ("float32 forwards that would run on both cores, of cells that name their projection "
            "(Cell.projection_terms), input 3/4 to 1 times as wide as the state, or narrower with a state up to 256 "
            "wide while the two cores are far apart and the batch cannot run as halves (a ragged batch, a "
            "layer-normalised cell's training call): the loop on one core, the projection written on the other "
            "(RNNKIT_PIPELINES=never turns them off)")


def describe_cores() -> str:
    """One line: how far apart the two cores are now (`rnnkit.kernels.distance`), which the pipelines' policy asks."""
    try:
        from .kernels import distance
    except ImportError:
        return "not measured (needs numba)"
    return distance.describe()


def describe_sums_behind() -> str:
    """One line: where a backward loop on one core runs while the other sums the weight gradients of its finished
    steps (`rnnkit.kernels.behind`)."""
    try:
        from .kernels import parallel
    except ImportError:
        return "no (needs numba)"
    choice = parallel.PIPELINES.choice
    if choice != "auto":
        return f"{choice} for the backwards of one direction whose cells make them (RNNKIT_PIPELINES={choice})"
    return (f"float32 backwards of one direction, of {parallel.BEHIND_CHUNKS} chunks of steps or more and "
            f"{parallel.BEHIND_WORK:,} multiply-adds a step or more, of cells whose sums it makes (Cell.sums_behind: "
            "LSTM, GRU with the reset after its product, RNN, the layer-normalised cells): the loop on one core, δX, "
            "δW_ih and δW_hh of its finished steps on the other (RNNKIT_PIPELINES=never turns them off)")


def describe_compile_ahead() -> str:
    """One line: where a first training call compiles its backward loop in another process
    (`rnnkit.kernels.precompile`)."""
    try:
        from .kernels import precompile
    except ImportError:
        return "no (needs numba)"
    return precompile.describe()


def cores_round_trip_ns() -> float | None:
    """A cache line's round trip between the two cores now, ns (`rnnkit.kernels.distance.round_trip_ns`); None where
    it cannot be measured (no numba, one thread allowed, the cores busy)."""
    try:
        from .kernels.distance import round_trip_ns
    except ImportError:
        return None
    return round_trip_ns()


def steal_seconds(stat: str = "/proc/stat") -> float | None:
    """CPU time the hypervisor gave to other work while this machine's CPUs wanted to run (Linux's *steal*, summed
    over the CPUs: the eighth figure of ``stat``'s ``cpu`` line, in clock ticks), in seconds; None where the system
    does not count it. A run whose steal grows is a run on a busy host: on the project's machine, training calls
    whose two cores wait on each other every step ran up to 1.5× slower in such stretches (docs/performance.md)."""
    try:
        with open(stat, encoding="ascii") as f:
            fields = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) < 9 or fields[0] != "cpu" or not fields[8].isdigit():
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def blas_spin_bounded(environ: dict[str, str] | None = None) -> bool:
    """Whether OpenBLAS's idle threads sleep within 2^22 cycles of their last call (``OPENBLAS_THREAD_TIMEOUT`` ≤ 22,
    in effect where it was set before NumPy loaded OpenBLAS — by rnnkit, `rnnkit._startup`, or by you before
    Python started — or where rnnkit restarted OpenBLAS's threads to read it). Loops split over both cores
    (`rnnkit.kernels.team`) run only where it holds."""
    from . import _startup

    env = os.environ if environ is None else environ
    try:
        spin = int(env.get("OPENBLAS_THREAD_TIMEOUT", ""))
    except ValueError:
        return False
    in_effect = (not _startup.NUMPY_LOADED_FIRST or "OPENBLAS_THREAD_TIMEOUT" in _startup.ENVIRONMENT_AT_START
                 or _startup.OPENBLAS_RESTARTED)
    return spin <= _startup.BLAS_SPIN_LOG2 and in_effect


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
