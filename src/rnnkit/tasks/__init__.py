"""Training tasks: the `Task` protocol, the memory benchmarks, text, classification, tagging and seq2seq data.

`TASKS` maps the names of ``rnnkit train TASK`` to the task classes; every class has ``from_options`` and its own
``cli_defaults``.
"""

from .base import Batch, GeneratedTask, Task, TaskBase
from .classify import ClassificationTask
from .memory import Adding1997Task, AddingTask, CopyTask, ReberTask
from .registry import TASKS, make_task, task_class
from .seq2seq import PairBatch, Seq2SeqTask
from .tagging import TagBatch, TaggingTask
from .text import TextTask, read_text
from .vocab import CharVocabulary, LabelSet, TokenVocabulary

__all__ = [
    "TASKS", "Adding1997Task", "AddingTask", "Batch", "CharVocabulary", "ClassificationTask", "CopyTask",
    "GeneratedTask", "LabelSet", "PairBatch", "ReberTask", "Seq2SeqTask", "TagBatch", "TaggingTask",
    "Task", "TaskBase", "TextTask", "TokenVocabulary", "make_task", "read_text", "task_class",
]
