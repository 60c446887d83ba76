"""Progress bars, in one place: every command that can take more than a few seconds shows one through `progress`.

A bar is drawn on standard error only when it is a terminal (tqdm's ``disable=None``): a log file or a pipe gets no
stream of updates. ``enabled=False`` (``--no-progress``) turns it off everywhere. Messages printed while a bar is
shown go through `note`, so that they do not break the bar's line. Progress — the bar and the lines above it
(a training's validation lines, an experiment's finished runs, a skipped update) — is on standard error, so that
standard output carries only a command's results (a table, verdicts: ``note(..., err=False)``).
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, total: float | None = None, desc: str | None = None, unit: str = "it",
             enabled: bool = True, **options) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one of ``total``), on standard error when it is a terminal;
    ``total=None`` without an iterable of known length: an indeterminate bar (a counter and a rate)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True, file=sys.stderr,
                dynamic_ncols=True, leave=False, **options)


def note(message: str, err: bool = True) -> None:
    """Print ``message`` on standard error (``err=False``: standard output) above any bar being shown."""
    tqdm.write(message, file=sys.stderr if err else sys.stdout)
