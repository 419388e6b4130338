"""The evaluation harness: every task x every method, a JSONL row per example, a summary and a paper-style table.

Data flows one way through the package's modules:

    specs      method specs (``"pasta:alpha=0.1"``, ``"instaboost:factor=5"``) -> :class:`Method`
    plans      the evaluation's heads -> one :class:`~pasta_lens.plan.SteeringPlan` per steered method
    scoring    a batch of queries -> generations (engine ``hf`` / ``hooks``) and candidate log-probs (``forward``)
    rows       ``examples.jsonl``: configuration keys, read / append / dedup, the folder lock
    report     rows -> summary means with 95% intervals -> Markdown table
    harness    :func:`evaluate`: the loop over tasks, methods and batches (resumable, locked)
    content_floor  the content floor of selection: a point keeps >= F x the unsteered context-QA correctness
    selection  :func:`metric_curve`: the harness on validation examples to choose k, strategy and schedule
    transfer   :func:`transfer`: the leave-one-task-out test of the paper's transfer claim

The methods, the precedence of alphas and schedules, the metrics, the resume and lock rules and the engine
column are documented in ``docs/evaluation.md``. Everything is importable from ``pasta_lens.evaluation``.

Example:
    >>> res = evaluate(model, ["counterfact"], ["zero-shot", "pasta"], n=50, out_dir="runs/cf")
    >>> print(res.table)
"""

from pasta_lens.evaluation.content_floor import CONTENT_FLOOR, CONTENT_TASK, content_check
from pasta_lens.evaluation.harness import EvaluationResult, evaluate
from pasta_lens.evaluation.plans import HeadSource, load_source, method_plan, random_heads, ranked_heads
from pasta_lens.evaluation.report import (
    METRIC_LABELS,
    TABLE_METRICS,
    TASK_LABELS,
    format_cell,
    format_interval,
    markdown_table,
    summarize,
)
from pasta_lens.evaluation.rows import ROWS_VERSION, config_key, dedup_rows, read_rows, results_lock
from pasta_lens.evaluation.scoring import (
    Engine,
    candidate_logprobs,
    candidate_token_logprobs,
    choose_engine,
    reduce_logprobs,
)
from pasta_lens.evaluation.selection import (
    FLUENCY_FLOOR,
    MetricCurve,
    MetricPoint,
    curve_record,
    headline_metrics,
    metric_curve,
)
from pasta_lens.evaluation.specs import (
    ALPHAS,
    BASELINES,
    LABELS,
    Method,
    ablation_methods,
    parse_method,
    parse_methods,
    steering_registry,
)
from pasta_lens.evaluation.transfer import TransferResult, leave_one_out_profiles, transfer

__all__ = [
    "ALPHAS",
    "BASELINES",
    "CONTENT_FLOOR",
    "CONTENT_TASK",
    "FLUENCY_FLOOR",
    "LABELS",
    "METRIC_LABELS",
    "ROWS_VERSION",
    "TABLE_METRICS",
    "TASK_LABELS",
    "Engine",
    "EvaluationResult",
    "HeadSource",
    "Method",
    "MetricCurve",
    "MetricPoint",
    "TransferResult",
    "ablation_methods",
    "candidate_logprobs",
    "candidate_token_logprobs",
    "choose_engine",
    "config_key",
    "content_check",
    "curve_record",
    "dedup_rows",
    "evaluate",
    "format_cell",
    "format_interval",
    "headline_metrics",
    "leave_one_out_profiles",
    "load_source",
    "markdown_table",
    "method_plan",
    "metric_curve",
    "parse_method",
    "parse_methods",
    "random_heads",
    "ranked_heads",
    "read_rows",
    "reduce_logprobs",
    "results_lock",
    "steering_registry",
    "summarize",
    "transfer",
]
