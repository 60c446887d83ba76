"""Which ``--cell`` each ``rnnkit train`` task takes and which model flags it refuses, read from the code's own rules.

`cell_task_matrix` asks `rnnkit.cli.train.check_applicable` — the check every ``rnnkit train`` run passes — about
each task and cell, so the table in the README (`cell_task_table`, kept equal to it by tests/test_readme.py) is
whatever the program accepts, never a separate list.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..models.configs import flag, option_fields
from ..models.sequence import RECURRENT_LAYERS, ModelConfig
from ..tasks.registry import TASKS
from .train import check_applicable


def _accepted(task: str, cell: str, given: tuple[str, ...] = ()) -> bool:
    try:
        check_applicable(task, cell, dict.fromkeys(given))
    except ConfigError:
        return False
    return True


def cell_task_matrix() -> dict[str, tuple[str, ...]]:
    """Task name → the cells ``rnnkit train TASK --cell CELL`` accepts, in `RECURRENT_LAYERS` order."""
    return {task: tuple(cell for cell in RECURRENT_LAYERS if _accepted(task, cell)) for task in TASKS}


def refused_flags(task: str, cells: tuple[str, ...]) -> list[str]:
    """The recurrent model's flags (`ModelConfig`'s) that ``task`` refuses with every cell of ``cells``."""
    names = [f.name for f in option_fields(ModelConfig)]
    return [flag(name) for name in names if not any(_accepted(task, cell, (name,)) for cell in cells)]


def cell_task_table() -> str:
    """The Markdown table of `cell_task_matrix`: a row per task, ✓ where it takes the cell, and its refused flags."""
    matrix = cell_task_matrix()
    lines = ["| task | " + " | ".join(f"`{c}`" for c in RECURRENT_LAYERS) + " | model flags it refuses |",
             "|---|" + "---|" * len(RECURRENT_LAYERS) + "---|"]
    for task, cells in matrix.items():
        marks = " | ".join("✓" if c in cells else "–" for c in RECURRENT_LAYERS)
        refused = ", ".join(f"`{f}`" for f in refused_flags(task, cells)) or "none"
        lines.append(f"| `{task}` | {marks} | {refused} |")
    return "\n".join(lines)
