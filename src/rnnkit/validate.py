"""One check per kind of value that a user gives rnnkit, shared by the library and every command.

The command line's option types (`rnnkit.cli.options.checked`) call these same functions, so ``--seed -1`` in
``train``, ``sample``, ``transcribe``, ``diagnose``, a search space and ``fit(seed=-1)`` all give the same one-line
`ConfigError` naming the argument, what it must be and what was received. Each bound is declared here once.

* `seed`: an integer in [0, 2**63 − 1] (NumPy takes any non-negative integer; the metadata stores it in JSON);
* `temperature`: a finite number > 0 (sampling divides the logits by it);
* `tolerance`: a finite number > 0 (a check against ``inf`` passes everything, against ``nan`` or ≤ 0 nothing);
* `step_size`: a finite number > 0 (a finite-difference step);
* `seconds`: a wait in (0, `MAX_SECONDS`] (a longer one overflows the system's timers);
* `count`: an integer in [low, high] where ``high`` says how many can be used (a beam width, a sample length);
* `probability`: a rate in [0, 1) (dropout, zoneout); a list is not a rate;
* `val_fraction`: the share of a data set held out for validation, in (0, `MAX_VAL_FRACTION`);
* `scheduler_address`: ``tcp://HOST:PORT`` (checked before anything is written);
* `fits_in_memory`: a size checked against the machine's memory before it is allocated;
* `token_ids`: a model's token input — a non-empty (B, T) (or (T,)) integer array in [0, vocabulary), named as the
  model's argument (``source``, ``target_in``, ``words``), not as the embedding inside it;
* `sequence_lengths`: one length per sequence, each in [1, T].
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, ShapeError
from .module import check_float, check_index_array, check_int, check_probability

#: the largest seed: NumPy takes any non-negative integer, JSON metadata keeps 64-bit ones
MAX_SEED = 2**63 - 1
#: the widest beam of a beam search (each step scores beam × vocabulary hypotheses)
MAX_BEAM = 1000
#: the most characters ``rnnkit sample`` draws in one call (one model step each)
MAX_SAMPLE_LENGTH = 10_000_000
#: the longest wait a timeout may ask for: a day
MAX_SECONDS = 86_400.0
#: the share of the data held out for validation stays below this (the rest trains)
MAX_VAL_FRACTION = 0.5


def seed(value, name: str = "seed") -> int:
    """A random seed: an integer in [0, `MAX_SEED`]."""
    return check_int(name, value, 0, MAX_SEED)


def temperature(value, name: str = "temperature") -> float:
    """A sampling temperature: a finite number > 0."""
    return positive_real(value, name)


def tolerance(value, name: str = "tolerance") -> float:
    """A tolerance a result is compared with: a finite number > 0."""
    return positive_real(value, name)


def step_size(value, name: str = "eps") -> float:
    """A finite-difference step: a finite number > 0."""
    return positive_real(value, name)


def seconds(value, name: str = "timeout") -> float:
    """A wait in seconds: a finite number in (0, `MAX_SECONDS`]."""
    checked = positive_real(value, name)
    if checked > MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {MAX_SECONDS:g} seconds, got {value}")
    return checked


def positive_real(value, name: str) -> float:
    """A finite real number > 0 (the kind of value of `temperature`, `tolerance`, `step_size`)."""
    checked = check_float(name, value)
    if checked <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    return checked


def count(value, name: str, high: int, low: int = 1) -> int:
    """A count bounded by what can be used (``high`` is named in the error): an integer in [low, high]."""
    return check_int(name, value, low, high)


def probability(value, name: str) -> float:
    """A rate in [0, 1) — dropout, zoneout; a list, a string or a bool is refused."""
    return check_probability(name, value)


def val_fraction(value, name: str = "val_fraction") -> float:
    """The share of a data set held out for validation: a finite number in (0, `MAX_VAL_FRACTION`)."""
    checked = check_float(name, value)
    if not 0 < checked < MAX_VAL_FRACTION:
        raise ConfigError(f"{name} must be in (0, {MAX_VAL_FRACTION:g}), got {value}")
    return checked


def scheduler_address(value, name: str = "scheduler") -> str:
    """A Dask scheduler's address: ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` with a port in [1, 65535]."""
    from urllib.parse import urlsplit

    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None or port < 1 \
            or parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be a Dask scheduler address tcp://HOST:PORT, got {value!r}")
    return text


def fits_in_memory(elements: int, itemsize: int, what: str, copies: float = 1.0,
                   error: type[Exception] = ConfigError) -> None:
    """``error`` (one line: the size, the bytes it needs and the machine's memory) unless ``elements`` numbers of
    ``itemsize`` bytes, held ``copies`` times, fit in this machine's memory."""
    from .models.footprint import GIB, machine_memory  # at call time: the models package imports the layers

    need = float(elements) * itemsize * copies
    available = machine_memory()
    if available is not None and need > available:
        raise error(f"{what} ({elements:,} numbers of {itemsize} bytes) needs about {need / GIB:,.1f} GiB; this "
                    f"machine has {available / GIB:,.1f} GiB of memory")


def parameters_fit(elements: int, dtype, what: str) -> None:
    """`fits_in_memory` for a layer's parameters about to be drawn: the float64 draw, the weights and their
    gradients (a one-line `ConfigError` naming ``what``)."""
    itemsize = np.dtype(dtype).itemsize
    fits_in_memory(elements, itemsize, what, copies=2 + 8 / itemsize)


def token_ids(value, name: str, vocab_size: int, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Token ids as an integer array: ``value`` (an array or nested lists) with one of ``ndims`` dimensions — (B, T)
    for a batch, (T,) for one sequence —, no axis empty, each id in [0, ``vocab_size``). A one-line `ShapeError` or
    `DTypeError` names ``name``."""
    shapes = " or ".join({1: "(T,)", 2: "(B, T)", 3: "(B, T, C)"}[n] for n in ndims)
    try:
        ids = np.asarray(value)
    except (TypeError, ValueError):  # a ragged list
        raise ShapeError(f"{name} must be {shapes} token ids, got a ragged {type(value).__name__}") from None
    if ids.ndim not in ndims or 0 in ids.shape:
        got = f"{type(value).__name__} {value!r:.40}" if ids.ndim == 0 else f"shape {ids.shape}"
        raise ShapeError(f"{name} must be {shapes} token ids with no empty axis, got {got}")
    return check_index_array(ids, name, vocab_size)


def sequence_lengths(value, batch: int, steps: int, name: str = "lengths") -> np.ndarray:
    """The lengths of a batch of ``batch`` sequences padded to ``steps``: ``batch`` integers in [1, ``steps``], as
    int64 (unsigned ones would wrap around when negated); a one-line `ShapeError` naming ``name``."""
    try:
        given, checked = value, np.asarray(value)
    except (TypeError, ValueError):  # a ragged list, say
        raise ShapeError(f"{name} must be {batch} integers (one per sequence), got {type(value).__name__}") from None
    if checked.size == 0 and not isinstance(given, np.ndarray):
        checked = checked.astype(np.int64)  # [] for an empty batch: NumPy would read it as float64
    if checked.shape != (batch,) or not np.issubdtype(checked.dtype, np.integer):
        raise ShapeError(f"{name} must be {batch} integers (one per sequence), got {checked.dtype} "
                         f"array of shape {checked.shape}")
    if batch and (checked.min() < 1 or checked.max() > steps):
        raise ShapeError(f"{name} must lie in [1, {steps}] (the time axis), got [{checked.min()}, {checked.max()}]")
    return checked.astype(np.int64)


__all__ = ["MAX_BEAM", "MAX_SAMPLE_LENGTH", "MAX_SECONDS", "MAX_SEED", "MAX_VAL_FRACTION", "count", "fits_in_memory",
           "parameters_fit", "positive_real", "probability", "scheduler_address", "seconds", "seed", "sequence_lengths",
           "step_size", "temperature", "token_ids", "tolerance", "val_fraction"]
