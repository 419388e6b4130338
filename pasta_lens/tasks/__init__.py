"""Tasks: prompts with the emphasised span, splits, metrics, profiling objectives.

The PASTA paper's four (``TASK_NAMES``, what "all" means): ``json``, ``pronoun``, ``biasbios``, ``counterfact``;
and two that measure transfer (``TRANSFER_TASK_NAMES``): ``instructions`` (general instruction following, split by
instruction type) and ``context_qa`` (is the document still read while a format instruction is emphasised).

    from pasta_lens.tasks import get_task, TASK_NAMES

    task = get_task("json")                                   # "json", "pronoun", "biasbios", "counterfact"
    examples = task.examples("train", n=8, seed=0)            # frozen dataclasses
    markup = task.prompt(examples[0])                         # "... *Answer the occupation of ...*"
    profiling = task.profiling_examples(model, "train", n=8)  # tokens, key mask, log-prob objective
    task.score(examples[0], '{"name": "...", "occupation": "nurse"}')   # {"f_acc": 1.0, "p_acc": ...}

The biography tasks (json, pronoun, biasbios) run on seeded *synthetic* biographies, ``bios="named"`` (the default:
the first sentence names the occupation) or ``bios="implied"`` (no word names it), unless given real ones
(``get_task("biasbios", bios=load_bias_in_bios(rows))``); CounterFact reads the real cases from the data folder.
:func:`build_task` passes such options only to the tasks that take them (what the CLI's ``--bios`` does).
"""

from __future__ import annotations

from typing import Any

from pasta_lens.tasks.base import Query, Rendered, Rendering, Task, TaskExample, escape_markup, render
from pasta_lens.tasks.bio_tasks import BIO_SOURCES, BiasBiosTask, BiographyTask, JsonTask, PronounTask
from pasta_lens.tasks.biographies import (
    OCCUPATIONS,
    Biography,
    load_bias_in_bios,
    load_biosbias_pkl,
    synthetic_biographies,
)
from pasta_lens.tasks.context_qa import ContextQAExample, ContextQATask, context_qa_examples
from pasta_lens.tasks.counterfact import (
    CounterFactTask,
    Fact,
    data_file,
    default_data_dir,
    load_counterfact_split,
    load_rome_counterfact,
    shipped_data_dir,
)
from pasta_lens.tasks.implied_bios import implied_biographies
from pasta_lens.tasks.instructions import InstructionExample, InstructionTask, instruction_examples, type_accuracy

TASKS: dict[str, type[Task]] = {
    "json": JsonTask,
    "pronoun": PronounTask,
    "biasbios": BiasBiosTask,
    "counterfact": CounterFactTask,
    "instructions": InstructionTask,
    "context_qa": ContextQATask,
}
TASK_NAMES: tuple[str, ...] = ("json", "pronoun", "biasbios", "counterfact")
"""The PASTA paper's four tasks (what ``"all"`` means in ``evaluate`` and the CLI)."""
TRANSFER_TASK_NAMES: tuple[str, ...] = ("instructions", "context_qa")
"""The tasks that measure transfer: held-out instruction types, and content kept under a format instruction."""


def get_task(name: str, **kwargs: Any) -> Task:
    """The task called ``name``; keyword arguments go to its constructor (``bios=`` for the biography tasks,
    ``data_dir=`` or ``facts=`` for CounterFact).

    Example:
        >>> get_task("counterfact").examples("validation", n=2)[0].target_new
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose from {tuple(TASKS)}.")
    return TASKS[name](**kwargs)


def build_task(name: str, bios: Any = None, data_dir: Any = None) -> Task:
    """``get_task(name)`` with ``bios`` given to the biography tasks and ``data_dir`` to CounterFact (None: their
    defaults); other tasks take neither. What ``--bios`` / ``--data-dir`` of the CLI do.

    Example:
        >>> build_task("json", bios="implied").data_key
        'implied'
        >>> build_task("counterfact", bios="implied").data_key is None   # bios= does not apply to CounterFact
        True
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose from {tuple(TASKS)}.")
    cls = TASKS[name]
    if issubclass(cls, BiographyTask) and bios is not None:
        return cls(bios=bios)
    if issubclass(cls, CounterFactTask) and data_dir is not None:
        return cls(data_dir=data_dir)
    return cls()


__all__ = [
    "BIO_SOURCES",
    "BiasBiosTask",
    "Biography",
    "BiographyTask",
    "ContextQAExample",
    "ContextQATask",
    "CounterFactTask",
    "Fact",
    "InstructionExample",
    "InstructionTask",
    "JsonTask",
    "OCCUPATIONS",
    "PronounTask",
    "Query",
    "Rendered",
    "Rendering",
    "TASK_NAMES",
    "TASKS",
    "TRANSFER_TASK_NAMES",
    "Task",
    "TaskExample",
    "build_task",
    "context_qa_examples",
    "data_file",
    "default_data_dir",
    "escape_markup",
    "get_task",
    "implied_biographies",
    "instruction_examples",
    "load_bias_in_bios",
    "load_biosbias_pkl",
    "load_counterfact_split",
    "load_rome_counterfact",
    "render",
    "shipped_data_dir",
    "synthetic_biographies",
    "type_accuracy",
]
