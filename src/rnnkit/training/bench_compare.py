"""Before/after tables from two ``rnnkit bench --json`` files (``python benchmarks/bench_compare.py A.json B.json``).

Rows are matched by configuration: (cell and stack, B, H, T, mode) for the main bench, (variant, B, H, T, mode) for
``--variants``. The table is Markdown, ready for docs/performance.md: each side's rnnkit time with its ratio to
torch (or, for variants, the variant's ratio to its plain cell), and after / before as a speed-up of rnnkit. A row
present in one file only is shown with "-" on the other side. Files written before the bench ran each library in
its own process are read too (their rows have the same fields, one layer). A file that is not a bench's JSON is
refused with a one-line `DataError`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .bench import label

MAIN_FIELDS = ("cell", "batch", "hidden", "steps", "mode", "rnnkit_ms")
VARIANT_FIELDS = ("variant", "batch", "hidden", "steps", "mode", "variant_ms", "base_ms", "ratio")


def load(path: str | Path) -> list[dict]:
    """The result rows of a bench JSON file; a one-line `DataError` for anything else."""
    what = f"{str(path)!r} is not an `rnnkit bench --json` file"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} does not exist (expected an `rnnkit bench --json` file)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{what}: expected JSON, got {type(e).__name__}: {str(e).splitlines()[0]}") from None
    rows = data.get("results") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{what}: expected an object with a non-empty 'results' list of rows")
    fields = VARIANT_FIELDS if "variant" in rows[0] else MAIN_FIELDS
    for k, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(f"{what}: expected fields {', '.join(fields)} in every row, row {k} lacks "
                            f"{', '.join(missing)}")
    return rows


def key(row: dict) -> tuple:
    """The configuration a row measures."""
    name = row["variant"] if "variant" in row else label(row)
    return name, row["batch"], row["hidden"], row["steps"], row["mode"]


def _side(row: dict | None) -> str:
    if row is None:
        return "-"
    if "variant" in row:
        return f"{row['variant_ms']:.2f} ({row['ratio']:.2f}× plain)"
    ratio = row.get("ratio")
    return f"{row['rnnkit_ms']:.2f}" + ("" if ratio is None else f" ({ratio:.2f})")


def _speedup(before: dict | None, after: dict | None) -> str:
    if before is None or after is None:
        return "-"
    field = "variant_ms" if "variant" in after else "rnnkit_ms"
    return f"{before[field] / after[field]:.2f}×"


def compare(before: list[dict], after: list[dict], names: tuple[str, str] = ("before", "after")) -> str:
    """A Markdown table of two benches' rows, matched by `key`; after's order, then rows only in before."""
    if ("variant" in before[0]) != ("variant" in after[0]):
        raise DataError("cannot compare a `rnnkit bench --variants` file with a plain `rnnkit bench` file")
    old, new = {key(r): r for r in before}, {key(r): r for r in after}
    order = list(new) + [k for k in old if k not in new]
    unit = "ms (ratio variant / plain)" if "variant" in after[0] else "rnnkit ms (torch / rnnkit)"
    first = "variant" if "variant" in after[0] else "cell"
    lines = [f"| {first} | B | H | T | mode | {names[0]}: {unit} | {names[1]}: {unit} | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for k in order:
        lines.append(f"| {' | '.join(map(str, k))} | {_side(old.get(k))} | {_side(new.get(k))} | "
                     f"{_speedup(old.get(k), new.get(k))} |")
    return "\n".join(lines)
