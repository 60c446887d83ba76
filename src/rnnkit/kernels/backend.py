"""Which code runs the compiled loop's products, decided once per process, before any kernel is compiled.

* `BACKEND`, the BLAS: ``RNNKIT_BLAS`` (``openblas``: NumPy's own; ``mkl``: Intel MKL with packed weights,
  ``pip install 'rnnkit[mkl]'``); unset, MKL where it is installed and the processor is Intel's (`choose_backend`).
* `PRODUCTS`, the route of the skinny per-step products: ``"panels"`` (`rnnkit.kernels.panels`: weights packed once
  per call, a micro-kernel with 64-byte vectors) on OpenBLAS where the processor has AVX-512, else ``"blas"``;
  ``RNNKIT_PRODUCTS=panels|blas`` chooses (`products_route`: CI runs the loop's tests on both routes).
* `PACK`, which weights MKL packs for the loop: ``"auto"``, all but the smallest (`rnnkit.kernels.blas.UNPACKED_UP_TO`);
  ``"all"``, every one (``RNNKIT_PACK=all|auto``, `pack_setting`: CI runs the loop's tests on MKL's packed products
  at the tests' small shapes too).

`PRODUCTS` is a constant of the compiled code (`rnnkit.kernels.blas` compiles only its own route into the loops: a
shorter first use), so the disk cache keeps one set of kernels per route (`rnnkit.kernels.cache` puts it in the file
names). This module compiles nothing, so the cache's locators can read it while the first kernels are defined.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache

import llvmlite.binding as llvm

BACKENDS = ("openblas", "mkl")
#: the C functions `unreachable` made, kept alive while their addresses are registered
_UNREACHABLE: list = []


def choose_backend(setting: str | None = None) -> str:
    """The BLAS of the compiled loop's products: ``setting``, else ``RNNKIT_BLAS`` (see the module notes)."""
    from ..errors import DependencyError
    from . import mkl

    setting = _setting("RNNKIT_BLAS", BACKENDS, setting)
    if setting == "mkl" and mkl.library() is None:
        raise DependencyError("RNNKIT_BLAS=mkl: MKL is not installed (pip install 'rnnkit[mkl]')")
    if setting:
        return setting
    return "mkl" if mkl.library_path() is not None and mkl.intel_cpu() and mkl.library() else "openblas"


@lru_cache(maxsize=1)
def avx512() -> bool:
    """Whether numba compiles for a processor with 64-byte vectors (AVX-512F): this one, as LLVM sees it, unless
    ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` name another target (then only where its features say
    ``+avx512f``)."""
    from numba.core import config

    if config.CPU_NAME or config.CPU_FEATURES:
        return "+avx512f" in (config.CPU_FEATURES or "")
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


ROUTES = ("panels", "blas")


def products_route(backend: str, setting: str | None = None) -> str:
    """``setting``, else ``RNNKIT_PRODUCTS`` (``panels`` or ``blas``); unset, ``"panels"`` on OpenBLAS where the
    processor has AVX-512, else ``"blas"``. Panels need OpenBLAS (MKL's packed weights take their place); forced on
    a processor without AVX-512 they compute the same products, slowly (for tests)."""
    from ..errors import ConfigError

    setting = _setting("RNNKIT_PRODUCTS", ROUTES, setting)
    if setting == "panels" and backend != "openblas":
        raise ConfigError(f"RNNKIT_PRODUCTS=panels: expected the OpenBLAS backend, got RNNKIT_BLAS={backend}")
    if setting:
        return setting
    return "panels" if backend == "openblas" and avx512() else "blas"


PACK_SETTINGS = ("auto", "all")


def pack_setting(setting: str | None = None) -> str:
    """``setting``, else ``RNNKIT_PACK`` (``auto`` or ``all``); unset, ``"auto"``."""
    return _setting("RNNKIT_PACK", PACK_SETTINGS, setting) or "auto"


def _setting(variable: str, choices: tuple[str, ...], setting: str | None) -> str:
    """``setting``, else the environment's ``variable``, in lower case without spaces: one of ``choices``, or ""
    (unset); any other value is refused by name."""
    from ..errors import ConfigError

    setting = (os.environ.get(variable, "") if setting is None else setting).strip().lower()
    if setting and setting not in choices:
        raise ConfigError(f"{variable}: expected one of {', '.join(choices)}, got {setting!r}")
    return setting


def unreachable(what: str) -> int:
    """The address of a C function that raises "rnnkit: ``what``": for a symbol that compiled code names but reaches
    only on another route (MKL's packed product without MKL, the panels' product off the panels route), so that
    kernels cached on one route still load on the other."""
    @ctypes.CFUNCTYPE(None)
    def never():  # pragma: no cover - never called
        raise RuntimeError(f"rnnkit: {what}")

    _UNREACHABLE.append(never)
    return ctypes.cast(never, ctypes.c_void_p).value


#: the BLAS of the compiled loop: "openblas" or "mkl"
BACKEND = choose_backend()
#: the route of the loop's skinny products: "panels" or "blas"
PRODUCTS = products_route(BACKEND)
#: which weights MKL packs for the loop: "auto" or "all"
PACK = pack_setting()
