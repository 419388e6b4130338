"""The evaluation harness: every task x every method, a JSONL row per example, a summary and a paper-style table.

A *method* says how a prompt is shown and whether it is steered (:class:`Method`):

=============  =================================================================================================
zero-shot      markers removed, no steering
star           the span left in the text as ``*span*``, no steering ("*-marked")
quote          the span left in the text as ``"span"``, no steering ('"-marked')
few-shot       three demonstrations from the train split before the query, markers removed, no steering
all-heads      PASTA on every head of every layer
random         PASTA on a seeded random head set of the same size as the profile
pasta          PASTA on the head profile (at its per-head alphas if it is a learned profile, unless an alpha is
               given: :func:`method_alpha`)
=============  =================================================================================================

Ablations are methods with options: ``pasta:alpha=0.1`` (another steering strength), ``pasta:k=20`` (the 20
best heads of the profile, ranked by their mean profiling score over tasks, or for a learned profile by its
alphas, strongest first), ``random:k=20``,
``pasta:schedule=prompt`` (steer the prompt rows only; also ``first:N``, ``decay:G``: :mod:`pasta_lens.schedule`;
``evaluate(..., schedule=)`` sets the default of every steered method).

For each (task, method) the harness renders each example's queries (:mod:`pasta_lens.tasks`), runs greedy
generation for ``generate`` queries in left-padded batches with the KV cache
(on the engine :func:`pasta_lens.generate` picks: HF's loop on a twin of the bridge's weights where no hook must
fire, :mod:`pasta_lens.hf_engine`, else :func:`pasta_lens.generation.generate_tokens` with the steering hooks;
the same tokens either way), and scores ``choice`` queries by teacher
forcing (:func:`candidate_logprobs`). Each finished example is appended to ``examples.jsonl`` at once, so an
interrupted run resumes where it stopped (rows are matched by task, method, configuration, example id and the
rendered prompt; reused rows are rescored from their stored outputs, so metric fixes apply to old runs).
``summary.json`` and ``table.md`` are recomputed from the rows of the requested examples and written atomically.

:mod:`~pasta_lens.evaluation.harness` runs the tasks and keeps the rows; :mod:`~pasta_lens.evaluation.report`
turns rows into the summary and the table (with 95% intervals); :mod:`~pasta_lens.evaluation.selection` runs the
harness on validation examples to choose the head count, selection strategy and schedule by the tasks' own metrics
(:func:`metric_curve`, with a fluency floor); :mod:`~pasta_lens.evaluation.transfer` runs the leave-one-task-out
test of the paper's transfer claim. Everything is importable from ``pasta_lens.evaluation``.
"""

from pasta_lens.evaluation.harness import (ALPHAS, BASELINES, EvaluationResult, Method, ablation_methods,
                                           candidate_logprobs, evaluate, load_heads, method_alpha, parse_method,
                                           ranked_heads, resolve_heads)
from pasta_lens.evaluation.selection import (FLUENCY_FLOOR, MetricCurve, MetricPoint, curve_record,
                                             headline_metrics, metric_curve)
from pasta_lens.evaluation.transfer import TransferResult, leave_one_out_profiles, transfer
from pasta_lens.evaluation.report import (LABELS, METRIC_LABELS, TABLE_METRICS, TASK_LABELS, markdown_table,
                                          summarize)

__all__ = [
    "ALPHAS",
    "BASELINES",
    "FLUENCY_FLOOR",
    "LABELS",
    "METRIC_LABELS",
    "TABLE_METRICS",
    "TASK_LABELS",
    "EvaluationResult",
    "TransferResult",
    "Method",
    "MetricCurve",
    "MetricPoint",
    "ablation_methods",
    "candidate_logprobs",
    "curve_record",
    "evaluate",
    "headline_metrics",
    "leave_one_out_profiles",
    "load_heads",
    "markdown_table",
    "method_alpha",
    "metric_curve",
    "parse_method",
    "ranked_heads",
    "resolve_heads",
    "summarize",
    "transfer",
]
