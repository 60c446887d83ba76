"""The tasks by name. Each task class carries its own command-line defaults (``cli_defaults``) and builds itself
from a run's data settings (``from_options``, given a `rnnkit.training.data.DataConfig`); `TASKS` maps the names
``rnnkit train`` accepts to the classes.
"""

from __future__ import annotations

from ..errors import ConfigError
from .classify import ClassificationTask
from .ctc import FrameTranscriptionTask
from .memory import Adding1997Task, AddingTask, CopyTask, ReberTask
from .seq2seq import Seq2SeqTask
from .tagging import TaggingTask
from .text import TextTask

TASKS = {cls.name: cls for cls in (ReberTask, AddingTask, Adding1997Task, CopyTask, TextTask, ClassificationTask,
                                   TaggingTask, Seq2SeqTask, FrameTranscriptionTask)}
DEFAULT_TASK = "reber"
#: the tasks whose data is generated from a seed: the memory benchmarks of `rnnkit.tasks.memory`
GENERATED_TASKS = tuple(name for name, cls in TASKS.items() if cls.__module__ == ReberTask.__module__)


def task_class(name: str):
    """The task class called ``name``; `ConfigError` naming the known ones otherwise."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")
    return TASKS[name]


def make_task(name: str, data, seed: int = 0, dtype: str = "float32", meta: dict | None = None):
    """Build task ``name`` from its data settings, a `DataConfig` (``meta``: a checkpoint whose vocabularies the
    task must reuse)."""
    return task_class(name).from_options(data, seed=seed, dtype=dtype, meta=meta)
