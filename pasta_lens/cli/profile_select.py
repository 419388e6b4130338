"""``pasta-lens profile --k auto``: what chooses k (and the strategy and schedule), and reused scores.

``--select-by logprob`` (the default) steers each candidate head set on validation examples and keeps the largest
mean teacher-forced objective gain (:func:`~pasta_lens.profiling.ablation_curve`); ``--select-by metric`` compares
the tasks' own metrics on validation generations (:func:`~pasta_lens.evaluation.metric_curve`, with a fluency
floor, and with the context-QA task among ``--tasks`` a content floor, ``--content-floor``), optionally over
``--strategies`` and ``--schedules``. Both pick with
:func:`~pasta_lens.profiling.choose_point`. ``--from-profile P`` reuses the per-task scores of a saved profile.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pasta_lens.cli import int_list
from pasta_lens.head_profile import STRATEGIES


def selection_command(args: argparse.Namespace) -> list[str]:
    """The selection options of the command that repeats this run (``--select-by`` always, the rest when set)."""
    parts = ["--select-by", args.select_by or "logprob"]
    if args.strategies:
        parts += ["--strategies", args.strategies]
    if args.schedules:
        parts += ["--schedules", args.schedules]
    if (args.select_by or "logprob") == "metric":
        parts += ["--fluency-floor", str(fluency_floor(args))]
        if content_applies(args):
            parts += ["--content-floor", str(content_floor(args))]
    return parts


def content_applies(args: argparse.Namespace) -> bool:
    """Whether the content floor applies: the context-QA task is among ``--tasks``."""
    from pasta_lens.cli import split_list
    from pasta_lens.evaluation import CONTENT_TASK

    return CONTENT_TASK in split_list(args.tasks)


def content_floor(args: argparse.Namespace) -> float:
    """``--content-floor``, or the evaluation's default content floor."""
    from pasta_lens.evaluation import CONTENT_FLOOR

    value = getattr(args, "content_floor", None)
    return CONTENT_FLOOR if value is None else float(value)


def fluency_floor(args: argparse.Namespace) -> float:
    """``--fluency-floor``, or the evaluation's default floor."""
    from pasta_lens.evaluation import FLUENCY_FLOOR

    return FLUENCY_FLOOR if args.fluency_floor is None else args.fluency_floor


def check_selection(args: argparse.Namespace, tasks: list[str]) -> None:
    """The selection arguments (--select-by, --strategies, --schedules, --fluency-floor, --content-floor,
    --from-profile), checked before the model loads. Leaves ``args.strategy_list``, ``args.schedule_list`` and
    ``args.source_profile``."""
    from pasta_lens.cli import parse_schedule, read_profile, split_list
    from pasta_lens.profiling import scores_from_profile

    chooser = [
        f"--{n.replace('_', '-')}"
        for n in ("select_by", "strategies", "schedules", "fluency_floor", "content_floor")
        if getattr(args, n, None) is not None
    ]
    if args.k != "auto" and chooser:
        raise ValueError(
            f"{', '.join(chooser)} choose among candidates on validation examples: use them with "
            f"--k auto (with --k {args.k} nothing is chosen)."
        )
    args.strategy_list = split_list(args.strategies) if args.strategies is not None else [args.strategy]
    bad = [s for s in args.strategy_list if s not in STRATEGIES]
    if bad or not args.strategy_list or len(set(args.strategy_list)) != len(args.strategy_list):
        raise ValueError(
            f"--strategies takes distinct names among {', '.join(STRATEGIES)}, comma-separated; got "
            f"{args.strategies!r}."
        )
    if len(tasks) > 1 and set(args.strategy_list) == {"task_specific"}:
        raise ValueError(
            "--strategies task_specific alone cannot make one profile of several tasks (each task "
            "would get its own heads): add intersection or union, or pass one task in --tasks."
        )
    try:
        args.schedule_list = [str(parse_schedule(x)) for x in split_list(args.schedules or "all")]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--schedules: {err}") from None
    if not args.schedule_list or len(set(args.schedule_list)) != len(args.schedule_list):
        raise ValueError(f"--schedules takes distinct schedules, e.g. all,prompt,first:4; got {args.schedules!r}.")
    if (args.select_by or "logprob") == "logprob":
        if args.schedule_list != ["all"]:
            raise ValueError(
                "--schedules needs --select-by metric: the log-prob criterion teacher-forces the "
                "gold answer with every row steered and cannot tell schedules apart."
            )
        if args.fluency_floor is not None:
            raise ValueError("--fluency-floor needs --select-by metric (the log-prob criterion generates nothing).")
        if getattr(args, "content_floor", None) is not None:
            raise ValueError("--content-floor needs --select-by metric (the log-prob criterion generates nothing).")
    if not 0.0 <= fluency_floor(args) <= 1.0:
        raise ValueError(
            f"--fluency-floor is a fraction of the unsteered fluency, in [0, 1]; got {fluency_floor(args)}."
        )
    if not 0.0 <= content_floor(args) <= 1.0:
        raise ValueError(
            f"--content-floor is a fraction of the unsteered context-QA correctness, in [0, 1]; got "
            f"{content_floor(args)}."
        )
    if getattr(args, "content_floor", None) is not None and not content_applies(args):
        raise ValueError(
            "--content-floor is measured on the context_qa task's answer correctness: add context_qa to --tasks, "
            "or drop --content-floor."
        )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer; got {args.threads}.")
    args.source_profile = None
    if args.from_profile:
        source = read_profile(args.from_profile, "--from-profile")
        missing = [t for t in tasks if t not in source.scores]
        if missing:
            raise ValueError(
                f"--from-profile {args.from_profile} has no scores for {missing} (it has "
                f"{sorted(source.scores)}): choose --tasks among those."
            )
        if abs(source.alpha - args.alpha) > 1e-12:
            raise ValueError(
                f"--from-profile {args.from_profile} was scored at alpha={source.alpha}; pass --alpha "
                f"{source.alpha} (selection steers with the scores' alpha)."
            )
        args.source_profile = source
        # the recorded command and provenance describe the scores reused, not this parser's defaults
        reused = scores_from_profile(source, tasks)
        methods = {s.method for s in reused.values()}
        if len(methods) == 1:
            args.method = methods.pop()
        args.n = max(s.n_examples for s in reused.values())
        hybrid = [s.exact_through() for s in reused.values() if s.method == "hybrid"]
        args.top_m = min(hybrid) if hybrid else args.top_m
        ks = [args.k] if args.k != "auto" else int_list(args.ks)
        if hybrid and max(ks) > args.top_m and not args.allow_attribution_tail:
            raise ValueError(
                f"--from-profile {args.from_profile}: its hybrid scores are exact for the top "
                f"{args.top_m} heads only, but k goes up to {max(ks)}; lower --k/--ks or pass "
                "--allow-attribution-tail."
            )


def choose(
    args: argparse.Namespace,
    model: Any,
    scores: Any,
    tasks: list[str],
    ks: list[int],
    quiet: bool,
    provenance: dict[str, Any],
    validation_examples: Callable[[], dict[str, list]],
) -> tuple[int, str, str]:
    """``--k auto``: (k, strategy, schedule) chosen on validation examples; what chose them goes to provenance.

    ``validation_examples()`` gives the log-prob criterion its examples (the metric criterion draws its own)."""
    from pathlib import Path

    from pasta_lens.profiling import ablation_curve, choose_point

    eligible = lambda p: len(tasks) == 1 or p.strategy != "task_specific"  # noqa: E731 (one profile, one set)
    if (args.select_by or "logprob") == "metric":
        from pasta_lens.evaluation import curve_record, metric_curve
        from pasta_lens.tasks import build_task

        out = Path(args.checkpoint_dir or f"{args.out}.ckpt") / "selection"
        curve = metric_curve(
            model,
            scores,
            ks,
            args.strategy_list,
            args.schedule_list,
            tasks=[build_task(t, bios=args.bios) for t in tasks],
            split="validation",
            n=args.val_n,
            alpha=args.alpha,
            fluency_floor=fluency_floor(args),
            content_floor=content_floor(args),
            seed=args.seed,
            out_dir=out,
            progress=not quiet,
        )
        best = choose_point([p for p in curve if eligible(p)])
        provenance["metric_curve"] = curve_record(curve)
        provenance["selected_by"] = "metric"
        provenance["schedule"] = best.schedule
        provenance["fluency_floor_met"] = all(r >= curve.fluency_floor for r in best.fluency_ratio.values())
        content = ""
        if curve.content_floor is not None:
            provenance["content_floor"] = curve.content_floor
            provenance["content_floor_met"] = bool(best.passes_content)
            content = (
                f" and whose context_qa answer correctness is >= {curve.content_floor} x the unsteered "
                "correctness (content floor)"
            )
        floors = "floors" if content else "floor"
        provenance["k_chosen_on"] = (
            f"validation split, {args.val_n} examples per task: the mean over tasks of "
            "each task's headline metrics (average_metrics) on greedy generations, among "
            f"points whose fluency is >= {fluency_floor(args)} x the unsteered fluency on "
            f"every task that reports one{content}"
            + ("" if best.passes_floor else f"; NO point passed the {floors}: best of all taken")
        )
        if not best.passes_floor and not quiet:
            import sys

            kept = f" and context_qa correctness >= {curve.content_floor} x unsteered" if content else ""
            met = "fluency_floor_met / content_floor_met" if content else "fluency_floor_met = false"
            print(
                f"warning: no candidate kept fluency >= {fluency_floor(args)} x unsteered on every task{kept}; "
                f"chose the best score anyway (provenance {met})",
                file=sys.stderr,
            )
        return int(best.k), best.strategy, best.schedule
    val = validation_examples()
    points = [
        p
        for strategy in args.strategy_list
        for p in ablation_curve(model, scores, val, ks, strategy, args.alpha, progress=not quiet)
    ]
    best = choose_point([p for p in points if eligible(p)])
    provenance["ablation_curve"] = [
        {
            "k": p.k,
            "n_heads": p.n_heads,
            "metric": round(p.metric, 5),
            "per_task": {t: round(v, 5) for t, v in p.per_task.items()},
            "strategy": p.strategy,
        }
        for p in points
    ]
    provenance["selected_by"] = "logprob"
    provenance["k_chosen_on"] = f"validation split, {args.val_n} examples per task (mean objective gain)"
    return int(best.k), best.strategy, "all"


def reused_scores(args: argparse.Namespace, model: Any, tasks: list[str], provenance: dict[str, Any]) -> Any:
    """``--from-profile``: the saved profile's per-task scores (checked against this model), and where from."""
    from pasta_lens.profiling import scores_from_profile

    source = args.source_profile
    source.validate_for(model)
    provenance["scores_from"] = {
        "profile": str(args.from_profile),
        "command": source.command,
        "date": source.date,
        "method": source.method,
    }
    return scores_from_profile(source, tasks)
