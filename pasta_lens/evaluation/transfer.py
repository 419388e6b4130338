"""Leave-one-task-out transfer: does a head set profiled on some tasks help a task it never saw?

This is the paper's central claim for multi-task profiling: heads chosen on several tasks transfer to unseen ones.
The test, for each task ``t`` of a multi-task profile:

1. select heads from the *other* tasks' score tables only (the same strategy as the profile, default the
   intersection of the per-task top-k), with ``k`` chosen on those tasks' validation examples
   (:func:`~pasta_lens.profiling.ablation_curve` + :func:`~pasta_lens.profiling.choose_k`); ``t`` plays no part;
2. evaluate ``t`` on its test split: zero-shot, the full profile (which did see ``t``) and the held-out profile.

Per-task head scores depend on that task's examples alone, so the other tasks' tables are read from the full
profile (``HeadProfile.scores``): nothing is re-profiled, and the held-out profiles are exactly what profiling
on three tasks would have given with the same scores.

    pasta-lens transfer --profile smollm2-135m-instruct --ks 60,90,120,150,200 --n 50 --out runs/loto

Example:
    >>> held_out = leave_one_out_profiles(model, load_profile("smollm2-135m-instruct"), ks=[60, 90, 120])
    >>> held_out["json"].heads  # chosen from pronoun, biasbios and counterfact only
    >>> result = transfer(model, load_profile("smollm2-135m-instruct"), held_out, n=50, out_dir="runs/loto")
    >>> print(result.table)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pasta_lens.distributed import current_world
from pasta_lens.evaluation.harness import evaluate
from pasta_lens.evaluation.report import METRIC_LABELS, TASK_LABELS, format_cell, format_interval
from pasta_lens.evaluation.rows import results_lock
from pasta_lens.head_profile import STRATEGIES, HeadProfile
from pasta_lens.io import atomic_write_text
from pasta_lens.profiling.selection import Strategy, ablation_curve, choose_k, select_heads
from pasta_lens.tasks import Task, get_task


def _task(name: str, tasks: Mapping[str, Task] | None) -> Task:
    return tasks[name] if tasks and name in tasks else get_task(name)


_SELECTION_RECORD = (
    "selected_by",
    "metric_curve",
    "fluency_floor_met",
    "k_chosen_on",
    "selection_wall_time_s",
    "history",
)
"""Provenance fields that describe how the *source* profile's heads were chosen: not carried to a held-out
profile, whose k is chosen here (its ``leave_one_out`` record says how). Everything else is kept, including
``schedule``: a held-out profile is steered the way the full profile is, so the two are compared like for like."""


def leave_one_out_profiles(
    model: Any,
    profile: HeadProfile,
    ks: Sequence[int],
    val_n: int = 10,
    strategy: str | None = None,
    alpha: float | None = None,
    seed: int = 0,
    progress: bool = True,
    tasks: Mapping[str, Task] | None = None,
) -> dict[str, HeadProfile]:
    """For each task of ``profile``, a profile selected from the other tasks' scores only.

    Args:
        model: the model the profile was made on (validated; the ablation curve runs on it).
        profile: a multi-task profile with a score table per task (``profile.scores``), at least two tasks.
        ks: candidate per-task top-k; each held-out profile's ``k`` is chosen on the other tasks' validation
            examples by the mean teacher-forced objective gain (:func:`~pasta_lens.profiling.choose_k`).
        val_n: validation examples per task for the curve.
        strategy: how the per-task top-k sets combine (default: the profile's own, else ``"intersection"``).
        alpha: steering strength of the curve and of the held-out profiles (default: the profile's ``alpha``;
            per-head alphas of a learned profile are not carried over: the held-out heads are another set).
        seed: seed for drawing validation examples.
        tasks: task objects by name (e.g. built on real biographies); default ``get_task(name)``.

    Returns:
        ``{held_out_task: HeadProfile}``; each records in ``provenance["leave_one_out"]`` the held-out task,
        the source profile's heads and the validation curve that chose its ``k``. It keeps the source's recorded
        ``schedule`` (steered like the full profile) but not its selection record (``selected_by``, ...).

    Raises:
        ValueError: a profile with fewer than two scored tasks, or made for another model.
    """
    profile.validate_for(model)
    names = [t for t in profile.tasks if t in profile.scores]
    if len(names) < 2:
        raise ValueError(
            f"Leave-one-task-out needs a profile scored on at least two tasks; "
            f"{profile.model_name!r} has score tables for {names or 'none'}. Profile more tasks with "
            "pasta-lens profile --tasks json,pronoun,biasbios,counterfact."
        )
    chosen = strategy or profile.strategy or "intersection"
    if chosen == "task_specific":
        raise ValueError("Leave-one-task-out combines the other tasks: use strategy 'intersection' or 'union'.")
    if chosen not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {chosen!r}.")
    combine: Strategy = "union" if chosen == "union" else "intersection"
    alpha = profile.alpha if alpha is None else alpha
    out = {}
    for held in names:
        others = [t for t in names if t != held]
        tables = {t: profile.score_table(t) for t in others}
        val = {
            t: list(_task(t, tasks).profiling_examples(model, split="validation", n=val_n, seed=seed)) for t in others
        }
        curve = ablation_curve(model, tables, val, list(ks), combine, alpha, progress=progress)
        k = choose_k(curve)
        heads = select_heads(tables, k, combine)
        prov = {
            "leave_one_out": {
                "held_out": held,
                "source_profile": profile.model_name,
                "source_heads": [list(h) for h in profile.heads],
                "source_method": profile.method,
                "k_chosen_on": f"validation split of {others}, {val_n} examples per task (mean objective gain)",
                "ablation_curve": [{"k": p.k, "n_heads": p.n_heads, "metric": round(p.metric, 5)} for p in curve],
            }
        }
        out[held] = dataclasses.replace(
            profile,
            heads=heads,
            head_alphas={},
            tasks=tuple(others),
            k=int(k),
            strategy=combine,
            method=f"{profile.method}; leave-one-out: selected without {held}",
            scores={t: profile.scores[t] for t in others},
            n_examples={t: v for t, v in profile.n_examples.items() if t in others},
            provenance={**{key: v for key, v in profile.provenance.items() if key not in _SELECTION_RECORD}, **prov},
        )
    return out


@dataclass(frozen=True)
class TransferResult:
    """What :func:`transfer` measured: per held-out task the summaries of the three methods, and a table.

    Attributes:
        rows: ``{task: {"zero-shot": metrics, "full": metrics, "held-out": metrics}}`` (the harness's summary
            entries: means, ``n_*`` counts and ``ci95_*`` intervals).
        heads: ``{task: {"full": n_heads, "held-out": n_heads, "held-out k": k}}`` (k None: no top-k
            selection, e.g. a learned profile).
        table: the Markdown table.
        out_dir: where the runs, profiles and table were written (or None).
    """

    rows: Mapping[str, Mapping[str, Mapping[str, Any]]]
    heads: Mapping[str, Mapping[str, int | None]]
    table: str
    out_dir: Path | None


def _fmt(metrics: Mapping[str, Any], name: str) -> str:
    """A value with its interval, formatted as the evaluation tables format them: ``"56.0 [49.1, 62.7]"``."""
    value, ci = metrics.get(name), metrics.get(f"ci95_{name}")
    if value is None:
        return "–"
    return format_cell(value, name) + (f" {format_interval(ci, name)}" if ci else "")


def _k_note(k: int | None) -> str:
    """``", k=90"`` for a top-k selection; nothing for a profile without one (learned per-head strengths)."""
    return "" if k is None else f", k={int(k)}"


def _table(
    rows: Mapping[str, Mapping[str, Any]],
    heads: Mapping[str, Mapping[str, Any]],
    tasks: Mapping[str, Task] | None,
    split: str,
    n: int | None,
) -> str:
    lines = [
        "| Held-out task | Metric | Zero-shot | Full profile | Leave-one-out profile | Leave-one-out beats zero-shot |",
        "|---|---|---|---|---|---|",
    ]
    for task, by in rows.items():
        t = _task(task, tasks)
        for metric in tuple(t.average_metrics) + (("fluency",) if "fluency" in t.metrics else ()):
            better = (
                "–"
                if metric == "fluency" or by["held-out"].get(metric) is None
                else ("yes" if by["held-out"][metric] > by["zero-shot"][metric] else "no")
            )
            h = heads[task]
            lines.append(
                f"| {TASK_LABELS.get(task, task)} | {METRIC_LABELS.get(metric, metric)} | "
                f"{_fmt(by['zero-shot'], metric)} | {_fmt(by['full'], metric)} ({h['full']} heads) | "
                f"{_fmt(by['held-out'], metric)} ({h['held-out']} heads{_k_note(h['held-out k'])}) | "
                f"{better} |"
            )
    note = (
        f"{split} split, n = {n} per task; accuracies in %, fluency in bits; 95% intervals in brackets (Wilson "
        "for accuracies, mean +- 1.96 SE otherwise). The leave-one-out profile of a task was made without it (its "
        "examples and scores played no part)."
    )
    return "\n".join(lines + ["", note]) + "\n"


def transfer(
    model: Any,
    profile: HeadProfile,
    held_out: Mapping[str, HeadProfile],
    split: str = "test",
    n: int | None = 50,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    tasks: Mapping[str, Task] | None = None,
) -> TransferResult:
    """Evaluate each held-out task under zero-shot, the full ``profile`` and its leave-one-out profile.

    The runs go to ``out_dir/full`` (zero-shot and the full profile, all tasks in one resumable
    ``examples.jsonl``) and ``out_dir/without-<task>`` (the held-out profile on that task), the held-out profiles
    to ``out_dir/profiles/without-<task>.json``, the table to ``out_dir/table.md`` and the numbers to
    ``out_dir/summary.json``. Interrupted runs resume (the harness's rule). ``tasks`` maps names to task objects
    (default ``get_task(name)``), as in :func:`leave_one_out_profiles`.
    """
    out = Path(out_dir) if out_dir is not None else None
    world = current_world()
    writer = world.is_main  # under torchrun rank 0 writes (and holds the lock)
    with results_lock(out, world, what="the transfer folder"):  # one writer of OUT at a time
        rows: dict[str, dict[str, Any]] = {}
        heads: dict[str, dict[str, int | None]] = {}  # held-out k: None for a profile without one
        for task, prof in held_out.items():
            if out is not None and writer:
                prof.save(out / "profiles" / f"without-{task}.json")
            t_obj = _task(task, tasks)
            full = evaluate(
                model,
                [t_obj],
                ["zero-shot", "pasta"],
                split,
                n,
                profile=profile,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
                out_dir=None if out is None else out / "full",
            )
            loo = evaluate(
                model,
                [t_obj],
                ["pasta"],
                split,
                n,
                profile=prof,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
                out_dir=None if out is None else out / f"without-{task}",
            )
            mine = full.summary["tasks"][task]
            rows[task] = {
                "zero-shot": mine["zero-shot"],
                "full": mine["pasta"],
                "held-out": loo.summary["tasks"][task]["pasta"],
            }
            heads[task] = {"full": len(profile.heads), "held-out": len(prof.heads), "held-out k": prof.k}
        table = _table(rows, heads, tasks, split, n)
        if out is not None and writer:
            atomic_write_text(out / "table.md", table)
            atomic_write_text(
                out / "summary.json",
                json.dumps({"split": split, "n": n, "seed": seed, "rows": rows, "heads": heads}, indent=1) + "\n",
            )
    return TransferResult(rows, heads, table, out)
