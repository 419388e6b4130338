"""Head selection: per-task rankings -> one head set (the paper's multi-task rule) -> a saved profile.

:func:`select_heads` takes the ``intersection`` of the per-task top-k (the paper's default), their ``union``, or
one task's top-k (``task_specific``). :func:`ablation_curve` steers each candidate set on validation examples and
reports the objective gain against the number of heads; :func:`choose_k` picks k from that curve, and
:func:`make_profile` wraps the chosen heads with their scores and provenance in a :class:`HeadProfile`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from pasta_lens.fingerprint import ModelFingerprint, weights_hash
from pasta_lens.head_profile import STRATEGIES, HeadProfile, score_table
from pasta_lens.objectives import ProfilingExample
from pasta_lens.plan import Head
from pasta_lens.profiling.estimators import check_examples, forward_copies, objective_values
from pasta_lens.profiling.head_scores import METHODS, HeadScores, check_k, ranking_by_score
from pasta_lens.profiling.scoring import progress_bar
from pasta_lens.steering import pasta_hooks

Strategy = Literal["intersection", "union", "task_specific"]


def score_tables(task_scores: Mapping[str, HeadScores | Tensor]) -> dict[str, Tensor]:
    """``{task: [n_layers, n_heads] table}`` from :class:`HeadScores` or bare tables, checked to be of one model.

    Example:
        >>> score_tables({"json": scores_json, "counterfact": torch.zeros(30, 9)})["counterfact"].shape
        torch.Size([30, 9])

    Raises:
        ValueError: no task, or tables of different shapes (not one model).
    """
    if not task_scores:
        raise ValueError("select_heads needs scores of at least one task: {task: HeadScores}.")
    tables = {t: (s.scores if isinstance(s, HeadScores) else torch.as_tensor(s)) for t, s in task_scores.items()}
    shapes = {tuple(t.shape) for t in tables.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"All tasks' score tables must be [n_layers, n_heads] of one model; got shapes {shapes}.")
    return tables


def _rankings(task_scores: Mapping[str, HeadScores | Tensor]) -> dict[str, tuple[Head, ...]]:
    """Each task's ranking: :meth:`HeadScores.ranking` (a hybrid's own order), or a sort of a bare table."""
    tables = score_tables(task_scores)
    return {
        t: (s.ranking() if isinstance(s, HeadScores) else ranking_by_score(tables[t])) for t, s in task_scores.items()
    }


def select_heads(
    task_scores: Mapping[str, HeadScores | Tensor],
    k: int,
    strategy: Strategy = "intersection",
    task: str | None = None,
) -> tuple[Head, ...]:
    """Combine per-task rankings into one head set (the paper's multi-task selection).

    Args:
        task_scores: ``{task: HeadScores}`` (or ``{task: [n_layers, n_heads] tensor}``).
        k: heads taken from the top of each task's ranking.
        strategy: ``"intersection"`` (heads in every task's top-k; the paper's default), ``"union"`` (in any
            task's top-k) or ``"task_specific"`` (the top-k of ``task``).
        task: the task for ``"task_specific"``.

    Returns:
        Sorted ``(layer, head)`` pairs; possibly empty for an intersection with a small k.

    Example:
        >>> select_heads({"json": s_json, "counterfact": s_cf}, k=40)
        ((18, 2), (21, 5), ...)
    """
    tables = score_tables(task_scores)
    shape = tuple(next(iter(tables.values())).shape)
    check_k(k, shape)  # type: ignore[arg-type]
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    tops = {t: set(r[:k]) for t, r in _rankings(task_scores).items()}
    if strategy == "task_specific":
        if task not in tops:
            raise ValueError(f"strategy='task_specific' needs task= one of {sorted(tops)}; got {task!r}.")
        chosen = tops[task]
    elif strategy == "intersection":
        chosen = set.intersection(*tops.values())
    else:
        chosen = set.union(*tops.values())
    return tuple(sorted(chosen))


class _Point(NamedTuple):
    k: int
    n_heads: int
    metric: float


class AblationPoint(_Point):
    """One point of an ablation curve, a ``(k, n_heads, metric)`` tuple: steering the heads selected with ``k``
    on validation examples gives ``metric``; ``per_task`` holds each task's value, ``strategy`` the selection
    rule and ``criterion`` what ``metric`` measures: ``"logprob"``, the mean teacher-forced objective gain (not
    part of the tuple). The generation-based criterion is :class:`pasta_lens.evaluation.MetricPoint`."""

    per_task: dict[str, float]
    strategy: str
    criterion: str

    def __new__(
        cls,
        k: int,
        n_heads: int,
        metric: float,
        per_task: Mapping[str, float] | None = None,
        strategy: str = "intersection",
        criterion: str = "logprob",
    ) -> AblationPoint:
        point = super().__new__(cls, k, n_heads, metric)
        point.per_task = dict(per_task or {})
        point.strategy = strategy
        point.criterion = criterion
        return point


def _mean_change(
    model: Any, examples: Sequence[ProfilingExample], heads: Sequence[Head], alpha: float, baselines: list[float]
) -> float:
    if not heads:
        return 0.0
    changes = []
    with torch.inference_mode():
        for ex, base in zip(examples, baselines):
            hooks = pasta_hooks(heads, ex.key_mask, alpha)
            changes.append(float(objective_values(ex, forward_copies(model, ex, 1, hooks))[0]) - base)
    return sum(changes) / len(changes)


def ablation_curve(
    model: Any,
    task_scores: Mapping[str, HeadScores | Tensor],
    val_examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    ks: Sequence[int],
    strategy: Strategy = "intersection",
    alpha: float = 0.01,
    progress: bool = True,
) -> list[AblationPoint]:
    """Steer the head set selected with each ``k`` on validation examples; report the mean objective gain.

    ``metric`` is the mean over tasks of the mean change of the objective (steered minus unsteered) on that task's
    validation examples; for ``task_specific`` each task is steered with its own top-k. An empty intersection
    scores 0 (no steering).

    Example:
        >>> curve = ablation_curve(model, scores, val, ks=[5, 10, 20, 40])
        >>> [(p.k, p.n_heads, round(p.metric, 3)) for p in curve]
    """
    tables = score_tables(task_scores)
    missing = set(tables) - set(val_examples_by_task)
    if missing:
        raise ValueError(f"No validation examples for tasks {sorted(missing)}; give one list per scored task.")
    for t in tables:
        check_examples(val_examples_by_task[t], f"ablation_curve (validation examples of {t!r})")
    with torch.inference_mode():
        baselines = {
            t: [float(objective_values(ex, forward_copies(model, ex, 1, []))[0]) for ex in val_examples_by_task[t]]
            for t in tables
        }
    curve = []
    for k in progress_bar(list(ks), progress, f"ablation ({strategy})"):
        per_task, sizes = {}, []
        for t in tables:
            heads = select_heads(task_scores, k, strategy, task=t if strategy == "task_specific" else None)
            sizes.append(len(heads))
            per_task[t] = _mean_change(model, val_examples_by_task[t], heads, alpha, baselines[t])
        n_heads = sizes[0] if strategy != "task_specific" else max(sizes)
        curve.append(AblationPoint(int(k), n_heads, sum(per_task.values()) / len(per_task), per_task, strategy))
    return curve


def choose_point(curve: Iterable[Any]) -> Any:
    """The best point of a curve: :class:`AblationPoint` s (log-prob) or
    :class:`~pasta_lens.evaluation.MetricPoint` s (task metrics on generations), the same rule for both.

    1. Points that steer no head (empty intersections) are dropped unless nothing else exists.
    2. Points with ``passes_floor=False`` (a metric point below its fluency floor) are dropped unless none
       pass; then the best of the rest is returned and *its* ``passes_floor`` is False, so say so.
    3. The highest ``metric`` wins; ties: fewer heads, then smaller k, then the earlier point.

    Example:
        >>> best = choose_point(metric_curve(model, scores, ks=[60, 90], schedules=["all", "prompt"]))
        >>> best.k, best.strategy, best.schedule, best.passes_floor
    """
    points = list(curve)
    if not points:
        raise ValueError(
            "choose_k needs a non-empty curve; compute one with ablation_curve(...) or "
            "pasta_lens.evaluation.metric_curve(...)."
        )
    candidates = [p for p in points if p.n_heads > 0] or points
    candidates = [p for p in candidates if getattr(p, "passes_floor", True)] or candidates
    order = {id(p): i for i, p in enumerate(points)}
    return max(candidates, key=lambda p: (p.metric, -p.n_heads, -p.k, -order[id(p)]))


def choose_k(curve: Iterable[Any]) -> int:
    """The k of :func:`choose_point`: the highest validation metric (ties: the fewer heads, then the smaller k).

    Points with no heads (empty intersections) are never chosen unless nothing else exists, nor points below a
    fluency floor (metric curves) unless none pass.
    """
    return int(choose_point(curve).k)


def estimators(task_scores: Mapping[str, HeadScores], k: int) -> tuple[str, dict[str, Any]]:
    """``(method, metadata)``: a profile's ``method`` string and its per-task record of what was exact.

    The string names the estimators and example counts exactly, e.g. ``"hybrid (attribution ranking of all 270
    heads on 200 examples; its top 120 re-ordered by exact scores on the first 4 examples)"``; when ``k`` passes
    the exactly ordered block it adds ``"; top-k beyond place 120 by attribution"``.
    """
    lines, meta = {}, {}
    for t, s in task_scores.items():
        line = s.describe()
        if k > s.exact_through():
            line += f"; top-{k} beyond place {s.exact_through()} by attribution" if s.method == "hybrid" else ""
        lines[t] = line
        meta[t] = {
            "method": s.method,
            "n_examples": s.n_examples,
            "exact_examples": s.n_exact,
            "exact_places": s.exact_through(),
            "exact_heads": int(s.exact.sum()) if s.exact is not None else 0,
            "k_within_exact": k <= s.exact_through(),
        }
        if s.method == "hybrid" and s.exact is not None:
            meta[t]["exact_head_list"] = [list(h) for h in s.ranking()[: s.exact_through()]]
    distinct = sorted(set(lines.values()))
    method = distinct[0] if len(distinct) == 1 else "; ".join(f"{t}: {line}" for t, line in lines.items())
    return method, meta


def make_profile(
    model: Any,
    model_name: str,
    task_scores: Mapping[str, HeadScores],
    k: int,
    strategy: Strategy = "intersection",
    task: str | None = None,
    seed: int | None = None,
    command: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    allow_attribution_tail: bool = False,
) -> HeadProfile:
    """Select heads and wrap them with their scores and provenance in a :class:`HeadProfile`.

    The profile's ``method`` says exactly what was exact (:func:`estimators`), and ``provenance["estimators"]``
    holds, per task, the method, the example counts of each estimator and the exactly ordered heads. For a
    ``hybrid`` task, ``k`` larger than its ``top_m`` means heads beyond the exact block were selected by
    attribution: refused unless ``allow_attribution_tail=True`` (the ``method`` string then says so).

    Example:
        >>> profile = make_profile(model, "smollm2-135m-instruct", scores, k=40)
        >>> profile.save("profiles/my-profile.json")
    """
    heads = select_heads(task_scores, k, strategy, task)
    tail = sorted(t for t, s in task_scores.items() if s.method == "hybrid" and k > s.exact_through())
    if tail and not allow_attribution_tail:
        m = min(task_scores[t].exact_through() for t in tail)
        raise ValueError(
            f"k={k} exceeds the exactly re-scored block (top_m={m}) of the hybrid scores of {tail}: "
            "heads beyond it would be chosen by attribution, not by exact scores. Profile with "
            f"top_m >= {k}, choose k <= {m}, use method='attribution', or pass "
            "allow_attribution_tail=True to accept it (the profile's method then says so)."
        )
    method, meta = estimators(task_scores, int(k))
    prov = dict(provenance or {})
    prov["estimators"] = meta
    alphas = {s.alpha for s in task_scores.values()}
    if len(alphas) != 1:
        raise ValueError(f"All tasks must be profiled with one alpha to share a profile; got {sorted(alphas)}.")
    return HeadProfile(
        model_name=model_name,
        n_layers=int(model.cfg.n_layers),
        n_heads=int(model.cfg.n_heads),
        heads=heads,
        weights_hash=weights_hash(model),
        fingerprint=ModelFingerprint.of(model),
        tasks=tuple(task_scores),
        method=method,
        alpha=alphas.pop(),
        k=int(k),
        strategy=strategy,
        n_examples={t: s.n_examples for t, s in task_scores.items()},
        seed=seed,
        command=command,
        scores={t: score_table(s.scores) for t, s in task_scores.items()},
        provenance=prov,
    )


def scores_from_profile(profile: HeadProfile, tasks: Sequence[str] | None = None) -> dict[str, HeadScores]:
    """Rebuild each task's :class:`HeadScores` from a saved profile, to select again without re-profiling.

    A profile stores every task's ``[n_layers, n_heads]`` score table and, in ``provenance["estimators"]``, what
    each number is. ``attribution`` and ``exact`` tables rank by sorting; a ``hybrid`` ranking is its exactly
    re-ordered block (``exact_head_list``) followed by the other heads in attribution order, as when it was made.
    Per-example values are not stored, so the rebuilt scores carry means only (enough to select heads).

    Args:
        profile: a :class:`HeadProfile` with scores (``pasta-lens profile`` writes them; imported official head
            sets have none).
        tasks: the tasks to take (default: all the profile's).

    Example:
        >>> scores = scores_from_profile(load_profile("smollm2-135m-instruct"))
        >>> select_heads(scores, k=120)
    """
    names = list(tasks) if tasks is not None else list(profile.tasks)
    missing = [t for t in names if t not in profile.scores]
    if missing:
        raise ValueError(
            f"Profile {profile.model_name!r} has no scores for tasks {missing} (it has "
            f"{sorted(profile.scores)}); choose --tasks among those, or profile them."
        )
    meta = dict(profile.provenance.get("estimators") or {})
    out = {}
    for t in names:
        table = profile.score_table(t)
        info = dict(meta.get(t) or {})
        method = info.get("method") or next((m for m in METHODS if profile.method.startswith(m)), None)
        if method not in METHODS:
            raise ValueError(
                f"Profile {profile.model_name!r} does not say how task {t!r} was scored (method "
                f"{profile.method!r}); only profiles written by make_profile can be reused."
            )
        n = int(info.get("n_examples") or profile.n_examples.get(t) or 1)
        kwargs: dict[str, Any] = {}
        if method == "hybrid":
            block = [(int(h[0]), int(h[1])) for h in info.get("exact_head_list") or []]
            if not block:
                raise ValueError(
                    f"Profile {profile.model_name!r}: the hybrid scores of {t!r} lack "
                    "provenance['estimators'][task]['exact_head_list'], so their ranking cannot be "
                    "rebuilt; re-profile."
                )
            rest = [h for h in ranking_by_score(table) if h not in set(block)]
            exact = torch.zeros_like(table, dtype=torch.bool)
            for layer, head in block:
                exact[layer, head] = True
            kwargs = dict(
                order=tuple(block + rest), top_m=len(block), exact=exact, n_exact=int(info.get("exact_examples") or 0)
            )
        seconds = dict(profile.provenance.get("profiling_wall_time_s_per_task") or {}).get(t)
        out[t] = HeadScores(
            scores=table,
            method=method,
            alpha=profile.alpha,
            n_examples=n,
            task=t,
            wall_time_s=float(seconds) if seconds is not None else float("nan"),
            **kwargs,
        )
    return out
