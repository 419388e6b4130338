"""The content floor of metric selection: a steered point must keep reading the document.

Emphasising an instruction multiplies the attention to every other token, the document included, by alpha, so a
head set can win the format by no longer reading the document. The context-QA task (:data:`CONTENT_TASK`: a
document, a question answered in it, an emphasised format instruction) scores the answer's correctness apart from
its format; a candidate of :func:`~pasta_lens.evaluation.metric_curve` passes the content floor ``F`` when

    content_ratio  = correct(steered) / correct(unsteered)           (None when correct(unsteered) = 0)
    passes_content = correct(steered) >= F x correct(unsteered)      (on the same validation examples)

with ``F`` = :data:`CONTENT_FLOOR` (0.95) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTENT_FLOOR = 0.95
"""Default content floor: the fraction of the unsteered context-QA correctness a chosen point must keep."""
CONTENT_TASK = "context_qa"
"""The task whose answer correctness (:data:`CONTENT_METRIC`) the content floor is measured on."""
CONTENT_METRIC = "correct"


def content_check(
    steered: Mapping[str, Any], unsteered: Mapping[str, Any], floor: float = CONTENT_FLOOR
) -> tuple[float, float | None, bool]:
    """The content floor on one point: ``(correct, ratio, passes)`` from the context-QA metrics of the steered and
    the unsteered run on the same examples; ``passes`` is ``correct >= floor x unsteered correct``, ``ratio`` is
    ``correct / unsteered correct`` (None when the unsteered correctness is 0). A missing value counts as 0.

    Example:
        >>> content_check({"correct": 0.7}, {"correct": 0.8}, 0.95)       # 0.7 < 0.76: rejected
        (0.7, 0.875, False)
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError(
            f"content_floor must be in [0, 1] (a fraction of the unsteered context-QA correctness); got {floor}."
        )
    correct = float(steered.get(CONTENT_METRIC) or 0.0)
    base = float(unsteered.get(CONTENT_METRIC) or 0.0)
    return correct, (correct / base if base > 0 else None), correct >= floor * base
