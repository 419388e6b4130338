"""The PASTA paper's four tasks: prompts with the emphasised span, splits, metrics, profiling objectives.

    from pasta_lens.tasks import get_task, TASK_NAMES

    task = get_task("json")                                   # "json", "pronoun", "biasbios", "counterfact"
    examples = task.examples("train", n=8, seed=0)            # frozen dataclasses
    markup = task.prompt(examples[0])                         # "... *Answer the occupation of ...*"
    profiling = task.profiling_examples(model, "train", n=8)  # tokens, key mask, log-prob objective
    task.score(examples[0], '{"name": "...", "occupation": "nurse"}')   # {"f_acc": 1.0, "p_acc": ...}

The biography tasks (json, pronoun, biasbios) run on seeded *synthetic* biographies unless given real ones
(``get_task("biasbios", bios=load_bias_in_bios(rows))``); CounterFact reads the real cases from the data folder.
"""

from __future__ import annotations

from typing import Any

from pasta_lens.tasks.base import Query, Rendered, Rendering, Task, TaskExample, escape_markup, render
from pasta_lens.tasks.bio_tasks import BiasBiosTask, BiographyTask, JsonTask, PronounTask
from pasta_lens.tasks.biographies import (OCCUPATIONS, Biography, load_bias_in_bios, load_biosbias_pkl,
                                          synthetic_biographies)
from pasta_lens.tasks.counterfact import (CounterFactTask, Fact, data_file, default_data_dir, load_counterfact_split,
                                          load_rome_counterfact, shipped_data_dir)

TASKS: dict[str, type[Task]] = {"json": JsonTask, "pronoun": PronounTask, "biasbios": BiasBiosTask,
                                "counterfact": CounterFactTask}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str, **kwargs: Any) -> Task:
    """The task called ``name``; keyword arguments go to its constructor (``bios=`` for the biography tasks,
    ``data_dir=`` or ``facts=`` for CounterFact).

    Example:
        >>> get_task("counterfact").examples("validation", n=2)[0].target_new
    """
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose from {TASK_NAMES}.")
    return TASKS[name](**kwargs)


__all__ = ["BiasBiosTask", "Biography", "BiographyTask", "CounterFactTask", "Fact", "JsonTask", "OCCUPATIONS",
           "PronounTask", "Query", "Rendered", "Rendering", "TASK_NAMES", "TASKS", "Task", "TaskExample",
           "data_file", "default_data_dir", "escape_markup", "get_task", "load_bias_in_bios", "load_biosbias_pkl",
           "load_counterfact_split", "load_rome_counterfact", "render", "shipped_data_dir",
           "synthetic_biographies"]
