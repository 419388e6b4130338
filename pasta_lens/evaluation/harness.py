"""The evaluation loop: every task x every method, a JSONL row per example, a summary and a paper-style table.

For each (task, method) the harness renders each example's queries (:mod:`pasta_lens.tasks`), generates the
``generate`` queries in left-padded batches and scores the ``choice`` queries by teacher forcing
(:mod:`pasta_lens.evaluation.scoring`), with the method's :class:`~pasta_lens.plan.SteeringPlan` resolved once
(:mod:`pasta_lens.evaluation.plans`). Each finished example is appended to ``examples.jsonl`` at once, under the
folder's lock; an interrupted run resumes where it stopped (:mod:`pasta_lens.evaluation.rows`: rows are reused
for the same configuration key, which includes the plan and the engine, and the same rendered prompt; reused rows
are rescored from their stored outputs, so metric fixes apply to old runs). ``summary.json`` and ``table.md`` are
recomputed from the rows of the requested examples and written atomically (:mod:`pasta_lens.evaluation.report`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pasta_lens.distributed import broadcast, current_world, map_batches
from pasta_lens.evaluation.plans import HeadSource, load_source, method_plan
from pasta_lens.evaluation.report import markdown_table, summarize
from pasta_lens.evaluation.rows import (
    ROWS_FILE,
    append_row,
    config_key,
    plan_record,
    read_rows,
    results_lock,
    write_rows,
)
from pasta_lens.evaluation.scoring import (
    FORWARD,
    Engine,
    candidate_token_logprobs,
    choose_engine,
    generate_texts,
    method_engine,
    reduce_logprobs,
)
from pasta_lens.evaluation.specs import Method, parse_methods
from pasta_lens.generation import Engine as EngineName
from pasta_lens.io import atomic_write_text
from pasta_lens.plan import SteeringPlan
from pasta_lens.schedule import Schedule
from pasta_lens.tasks import TASK_NAMES, Rendering, Task, get_task


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` returns (and writes to ``out_dir``).

    Attributes:
        summary: per task and method: ``n``, the mean of every metric, the engine; ``config`` records the plans.
        table: the Markdown table (rows = methods, columns = task metrics, average).
        rows: every per-example row of this evaluation (as in ``examples.jsonl``).
        out_dir: where the files are (None when nothing was written).
    """

    summary: dict[str, Any]
    table: str
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    out_dir: Path | None = None


@dataclass(frozen=True)
class Configuration:
    """One (task, method) of an evaluation, resolved: what its rows depend on, and their key."""

    task: Task
    method: Method
    plan: SteeringPlan | None
    split: str
    engine: str
    max_new_tokens: int
    examples: tuple[Any, ...]
    key: str


def _model_name(model: Any) -> str:
    return str(getattr(model.cfg, "model_name", "") or type(model).__name__)


def _configure(
    model: Any,
    task: Task,
    method: Method,
    plan: SteeringPlan | None,
    engine: Engine,
    split: str,
    n: int | None,
    seed: int,
    variant: str,
    max_new_tokens: int | None,
) -> Configuration:
    examples = tuple(task.examples(split, n, seed))
    generates = any(q.kind == "generate" for ex in examples for q in task.queries(ex, variant))
    name = method_engine(method, engine) if generates else FORWARD
    max_new = max_new_tokens or task.max_new_tokens
    fields = {
        "model": _model_name(model),
        "task": task.name,
        "synthetic": bool(getattr(task, "synthetic", False)),
        "method": method.name,
        "split": split,
        "variant": variant,
        "marking": method.marking,
        "few_shot": method.few_shot,
        "steering": method.steering,
        "params": [list(p) for p in method.params],
        "plan": plan_record(plan),
        "max_new_tokens": max_new,
        "engine": name,
        "data": getattr(task, "data_key", None),
    }  # a task's second data source (implied bios): never mixed
    return Configuration(task, method, plan, split, name, max_new, examples, config_key(fields))


def evaluate(
    model: Any,
    tasks: str | Sequence[str | Task] = "all",
    methods: str | Sequence[str] = ("zero-shot", "pasta"),
    split: str = "test",
    n: int | None = 50,
    *,
    heads: Any = None,
    profile: Any = None,
    out_dir: str | os.PathLike | None = None,
    alpha: float | None = None,
    schedule: str | Schedule | None = None,
    batch_size: int = 8,
    resume: bool = True,
    seed: int = 0,
    variant: str = "default",
    max_new_tokens: int | None = None,
    progress: bool = True,
    allow_transfer: bool = False,
    engine: EngineName = "auto",
) -> EvaluationResult:
    """Evaluate ``methods`` on ``tasks``; write per-example JSONL, ``summary.json`` and ``table.md``.

    Args:
        model: a TransformerLens model.
        tasks: ``"all"``, task names, or :class:`~pasta_lens.tasks.Task` objects (e.g. with real bios).
        methods: ``"all"`` (every baseline) or method specs (:func:`~pasta_lens.evaluation.parse_method`).
        split: ``"test"`` to report; ``"validation"`` to choose settings (never tune on test).
        n: examples per task (None: the whole split).
        heads: the profile's heads as ``[(layer, head), ...]`` / ``{layer: [heads]}`` (ranked in the given order).
        profile: instead of ``heads``: a registry name, a path, or a ``HeadProfile``.
        out_dir: folder for ``examples.jsonl``, ``summary.json``, ``table.md`` (None: write nothing). The run holds
            the folder's lock: a second run on it is refused.
        alpha: explicit steering strength of every steered method (methods may override it with ``alpha=``).
            None: the precedence of :mod:`pasta_lens.plan` (``pasta``: the profile's per-head alphas, else its
            alpha, else 0.01; ``all-heads`` / ``random``: 0.01). Each method's plan is in ``summary["config"]``.
        schedule: explicit steering schedule (methods may override it with ``schedule=``); None: the profile's
            recorded schedule (``profile.provenance["schedule"]``), else ``"all"``.
        batch_size: prompts per generation batch (left-padded).
        resume: reuse finished rows of ``out_dir/examples.jsonl`` with the same configuration. With False,
            the rows of the configurations this call computes are replaced; other rows are kept.
        seed: chooses the examples, the few-shot demonstrations and the random head set.
        variant: prompt variant of the tasks (e.g. ``"short"`` for JSON).
        max_new_tokens: generation length (default: each task's own).
        progress: show tqdm progress bars.
        allow_transfer: use a profile made on other weights of the same shape (see :meth:`HeadProfile.validate_for`).
        engine: the generation loop: ``"auto"`` (what :func:`pasta_lens.generate` picks: HF's loop on the twin
            where it gives the hooked result, else the hooks), ``"hooks"`` or ``"hf"``. Recorded in every row and in
            the summary, and part of the configuration key.

    Raises:
        ValueError: bad arguments, a profile made for another model, or a malformed line in
            ``examples.jsonl`` (named by file and line).
        pasta_lens.io.LockedError: another live process is writing ``out_dir``.

    Example:
        >>> res = evaluate(model, ["json"], ["zero-shot", "pasta"], n=20, heads=[(20, 0), (21, 3)], out_dir="runs/x")
        >>> print(res.table)
    """
    if heads is not None and profile is not None:
        raise ValueError("Pass heads= or profile=, not both.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    task_objs = [
        get_task(t) if isinstance(t, str) else t
        for t in (TASK_NAMES if tasks == "all" else ([tasks] if isinstance(tasks, str) else tasks))
    ]
    method_objs = parse_methods(methods)
    source = load_source(profile if profile is not None else heads, model, allow_transfer)
    explicit_schedule = None if schedule is None else Schedule.parse(schedule)
    plans = {m.name: method_plan(m, model, source, alpha, explicit_schedule, seed) for m in method_objs}
    chosen = choose_engine(model, engine)
    configs = [
        _configure(model, t, m, plans[m.name], chosen, split, n, seed, variant, max_new_tokens)
        for t in task_objs
        for m in method_objs
    ]
    out = Path(out_dir) if out_dir is not None else None
    world = current_world()  # torch.distributed's rank/size; one process: World(0, 1)
    with results_lock(out, world):
        rows = _run(
            model,
            configs,
            out / ROWS_FILE if out is not None and world.is_main else None,
            resume,
            variant,
            seed,
            batch_size,
            progress,
            chosen,
        )
        summary = summarize(rows, task_objs, method_objs)
        summary["config"] = _summary_config(
            model, split, n, seed, variant, alpha, explicit_schedule, source, plans, chosen, task_objs
        )
        table = markdown_table(summary, task_objs, method_objs)
        if out is not None and world.is_main:
            atomic_write_text(out / "summary.json", _json(summary))
            atomic_write_text(out / "table.md", table)
    return EvaluationResult(summary, table, tuple(rows), out)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1) + "\n"


def _summary_config(
    model: Any,
    split: str,
    n: int | None,
    seed: int,
    variant: str,
    alpha: float | None,
    schedule: Schedule | None,
    source: HeadSource,
    plans: dict[str, SteeringPlan | None],
    engine: Engine,
    tasks: Sequence[Task],
) -> dict[str, Any]:
    return {
        "model": _model_name(model),
        "split": split,
        "n": n,
        "seed": seed,
        "variant": variant,
        "task_data": {t.name: getattr(t, "data_key", None) for t in tasks},
        "alpha": alpha,
        "schedule": _steered_schedule(plans, schedule),
        "schedule_source": _schedule_source(source, schedule),
        "heads_source": source.description,
        "n_profile_heads": len(source.ranked),
        "engine": engine.name,
        "engine_reason": engine.reason,
        "plans": {m: (p.describe() if p is not None else None) for m, p in plans.items()},
        "heads": {m: (list(map(list, p.heads)) if p is not None else None) for m, p in plans.items()},
    }


def _steered_schedule(plans: dict[str, SteeringPlan | None], explicit: Schedule | None) -> str | None:
    """The schedule the steered methods ran with: the explicit one, else the one their plans share; None when
    nothing is steered or the methods set different ones (``plans`` in the summary names each method's)."""
    if explicit is not None:
        return str(explicit)
    schedules = {str(p.schedule) for p in plans.values() if p is not None}
    return schedules.pop() if len(schedules) == 1 else None


def _schedule_source(source: HeadSource, explicit: Schedule | None) -> str:
    """Where the schedule came from, for the summary: the argument, the profile's provenance, or the default."""
    if explicit is not None:
        return "argument"
    provenance = getattr(source.spec, "provenance", None) or {}
    return "the profile's provenance" if provenance.get("schedule") else "default (all)"


def _run(
    model: Any,
    configs: Sequence[Configuration],
    rows_path: Path | None,
    resume: bool,
    variant: str,
    seed: int,
    batch_size: int,
    progress: bool,
    engine: Engine,
) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    world = current_world()
    stored = read_rows(rows_path) if rows_path is not None else []
    if rows_path is not None and stored and (not resume or len(stored) != _count_lines(rows_path)):
        redo = {(c.key, ex.uid) for c in configs for ex in c.examples} if not resume else set()
        stored = [r for r in stored if (r["config"], r["uid"]) not in redo]
        write_rows(rows_path, stored)  # duplicates dropped by read_rows, or the configurations to redo
    done = broadcast({(r["config"], r["uid"]): r for r in stored}, world)  # every rank resumes from rank 0's rows
    all_rows: list[dict[str, Any]] = []
    for c in configs:
        task, method = c.task, c.method
        rendering = Rendering(method.marking, task.demos(method.few_shot, seed) if method.few_shot else ())
        for ex in c.examples:  # reuse a finished row only for the same prompt; rescore it with today's metrics
            row = done.get((c.key, ex.uid))
            if row is not None:
                main = task.queries(ex, variant)[0]
                if row.get("prompt") != task.render(model, main.markup, rendering).text:
                    del done[(c.key, ex.uid)]
                else:
                    row["metrics"] = task.metrics_from(ex, row["outputs"])
        todo = [ex for ex in c.examples if (c.key, ex.uid) not in done]
        bar = tqdm(
            total=len(c.examples),
            initial=len(c.examples) - len(todo),
            disable=not progress,
            desc=f"{task.name} / {method.name}",
            unit="ex",
        )
        run = lambda chunk, c=c, r=rendering: run_chunk(model, c, chunk, r, variant, batch_size, engine)  # noqa: E731
        for chunk, new_rows in map_batches(todo, batch_size, run, world):  # batch b on rank b % N
            for ex, row in zip(chunk, new_rows):
                row.update(
                    config=c.key,
                    task=task.name,
                    method=method.name,
                    split=c.split,
                    uid=ex.uid,
                    synthetic=bool(getattr(ex, "synthetic", False)),
                )
                done[(c.key, ex.uid)] = row
                if rows_path is not None:
                    append_row(rows_path, row)
            bar.update(len(chunk))
        bar.close()
        all_rows += [done[(c.key, ex.uid)] for ex in c.examples]
    return all_rows


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())


def run_chunk(
    model: Any,
    config: Configuration,
    chunk: Sequence[Any],
    rendering: Rendering,
    variant: str,
    batch_size: int,
    engine: Engine,
) -> list[dict[str, Any]]:
    """The rows of a few examples of one configuration: generations in batches, choice queries one by one.

    A choice query stores the reduced log-probs its task asked for (``outputs[KEY]``, :attr:`Query.reduce`) and
    every candidate's per-token log-probs (``outputs["KEY.tokens"]``), from which a task may read others (the
    first token: CounterFact's ES/PS). ``engine``: the row's loop, ``"forward"`` when it generated nothing.
    """
    task, method, plan = config.task, config.method, config.plan
    queries = {ex.uid: task.queries(ex, variant) for ex in chunk}
    results: dict[str, dict[str, Any]] = {ex.uid: {} for ex in chunk}
    prompts: dict[str, dict[str, str]] = {ex.uid: {} for ex in chunk}
    gen = [(ex.uid, q) for ex in chunk for q in queries[ex.uid] if q.kind == "generate"]
    for i in range(0, len(gen), batch_size):
        sub = gen[i : i + batch_size]
        rendered = [task.render(model, q.markup, rendering) for _, q in sub]
        texts = generate_texts(model, rendered, method, plan, config.max_new_tokens, engine)
        for (uid, q), text, r in zip(sub, texts, rendered):
            results[uid][q.key] = text
            prompts[uid][q.key] = r.text
    for ex in chunk:
        for q in queries[ex.uid]:
            if q.kind == "choice":
                r = task.render(model, q.markup, rendering)
                per_token = candidate_token_logprobs(model, r, q.candidates, plan, method=method)
                results[ex.uid][q.key] = [reduce_logprobs(lps, q.reduce) for lps in per_token]
                results[ex.uid][f"{q.key}.tokens"] = per_token
                prompts[ex.uid][q.key] = r.text
    rows = []
    for ex in chunk:
        main = queries[ex.uid][0].key
        generated = any(q.kind == "generate" for q in queries[ex.uid])
        rows.append(
            {
                "prompt": prompts[ex.uid][main],
                "prompts": prompts[ex.uid],
                "outputs": results[ex.uid],
                "metrics": task.metrics_from(ex, results[ex.uid]),
                "engine": method_engine(method, engine) if generated else FORWARD,
            }
        )
    return rows
