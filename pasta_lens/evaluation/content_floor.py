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


def content_record(floor: float | None, unsteered_content: float | None, digits: int = 5) -> dict[str, Any]:
    """The content floor's part of a selection curve's JSON record: the floor, its rule and the unsteered
    correctness; empty when the context-QA task was not evaluated (``floor`` None)."""
    if floor is None:
        return {}
    return {
        "content_floor": floor,
        "content_rule": f"{CONTENT_TASK} {CONTENT_METRIC} >= content_floor x unsteered {CONTENT_METRIC}",
        "unsteered_content": None if unsteered_content is None else round(float(unsteered_content), digits),
    }


def point_content_record(
    content: float | None, ratio: float | None, passes: bool | None, digits: int = 5
) -> dict[str, Any]:
    """The content floor's part of one selection point's JSON record; empty when it was not measured."""
    if passes is None:
        return {}
    r = lambda x: None if x is None else round(float(x), digits)  # noqa: E731
    return {"content": r(content), "content_ratio": r(ratio), "passes_content": passes}
