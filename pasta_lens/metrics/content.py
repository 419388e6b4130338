"""Content kept: how much of the unsteered model's correctness a steered method keeps.

Steering that emphasises an instruction can blind the model to the document the instruction is about. The context-QA
task scores answer correctness on its own (:mod:`pasta_lens.metrics.answers`); this module turns an evaluation
summary into, per method,

    kept(method) = correct(method) / correct(reference)        (reference: the unsteered zero-shot run)

A method keeps the content when ``kept >= 0.95``. The function reads the ``summary.json`` layout of
:func:`pasta_lens.evaluation.evaluate` (``summary["tasks"][task][method][metric]``) and imports nothing from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def content_kept_ratios(
    summary: Mapping[str, Any], task: str = "context_qa", metric: str = "correct", reference: str = "zero-shot"
) -> dict[str, float | None]:
    """``{method: metric(method) / metric(reference)}`` for every method of ``task`` in an evaluation summary (None
    where a value is missing or the reference is 0).

    Example:
        >>> s = {"tasks": {"context_qa": {"zero-shot": {"correct": 0.8}, "pasta": {"correct": 0.4}}}}
        >>> content_kept_ratios(s)
        {'zero-shot': 1.0, 'pasta': 0.5}
    """
    tasks = summary.get("tasks", {})
    if task not in tasks:
        raise ValueError(f"The summary has no task {task!r} (it has {sorted(tasks)}); evaluate it first.")
    methods = tasks[task]
    if reference not in methods:
        raise ValueError(
            f"The summary has no {reference!r} run of {task!r} (methods: {sorted(methods)}); add "
            f"{reference} to the evaluated methods."
        )
    base = methods[reference].get(metric)
    out: dict[str, float | None] = {}
    for name, cell in methods.items():
        value = cell.get(metric)
        out[name] = None if value is None or not base else float(value) / float(base)
    return out
