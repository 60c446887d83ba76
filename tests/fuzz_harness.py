"""The fuzz suite's harness: settings, the verdict on each call, counting tried / held / broke per category, and
the report (see tests/test_fuzz_api.py)."""

import functools
import os
from collections import Counter, defaultdict

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from rnnkit.errors import RnnkitError  # noqa: E402

EXAMPLES = int(os.environ.get("RNNKIT_FUZZ_EXAMPLES", "50"))
COLLECT = os.environ.get("RNNKIT_FUZZ_COLLECT") == "1"
REPORT = os.environ.get("RNNKIT_FUZZ_REPORT")
RANDOM = os.environ.get("RNNKIT_FUZZ_RANDOM") == "1"  # explore beyond the fixed examples of the normal run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=list(HealthCheck))
FEW = settings(FUZZ, max_examples=max(3, EXAMPLES // 10))  # whole models, fit: slower examples, fewer of them
FEWEST = settings(FUZZ, max_examples=max(2, EXAMPLES // 25))  # a command run each

MAX_SIZE, MAX_COUNT = 2**31 - 1, 1024  # the largest size and repetition count a layer option may have
CATEGORIES = ("constructor args", "input shapes", "dtypes", "non-finite values", "lengths/masks/indices",
              "memory layout", "initial state", "state gradients", "output gradients", "models", "losses",
              "optimizers", "fit/predict", "CLI numeric flags")
COUNTS: dict[str, Counter] = defaultdict(Counter)
BREAKS: dict[str, list[str]] = defaultdict(list)


# -- the verdict ------------------------------------------------------------------------------------------------

def verdict(category: str, valid: bool, call, names: tuple[str, ...], check=None, what: str = "") -> None:
    """Run ``call`` and count the example as held or broke (see the module docstring); ``check(result)`` asserts
    what a successful valid call must return."""
    try:
        result = call()
    except AssertionError as e:  # a check inside the call failed: the call itself succeeded
        first_line = str(e).splitlines()[0] if str(e) else ""
        problem = f"wrong result: {first_line}" if valid else f"accepted invalid input ({first_line})"
    except Exception as e:  # noqa: BLE001 - classifying every exception is the point
        message = str(e)
        clear = (isinstance(e, RnnkitError) and isinstance(e, (ValueError, TypeError)) and "\n" not in message
                 and any(n in message for n in names))
        problem = None if clear and not valid else (
            f"valid input refused: {type(e).__name__}: {message[:200]}" if valid
            else f"unclear error (wants one of {names}): {type(e).__module__}.{type(e).__name__}: {message[:200]}")
    else:
        problem = None if valid else "accepted invalid input"
        if valid and check is not None:
            try:
                check(result)
            except AssertionError as e:
                problem = f"wrong result: {str(e).splitlines()[0] if str(e) else ''}"
    COUNTS[category]["tried"] += 1
    COUNTS[category]["invalid"] += not valid
    COUNTS[category]["broke" if problem else "held"] += 1
    if problem:
        BREAKS[category].append(f"{what}: {problem}")
        if not COLLECT:
            pytest.fail(f"[{category}] {what}: {problem}")


def cli_verdict(category: str, code, err: str, what: str, verdicts: tuple = (0,)) -> None:
    """Count one command run: held if it exited with one of ``verdicts`` (0; 1 too for a command whose 1 is a
    verdict), or 2 with its last stderr line ``rnnkit: error: ...`` and no other error line or traceback; an exit 2
    counts as invalid input refused."""
    lines = err.strip().splitlines()
    refused = code == 2 and bool(lines) and lines[-1].startswith("rnnkit: error: ") and "Traceback" not in err \
        and sum("error" in line for line in lines if not line.startswith("rnnkit: training")) == 1
    problem = None if code in verdicts or refused else f"exit {code}: {(lines or [''])[-1][:200]}"
    COUNTS[category]["tried"] += 1
    COUNTS[category]["invalid"] += code == 2
    COUNTS[category]["broke" if problem else "held"] += 1
    if problem:
        BREAKS[category].append(f"{what}: {problem}")
        if not COLLECT:
            pytest.fail(f"[{category}] {what}: {problem}")


def counted(category: str):
    """In a campaign (``RNNKIT_FUZZ_COLLECT=1``), an exception outside `verdict` — while building the layer or
    running the valid part of an example — is counted as a break of ``category`` instead of ending the run."""
    def wrap(test):
        @functools.wraps(test)
        def run(data):
            try:
                test(data)
            except Exception as e:  # noqa: BLE001
                if not COLLECT:
                    raise
                COUNTS[category]["tried"] += 1
                COUNTS[category]["broke"] += 1
                BREAKS[category].append(f"outside the checked call: {type(e).__name__}: {str(e)[:200]}")
        return run
    return wrap


def finite(*arrays) -> None:
    for a in arrays:
        if a is not None:
            assert np.isfinite(a).all(), "non-finite output"


def flat(obj) -> list:
    return [a for o in obj for a in flat(o)] if isinstance(obj, (tuple, list)) else [obj]


@pytest.fixture(scope="module", autouse=True)
def report():
    """After the module: the counts table (and the first breaks per category) in ``RNNKIT_FUZZ_REPORT``."""
    if REPORT and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("RNNKIT_FUZZ_REPORT counts the examples of one process: run the campaign with -n 0")
    yield
    if REPORT:
        lines = ["| category | tried | of which invalid | held | broke |", "|---|---:|---:|---:|---:|"]
        for c in (*CATEGORIES, "total"):
            n = sum((COUNTS[c] for c in CATEGORIES), Counter()) if c == "total" else COUNTS[c]
            lines.append(f"| {c} | {n['tried']} | {n['invalid']} | {n['held']} | {n['broke']} |")
        for c in CATEGORIES:
            for b in sorted(set(BREAKS[c]))[:25]:
                lines.append(f"- [{c}] {b}")
        with open(REPORT, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        with open(REPORT + ".all", "w", encoding="utf-8") as f:  # every break, for counting by kind
            f.write("".join(f"{c}\t{b}\n" for c in CATEGORIES for b in BREAKS[c]))


