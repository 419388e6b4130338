"""Choose the head count, the selection strategy and the steering schedule by the tasks' own metrics.

:func:`pasta_lens.profiling.ablation_curve` chooses k by the teacher-forced log-prob of the gold answer; on
SmolLM2 that criterion picked head sets that raise the JSON objective by nats while greedy generation still never
parses. :func:`metric_curve` instead *generates*: for every candidate ``(k, strategy, schedule)`` it
runs the evaluation harness (:func:`~pasta_lens.evaluation.evaluate`, the same code and metrics as the reported
tables) on validation examples and scores the point by

    score = mean over tasks t of  headline_t,    headline_t = mean of t.average_metrics   (fractions in [0, 1])

i.e. JSON (F.Acc + P.Acc) / 2, Pronouns (Acc + A.Acc, both fluency-filtered) / 2, BiasBios Acc, CounterFact
(ES + PS) / 2 (``headline=`` overrides the metrics per task). A **fluency floor** guards against steering that
wins the metric by breaking the text: a point *passes* when, on every task that reports a ``fluency`` metric
(Pronouns, CounterFact), its mean fluency is at least ``fluency_floor`` x the unsteered (zero-shot) mean fluency
on the same validation examples. JSON is not held to the floor: a correct JSON answer is a few words, whose
n-gram entropy is low by construction, so a floor would punish the right answer (a looping JSON output already
scores 0, since it does not parse); BiasBios generates nothing.

A **content floor** guards against steering that wins the format by no longer reading the document: with the
context-QA task among the tasks, a point passes only if its answer correctness keeps ``content_floor`` (default
0.95) of the unsteered correctness on the same examples (:func:`~pasta_lens.evaluation.content_check`). Without
that task nothing about a point or the curve changes.

:func:`~pasta_lens.profiling.choose_point` then takes the point with the highest score among those that pass the
floors and steer at least one head (ties: fewer heads, then smaller k, then the earlier point); when no point
passes, the best of all is returned with ``passes_floor=False``, so the caller can say so.

Example:
    >>> curve = metric_curve(model, scores, ks=[60, 90, 120], strategies=["intersection", "union"],
    ...                      schedules=["all", "prompt"], n=20)
    >>> best = choose_point(curve)
    >>> best.k, best.strategy, best.schedule, best.metric, best.passes_floor
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pasta_lens.distributed import current_world
from pasta_lens.evaluation.content_floor import (
    CONTENT_FLOOR,
    CONTENT_METRIC,
    CONTENT_TASK,
    content_check,
    content_record,
    point_content_record,
)
from pasta_lens.evaluation.harness import evaluate
from pasta_lens.evaluation.rows import results_lock
from pasta_lens.head_profile import STRATEGIES
from pasta_lens.io import atomic_write_text
from pasta_lens.plan import Head
from pasta_lens.profiling.head_scores import HeadScores
from pasta_lens.profiling.selection import score_tables, select_heads
from pasta_lens.schedule import Schedule
from pasta_lens.tasks import Task, get_task

FLUENCY_FLOOR = 0.95


@dataclass(frozen=True)
class MetricPoint:
    """One candidate steered on validation examples, judged by the tasks' own metrics.

    Attributes:
        k: per-task top-k of the selection.
        strategy: ``"intersection"``, ``"union"`` or ``"task_specific"`` (each task steered with its own top-k).
        schedule: the steering schedule's spec (``"all"``, ``"prompt"``, ``"first:4"``...).
        n_heads: heads steered (``task_specific``: the largest of the tasks' sets); 0 steers nothing, so the point
            equals the unsteered run.
        metric: the combined score, the mean over tasks of ``per_task`` (see the module docstring).
        per_task: each task's headline value (the mean of its headline metrics), a fraction.
        metrics: each task's mean of every metric the harness reports (``evaluate(...).summary``).
        fluency: mean fluency per task that reports one.
        fluency_ratio: ``fluency / unsteered fluency`` per such task.
        passes_floor: every fluency ratio is ``>= fluency_floor`` and, with the context-QA task, the content floor
            passes too: what :func:`~pasta_lens.profiling.choose_point` reads.
        heads: the steered heads per task.
        criterion: always ``"metric"`` (:class:`~pasta_lens.profiling.AblationPoint` says ``"logprob"``).
        content: the context-QA answer correctness of the point (None: the task is not among the curve's).
        content_ratio: ``content / unsteered content`` (None without the task, or when the unsteered is 0).
        passes_content: ``content >= content_floor x unsteered content`` (None without the task).
    """

    k: int
    strategy: str
    schedule: str
    n_heads: int
    metric: float
    per_task: Mapping[str, float]
    metrics: Mapping[str, Mapping[str, Any]] = field(repr=False)
    fluency: Mapping[str, float]
    fluency_ratio: Mapping[str, float]
    passes_floor: bool
    heads: Mapping[str, tuple[Head, ...]] = field(repr=False)
    criterion: str = "metric"
    content: float | None = None
    content_ratio: float | None = None
    passes_content: bool | None = None

    def to_dict(self, digits: int = 5) -> dict[str, Any]:
        """A JSON-ready record (rounded), as stored in a profile's ``provenance["metric_curve"]`` (the content keys
        only when the context-QA task was evaluated)."""
        r = lambda x: None if x is None else round(float(x), digits)  # noqa: E731
        return {
            "k": self.k,
            "strategy": self.strategy,
            "schedule": self.schedule,
            "n_heads": self.n_heads,
            "score": r(self.metric),
            "per_task": {t: r(v) for t, v in self.per_task.items()},
            "fluency": {t: r(v) for t, v in self.fluency.items()},
            "fluency_ratio": {t: r(v) for t, v in self.fluency_ratio.items()},
            "passes_floor": self.passes_floor,
            "metrics": {t: numbers(ms, digits) for t, ms in self.metrics.items()},
            **point_content_record(self.content, self.content_ratio, self.passes_content, digits),
        }


@dataclass(frozen=True)
class MetricCurve:
    """What :func:`metric_curve` returns: the points (iterate over it like a list) and the unsteered reference.

    Attributes:
        points: one :class:`MetricPoint` per evaluated ``(strategy, k, schedule)``, in that loop order.
        unsteered: the zero-shot run on the same examples: per task, every metric's mean.
        unsteered_score: the combined score of the unsteered run (same rule as :attr:`MetricPoint.metric`).
        unsteered_fluency: the fluency the floor is relative to, per task that reports one.
        fluency_floor: the floor used.
        split, n: the examples (``n`` per task).
        content_floor: the content floor used (None: the context-QA task is not among the curve's).
        unsteered_content: the unsteered context-QA correctness the content floor is relative to (None: no task).
    """

    points: tuple[MetricPoint, ...]
    unsteered: Mapping[str, Mapping[str, Any]]
    unsteered_score: float
    unsteered_fluency: Mapping[str, float]
    fluency_floor: float
    split: str
    n: int | None
    content_floor: float | None = None
    unsteered_content: float | None = None

    def __iter__(self) -> Iterator[MetricPoint]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> MetricPoint:
        return self.points[i]


def headline_metrics(task: Task, headline: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """The metrics that make a task's headline value: ``headline[task.name]`` if given, else
    ``task.average_metrics`` (the metrics of the tables' Average column)."""
    names = tuple((headline or {}).get(task.name, task.average_metrics))
    if not names:
        raise ValueError(
            f"Task {task.name!r} has no headline metrics: pass headline={{{task.name!r}: "
            f"[...]}} with some of {task.metrics}."
        )
    unknown = [m for m in names if m not in task.metrics]
    if unknown:
        raise ValueError(f"headline metrics {unknown} of task {task.name!r} are not among its metrics {task.metrics}.")
    return names


def _headline(metrics: Mapping[str, Any], names: Sequence[str]) -> float:
    values = [metrics[m] for m in names if metrics.get(m) is not None]
    return sum(values) / len(values) if values else 0.0


def _fluency(metrics: Mapping[str, Any]) -> float | None:
    value = metrics.get("fluency")
    return None if value is None else float(value)


def metric_curve(
    model: Any,
    task_scores: Mapping[str, HeadScores | Any],
    ks: Sequence[int],
    strategies: Sequence[str] = ("intersection",),
    schedules: Sequence[str | Schedule] = ("all",),
    tasks: Sequence[str | Task] | None = None,
    split: str = "validation",
    n: int | None = 20,
    alpha: float = 0.01,
    fluency_floor: float = FLUENCY_FLOOR,
    headline: Mapping[str, Sequence[str]] | None = None,
    *,
    content_floor: float = CONTENT_FLOOR,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    seed: int = 0,
    variant: str = "default",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> MetricCurve:
    """Generate with every candidate head set and schedule on validation examples; score them by task metrics.

    For each strategy, each k (the head sets of :func:`~pasta_lens.profiling.select_heads`) and each schedule,
    the tasks are run through :func:`~pasta_lens.evaluation.evaluate` (method ``pasta:schedule=S`` with those
    heads), plus one unsteered (``zero-shot``) run on the same examples for the fluency floor. A head set met
    twice (e.g. the intersection and the union of one task) is evaluated once. Scores and the floor: see the
    module docstring.

    Args:
        model: a TransformerLens model.
        task_scores: ``{task: HeadScores}`` (or ``[n_layers, n_heads]`` tables) that rank the heads.
        ks: candidate per-task top-k.
        strategies: any of ``"intersection"``, ``"union"``, ``"task_specific"``.
        schedules: steering schedules (``"all"``, ``"prompt"``, ``"first:N"``, ``"decay:G"``).
        tasks: the tasks to evaluate (names or :class:`~pasta_lens.tasks.Task` objects; default: the scored
            tasks). ``task_specific`` needs scores for each of them.
        split: never ``"test"`` (choosing on test would leak it into the reported numbers).
        n: validation examples per task.
        alpha: steering strength.
        fluency_floor: fraction of the unsteered fluency every fluency-reporting task must keep, in [0, 1].
        headline: ``{task: [metrics]}`` to override a task's headline metrics (default ``average_metrics``).
        content_floor: fraction of the unsteered context-QA answer correctness a point must keep, in [0, 1]; applies
            when ``"context_qa"`` is among the tasks (see the module docstring).
        batch_size, max_new_tokens, seed, variant: passed to :func:`~pasta_lens.evaluation.evaluate`.
        out_dir: keep each run's rows (``OUT/unsteered``, ``OUT/heads-<digest>``: rerunning resumes) and write
            ``OUT/curve.json``; None keeps nothing.
        progress: show progress bars.

    Returns:
        A :class:`MetricCurve` (iterable over its :class:`MetricPoint` s); choose with
        :func:`~pasta_lens.profiling.choose_point`.

    Example:
        >>> curve = metric_curve(model, scores, ks=[60, 90], strategies=["intersection", "union"],
        ...                      schedules=["all", "prompt"], n=20)
        >>> [(p.k, p.strategy, p.schedule, round(p.metric, 3), p.passes_floor) for p in curve]
    """
    if split == "test":
        raise ValueError(
            "metric_curve chooses settings: run it on split='validation' (or 'train'), never on "
            "'test', whose numbers must stay unseen until the report."
        )
    if not 0.0 <= fluency_floor <= 1.0:
        raise ValueError(f"fluency_floor must be in [0, 1] (a fraction of the unsteered fluency); got {fluency_floor}.")
    if not 0.0 <= content_floor <= 1.0:
        raise ValueError(
            f"content_floor must be in [0, 1] (a fraction of the unsteered context-QA correctness); got "
            f"{content_floor}."
        )
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive head counts, e.g. [60, 90, 120]; got {list(ks)}.")
    strategies, specs = list(strategies), [str(Schedule.parse(s)) for s in schedules]
    bad = [s for s in strategies if s not in STRATEGIES]
    if not strategies or bad:
        raise ValueError(f"strategies must be some of {STRATEGIES}; got {strategies}.")
    if not specs or len(set(specs)) != len(specs):
        raise ValueError(f"schedules must be distinct and non-empty; got {specs}.")
    tables = score_tables(task_scores)
    task_objs = [get_task(t) if isinstance(t, str) else t for t in (tasks if tasks is not None else list(tables))]
    if not task_objs:
        raise ValueError("metric_curve needs at least one task.")
    names = {t.name: headline_metrics(t, headline) for t in task_objs}
    if "task_specific" in strategies:
        missing = [t.name for t in task_objs if t.name not in tables]
        if missing:
            raise ValueError(
                f"strategy 'task_specific' steers each task with its own top-k: no scores for "
                f"{missing}; score them or drop 'task_specific'."
            )
    methods = [f"pasta:schedule={s}" for s in specs]
    out = Path(out_dir) if out_dir is not None else None
    common: dict[str, Any] = dict(
        split=split,
        n=n,
        alpha=alpha,
        batch_size=batch_size,
        seed=seed,
        variant=variant,
        max_new_tokens=max_new_tokens,
        progress=False,
    )

    from tqdm.auto import tqdm

    with results_lock(out, current_world(), what="the metric-curve folder"):  # one writer of OUT at a time

        def run(
            run_tasks: Sequence[Task], method_specs: Sequence[str], heads: tuple[Head, ...] | None, folder: str
        ) -> dict[str, Any]:
            res = evaluate(
                model,
                list(run_tasks),
                list(method_specs),
                heads=list(heads) if heads else None,
                out_dir=out / folder if out is not None else None,
                **common,
            )
            return res.summary["tasks"]

        unsteered_all = run(task_objs, ["zero-shot"], None, "unsteered")
        unsteered = {t.name: unsteered_all[t.name]["zero-shot"] for t in task_objs}
        base_fluency = {t: f for t, ms in unsteered.items() if (f := _fluency(ms)) is not None}
        cache: dict[tuple[str, tuple[Head, ...]], dict[str, Any]] = {}  # (task, heads) -> {method: metrics}

        def metrics_for(task: Task, heads: tuple[Head, ...]) -> dict[str, Any]:
            if not heads:  # nothing to steer: every schedule is the unsteered run
                return {m: unsteered[task.name] for m in methods}
            if (task.name, heads) not in cache:
                digest = hashlib.sha256(json.dumps(sorted(heads)).encode()).hexdigest()[:12]
                cache[(task.name, heads)] = run([task], methods, heads, f"heads-{digest}")[task.name]
            return cache[(task.name, heads)]

        points = []
        grid = [(s, int(k)) for s in strategies for k in ks]
        total = int(tables[next(iter(tables))].numel())
        for strategy, k in tqdm(grid, desc="metric curve", leave=False, unit="it", disable=not progress):
            if k > total:
                raise ValueError(f"k={k} is more than the model's {total} heads; lower ks.")
            heads = {
                t.name: select_heads(task_scores, k, strategy, task=t.name if strategy == "task_specific" else None)
                for t in task_objs
            }
            by_task = {t.name: metrics_for(t, heads[t.name]) for t in task_objs}
            for spec, method in zip(specs, methods):
                metrics = {t: by_task[t][method] for t in by_task}
                per_task = {t: _headline(metrics[t], names[t]) for t in metrics}
                fluency = {t: f for t in base_fluency if (f := _fluency(metrics[t])) is not None}
                ratio = {t: (fluency[t] / base_fluency[t] if base_fluency[t] > 0 else float("inf")) for t in fluency}
                content: tuple[float | None, float | None, bool | None] = (None, None, None)
                if CONTENT_TASK in metrics:
                    content = content_check(metrics[CONTENT_TASK], unsteered[CONTENT_TASK], content_floor)
                points.append(
                    MetricPoint(
                        k=k,
                        strategy=strategy,
                        schedule=spec,
                        n_heads=max(len(h) for h in heads.values()),
                        metric=sum(per_task.values()) / len(per_task),
                        per_task=per_task,
                        metrics=metrics,
                        fluency=fluency,
                        fluency_ratio=ratio,
                        passes_floor=all(r >= fluency_floor for r in ratio.values()) and content[2] is not False,
                        heads=heads,
                        content=content[0],
                        content_ratio=content[1],
                        passes_content=content[2],
                    )
                )
        curve = MetricCurve(
            points=tuple(points),
            unsteered=unsteered,
            unsteered_score=sum(_headline(unsteered[t], names[t]) for t in names) / len(names),
            unsteered_fluency=base_fluency,
            fluency_floor=fluency_floor,
            split=split,
            n=n,
            content_floor=content_floor if CONTENT_TASK in unsteered else None,
            unsteered_content=float(unsteered[CONTENT_TASK].get(CONTENT_METRIC) or 0.0)
            if CONTENT_TASK in unsteered
            else None,
        )
        if out is not None and current_world().is_main:  # rank 0 writes
            atomic_write_text(out / "curve.json", json.dumps(curve_record(curve), indent=1) + "\n")
        return curve


def numbers(metrics: Mapping[str, Any], digits: int = 5) -> dict[str, float]:
    """A task's numeric metrics, rounded (counts ``n_*`` and flags left out): what a curve's record keeps."""
    keep = {m: v for m, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {m: round(float(v), digits) for m, v in keep.items() if not m.startswith("n_")}


def curve_record(curve: MetricCurve, digits: int = 5) -> dict[str, Any]:
    """A JSON-ready record of a curve: the rule, the unsteered reference and every point (the content floor and
    the unsteered correctness only when the context-QA task was evaluated)."""
    r = lambda x: round(float(x), digits)  # noqa: E731
    return {
        "criterion": "metric",
        "split": curve.split,
        "n_per_task": curve.n,
        "fluency_floor": curve.fluency_floor,
        "score": "mean over tasks of the mean of each task's headline metrics (average_metrics), as fractions",
        "unsteered_score": r(curve.unsteered_score),
        "unsteered": {t: numbers(ms, digits) for t, ms in curve.unsteered.items()},
        "unsteered_fluency": {t: r(v) for t, v in curve.unsteered_fluency.items()},
        **content_record(curve.content_floor, curve.unsteered_content, digits),
        "points": [p.to_dict(digits) for p in curve.points],
    }
