"""``pasta-lens profile``: profile a model's heads on several tasks and save a :class:`HeadProfile`; and
``pasta-lens profile plot``: draw a profile's layer x head score heatmap with the selected heads marked.

    pasta-lens profile --model smollm2-135m-instruct --tasks json,pronoun,biasbios,counterfact --n 200 \\
        --method hybrid --k auto --out profiles/my-profile.json
    pasta-lens profile plot smollm2-135m-instruct --out smollm2.png

The profiling command mirrors the Python API: task examples from ``get_task(name).profiling_examples(model,
split="train", n=N, seed=SEED)``, :func:`~pasta_lens.profiling.profile_tasks`, then either a fixed ``--k`` or
``--k auto`` (:func:`~pasta_lens.profiling.ablation_curve` on ``split="validation"`` examples and
:func:`~pasta_lens.profiling.choose_k`), then :func:`~pasta_lens.profiling.make_profile`. Per-task checkpoints go
to ``--checkpoint-dir`` (default: ``OUT.ckpt/``): rerun the same command after an interruption to resume.
``--method learned`` (per-head alphas fitted by gradient descent) has its options and its run in
:mod:`~pasta_lens.cli.profile_learned`.

``--k auto --select-by metric`` chooses k, and with ``--strategies`` / ``--schedules`` the selection strategy and
the steering schedule, by the tasks' own metrics on validation *generations*
(:func:`~pasta_lens.evaluation.metric_curve`: mean over tasks of each task's headline metrics, subject to a
fluency floor; its rows are kept in ``CHECKPOINT_DIR/selection/`` so a rerun resumes). ``--select-by logprob``
(the default: no generation, minutes instead of tens of minutes) keeps the teacher-forced objective gain.
``--from-profile P`` reuses the per-task scores of a saved profile instead of profiling again.

    pasta-lens profile --from-profile smollm2-135m-instruct --k auto --select-by metric --ks 60,90,120 \
        --strategies intersection,union --schedules all,prompt --val-n 20 --out profiles/smollm2-metric.json
"""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any, Sequence, Union

from pasta_lens.cli import add_placement_arguments
from pasta_lens.cli.profile_learned import add_learned_arguments, check_learned_arguments, run_learned
from pasta_lens.models import DEFAULT_MODEL
from pasta_lens.head_profile import STRATEGIES
from pasta_lens.profiling import METHODS

DEFAULT_TASKS = "json,pronoun,biasbios,counterfact"
DEFAULT_KS = "3,5,10,15,20,30,40,60,80"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. {DEFAULT_KS}; got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. {DEFAULT_KS}; got {text!r}")
    return values


def _k(text: str) -> Union[int, str]:
    if text == "auto":
        return text
    value = _int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError("--k is one integer or 'auto'")
    return value[0]


def _command(args: argparse.Namespace) -> str:
    """The canonical command line that repeats this run (recorded in the profile)."""
    parts = ["pasta-lens", "profile", "--model", args.model, "--tasks", args.tasks, "--n", str(args.n),
             "--method", args.method, "--alpha", str(args.alpha)]
    if args.method == "hybrid":  # --top-m and --rescore-n change nothing for the other methods
        parts += ["--top-m", str(args.top_m)] if args.top_m is not None else []
        if args.rescore_n is not None:
            parts += ["--rescore-n", str(args.rescore_n)]
    parts += ["--k", str(args.k)]
    if args.k == "auto":
        parts += ["--ks", args.ks, "--val-n", str(args.val_n)]
        parts += _selection_command(args)
    parts += ["--strategy", args.strategy, "--seed", str(args.seed), "--bios", args.bios]
    if args.end_turn:
        parts += ["--end-turn"]
    if args.allow_attribution_tail:
        parts += ["--allow-attribution-tail"]
    if args.from_profile:
        parts += ["--from-profile", str(args.from_profile)]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


# ------------------------------------------------------------------------ --k auto: what chooses k (and more)
def _selection_command(args: argparse.Namespace) -> list[str]:
    parts = ["--select-by", args.select_by or "logprob"]
    if args.strategies:
        parts += ["--strategies", args.strategies]
    if args.schedules:
        parts += ["--schedules", args.schedules]
    if (args.select_by or "logprob") == "metric":
        parts += ["--fluency-floor", str(_floor(args))]
    return parts


def _floor(args: argparse.Namespace) -> float:
    from pasta_lens.evaluation import FLUENCY_FLOOR

    return FLUENCY_FLOOR if args.fluency_floor is None else args.fluency_floor


def _check_selection(args: argparse.Namespace, tasks: list[str]) -> None:
    """The selection arguments (--select-by, --strategies, --schedules, --fluency-floor, --from-profile), checked
    before the model loads. Leaves ``args.strategy_list``, ``args.schedule_list`` and ``args.source_profile``."""
    from pasta_lens.cli import parse_schedule, read_profile, split_list
    from pasta_lens.profiling import scores_from_profile

    chooser = [f"--{n.replace('_', '-')}" for n in ("select_by", "strategies", "schedules", "fluency_floor")
               if getattr(args, n) is not None]
    if args.k != "auto" and chooser:
        raise ValueError(f"{', '.join(chooser)} choose among candidates on validation examples: use them with "
                         f"--k auto (with --k {args.k} nothing is chosen).")
    args.strategy_list = split_list(args.strategies) if args.strategies is not None else [args.strategy]
    bad = [s for s in args.strategy_list if s not in STRATEGIES]
    if bad or not args.strategy_list or len(set(args.strategy_list)) != len(args.strategy_list):
        raise ValueError(f"--strategies takes distinct names among {', '.join(STRATEGIES)}, comma-separated; got "
                         f"{args.strategies!r}.")
    if len(tasks) > 1 and set(args.strategy_list) == {"task_specific"}:
        raise ValueError("--strategies task_specific alone cannot make one profile of several tasks (each task "
                         "would get its own heads): add intersection or union, or pass one task in --tasks.")
    try:
        args.schedule_list = [str(parse_schedule(x)) for x in split_list(args.schedules or "all")]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--schedules: {err}") from None
    if not args.schedule_list or len(set(args.schedule_list)) != len(args.schedule_list):
        raise ValueError(f"--schedules takes distinct schedules, e.g. all,prompt,first:4; got {args.schedules!r}.")
    if (args.select_by or "logprob") == "logprob":
        if args.schedule_list != ["all"]:
            raise ValueError("--schedules needs --select-by metric: the log-prob criterion teacher-forces the "
                             "gold answer with every row steered and cannot tell schedules apart.")
        if args.fluency_floor is not None:
            raise ValueError("--fluency-floor needs --select-by metric (the log-prob criterion generates nothing).")
    if not 0.0 <= _floor(args) <= 1.0:
        raise ValueError(f"--fluency-floor is a fraction of the unsteered fluency, in [0, 1]; got {_floor(args)}.")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer; got {args.threads}.")
    args.source_profile = None
    if args.from_profile:
        source = read_profile(args.from_profile, "--from-profile")
        missing = [t for t in tasks if t not in source.scores]
        if missing:
            raise ValueError(f"--from-profile {args.from_profile} has no scores for {missing} (it has "
                             f"{sorted(source.scores)}): choose --tasks among those.")
        if abs(source.alpha - args.alpha) > 1e-12:
            raise ValueError(f"--from-profile {args.from_profile} was scored at alpha={source.alpha}; pass --alpha "
                             f"{source.alpha} (selection steers with the scores' alpha).")
        args.source_profile = source
        # the recorded command and provenance describe the scores reused, not this parser's defaults
        reused = scores_from_profile(source, tasks)
        methods = {s.method for s in reused.values()}
        if len(methods) == 1:
            args.method = methods.pop()
        args.n = max(s.n_examples for s in reused.values())
        hybrid = [s.exact_through() for s in reused.values() if s.method == "hybrid"]
        args.top_m = min(hybrid) if hybrid else args.top_m
        ks = [args.k] if args.k != "auto" else _int_list(args.ks)
        if hybrid and max(ks) > args.top_m and not args.allow_attribution_tail:
            raise ValueError(f"--from-profile {args.from_profile}: its hybrid scores are exact for the top "
                             f"{args.top_m} heads only, but k goes up to {max(ks)}; lower --k/--ks or pass "
                             "--allow-attribution-tail.")


def _choose(args: argparse.Namespace, model: Any, scores: Any, tasks: list[str], ks: list[int], quiet: bool,
            provenance: dict[str, Any]) -> tuple[int, str, str]:
    """``--k auto``: (k, strategy, schedule) chosen on validation examples; what chose them goes to provenance."""
    from pathlib import Path

    from pasta_lens.profiling import ablation_curve, choose_point

    eligible = lambda p: len(tasks) == 1 or p.strategy != "task_specific"  # noqa: E731 (one profile, one set)
    if (args.select_by or "logprob") == "metric":
        from pasta_lens.evaluation import curve_record, metric_curve

        out = Path(args.checkpoint_dir or f"{args.out}.ckpt") / "selection"
        from pasta_lens.tasks import build_task

        curve = metric_curve(model, scores, ks, args.strategy_list, args.schedule_list,
                             tasks=[build_task(t, bios=args.bios) for t in tasks],
                             split="validation", n=args.val_n, alpha=args.alpha, fluency_floor=_floor(args),
                             seed=args.seed, out_dir=out, progress=not quiet)
        best = choose_point([p for p in curve if eligible(p)])
        provenance["metric_curve"] = curve_record(curve)
        provenance["selected_by"] = "metric"
        provenance["schedule"] = best.schedule
        provenance["fluency_floor_met"] = bool(best.passes_floor)
        provenance["k_chosen_on"] = (f"validation split, {args.val_n} examples per task: the mean over tasks of "
                                     "each task's headline metrics (average_metrics) on greedy generations, among "
                                     f"points whose fluency is >= {_floor(args)} x the unsteered fluency on every "
                                     "task that reports one" + ("" if best.passes_floor else
                                                               "; NO point passed the floor: best of all taken"))
        if not best.passes_floor and not quiet:
            import sys

            print(f"warning: no candidate kept fluency >= {_floor(args)} x unsteered on every task; chose the best "
                  "score anyway (provenance fluency_floor_met = false)", file=sys.stderr)
        return int(best.k), best.strategy, best.schedule
    val = _examples(model, tasks, "validation", args.val_n, args.seed, bios=args.bios)
    curve = [p for strategy in args.strategy_list
             for p in ablation_curve(model, scores, val, ks, strategy, args.alpha, progress=not quiet)]
    best = choose_point([p for p in curve if eligible(p)])
    provenance["ablation_curve"] = [{"k": p.k, "n_heads": p.n_heads, "metric": round(p.metric, 5),
                                     "per_task": {t: round(v, 5) for t, v in p.per_task.items()},
                                     "strategy": p.strategy} for p in curve]
    provenance["selected_by"] = "logprob"
    provenance["k_chosen_on"] = f"validation split, {args.val_n} examples per task (mean objective gain)"
    return int(best.k), best.strategy, "all"


def _reused_scores(args: argparse.Namespace, model: Any, tasks: list[str], provenance: dict[str, Any]) -> Any:
    """``--from-profile``: the saved profile's per-task scores (checked against this model), and where from."""
    from pasta_lens.profiling import scores_from_profile

    source = args.source_profile
    source.validate_for(model)
    provenance["scores_from"] = {"profile": str(args.from_profile), "command": source.command,
                                 "date": source.date, "method": source.method}
    return scores_from_profile(source, tasks)


def _examples(model: Any, tasks: Sequence[str], split: str, n: int, seed: int, end_turn: bool = False,
              bios: str = "implied") -> dict[str, list]:
    try:
        from pasta_lens.tasks import build_task
    except ImportError as err:
        raise ImportError(f"pasta-lens profile needs the task definitions (pasta_lens.tasks): {err}") from None
    return {t: list(build_task(t, bios=bios).profiling_examples(model, split=split, n=n, seed=seed,
                                                                end_turn=end_turn)) for t in tasks}


def _check_arguments(args: argparse.Namespace) -> list[str]:
    """Everything that can be checked without the model (which takes ~20 s to load): fail fast, before it."""
    from pasta_lens.tasks import get_task

    if args.out is None:
        raise ValueError("pasta-lens profile needs --out PATH for the profile JSON (e.g. profiles/my-model.json).")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ValueError(f"--tasks is empty; give task names separated by commas, e.g. {DEFAULT_TASKS}.")
    for t in tasks:
        get_task(t)  # an unknown name raises with the list of names
    if args.strategy == "task_specific" and len(tasks) != 1:
        raise ValueError("--strategy task_specific profiles one task: pass exactly one name in --tasks.")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1) to profile (1 = no steering); got {args.alpha}.")
    ks = [args.k] if args.k != "auto" else _int_list(args.ks)
    if args.top_m is None:  # hybrid: by default exact scores decide every k that can be chosen
        args.top_m = max(ks)
    for name in ("n", "top_m", "heads_per_batch", "val_n"):
        if getattr(args, name) < (2 if name == "heads_per_batch" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer"
                             f"{' >= 2' if name == 'heads_per_batch' else ''}; got {getattr(args, name)}.")
    if args.rescore_n is not None and args.rescore_n < 1:
        raise ValueError(f"--rescore-n must be a positive integer; got {args.rescore_n}.")
    if args.method == "hybrid" and max(ks) > args.top_m and not args.allow_attribution_tail:
        raise ValueError(f"--method hybrid re-scores the top {args.top_m} heads exactly (--top-m), but k goes up to "
                         f"{max(ks)}: beyond place {args.top_m} heads would be selected by attribution. Raise --top-m "
                         f"to {max(ks)}, lower --k/--ks, use --method attribution, or pass --allow-attribution-tail "
                         "(the profile's method then says so).")
    if args.method == "learned":
        check_learned_arguments(args)
        if getattr(args, "from_profile", None):
            raise ValueError("--from-profile reuses a profile's scores for --k auto; --method learned trains its own "
                             "strengths on train examples: drop one of them.")
    _check_selection(args, tasks)
    return tasks


def _cmd_profile(args: argparse.Namespace) -> int:
    from pasta_lens.io import file_lock

    if args.profile_command == "union":
        from pasta_lens.cli import read_profile
        from pasta_lens.profiling import union_profiles

        profiles = [read_profile(name, "profile union") for name in args.profiles]
        command = shlex.join(["pasta-lens", "profile", "union", *args.profiles, "--out", str(args.union_out)])
        union = union_profiles(profiles, names=args.profiles, command=command)
        union.save(args.union_out)
        print(f"{len(union.heads)} heads ({' + '.join(str(len(p.heads)) for p in profiles)} in "
              f"{', '.join(args.profiles)}), schedule {union.provenance['schedule']}. Wrote {args.union_out}")
        return 0
    if args.profile_command == "plot":
        from pasta_lens.plot import plot_profile

        from pasta_lens.cli import read_profile

        plot_profile(read_profile(args.profile), args.plot_out, tasks=args.task)
        print(f"wrote {args.plot_out}")
        return 0
    from pasta_lens.distributed import current_world

    tasks = _check_arguments(args)
    if not current_world().is_main:  # under torchrun rank 0 holds the lock for the whole run and alone writes
        return _profile(args, tasks)
    with file_lock(args.out, what="the profile output"):
        return _profile(args, tasks)


def _profile(args: argparse.Namespace, tasks: list[str]) -> int:
    from pasta_lens.cli import load_model_for
    from pasta_lens.distributed import current_world
    from pasta_lens.profiling import make_profile, profile_tasks

    started = time.perf_counter()
    world = current_world()  # under torchrun: examples shared by rank, rank 0 writes and prints
    quiet = args.quiet or not world.is_main
    if args.threads:  # on a shared CPU one intra-op thread per process avoids OpenMP spin-waiting
        import torch

        torch.set_num_threads(args.threads)
    model = load_model_for(args)
    reused: dict[str, Any] = {}
    examples = (_examples(model, tasks, "train", args.n, args.seed, args.end_turn, args.bios)
                if not args.source_profile else {})
    if args.method == "learned":  # per-head strengths by gradient descent: pasta_lens/cli/profile_learned.py
        return run_learned(args, model, examples, started, quiet)
    checkpoint_dir = args.checkpoint_dir or f"{args.out}.ckpt"
    profile_start = time.perf_counter()
    scores = (profile_tasks(model, examples, args.method, args.alpha, args.top_m, args.heads_per_batch,
                            checkpoint_dir, progress=not quiet, rescore_examples=args.rescore_n)
              if not args.source_profile else _reused_scores(args, model, tasks, reused))
    # every resumed segment counts: each task's checkpoint sums its segments' compute time
    profiled = sum(s.wall_time_s for s in scores.values())
    profiled = profiled if profiled == profiled else 0.0  # NaN: reused scores without a recorded time
    this_segment = time.perf_counter() - profile_start
    provenance: dict[str, Any] = {"profiling_wall_time_s": round(profiled, 1), "split": "train",
                                  "profiling_wall_time_s_per_task": {t: round(s.wall_time_s, 1)
                                                                     for t, s in scores.items()
                                                                     if s.wall_time_s == s.wall_time_s},
                                  "processes": world.size, **reused}
    if args.method != "attribution":
        provenance["heads_per_batch"] = args.heads_per_batch
    if args.method == "hybrid":
        provenance["top_m"] = args.top_m
        if args.rescore_n is not None:
            provenance["rescore_examples"] = args.rescore_n
    k, strategy = args.k, args.strategy
    if k == "auto":
        total = model.cfg.n_layers * model.cfg.n_heads
        ks = [x for x in _int_list(args.ks) if x <= total]
        selection_start = time.perf_counter()
        k, strategy, _ = _choose(args, model, scores, tasks, ks, quiet, provenance)
        provenance["selection_wall_time_s"] = round(time.perf_counter() - selection_start, 1)
    # this run's wall time with its own profiling segment replaced by the profiling time of every segment
    provenance["total_wall_time_s"] = round(time.perf_counter() - started - this_segment + profiled, 1)
    profile = make_profile(model, args.model, scores, int(k), strategy,  # type: ignore[arg-type]
                           task=tasks[0] if strategy == "task_specific" else None, seed=args.seed,
                           command=_command(args), provenance=provenance,
                           allow_attribution_tail=args.allow_attribution_tail)
    if not world.is_main:
        return 0
    profile.save(args.out)
    chosen = f", schedule {provenance['schedule']}" if "schedule" in provenance else ""
    print(f"{args.model}: {len(profile.heads)} heads selected (k={k}, {strategy}{chosen}; "
          f"{provenance.get('selected_by', 'fixed k')}) from "
          f"{', '.join(f'{t} x {s.n_examples}' for t, s in scores.items())} examples, {profile.method}; "
          f"{provenance['total_wall_time_s']:.0f} s. Wrote {args.out}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``profile`` (and ``profile plot``) on the ``pasta-lens`` sub-command parser."""
    p = sub.add_parser("profile", help="profile heads on tasks and save a head profile (or: profile plot)",
                       description="Score every attention head on the tasks' train examples, select heads "
                                   "(per-task top-k combined), and save a HeadProfile JSON. "
                                   "`pasta-lens profile plot PROFILE --out x.png` draws one; `pasta-lens profile union A B "
                                   "--out C` combines profiles.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated tasks (default: {DEFAULT_TASKS})")
    p.add_argument("--n", "--n-examples", dest="n", type=int, default=200,
                   help="train examples per task (default 200; spell it --n-examples under torchrun, whose own "
                        "parser reads --n as an abbreviation of its options)")
    p.add_argument("--method", choices=METHODS + ("learned",), default="hybrid",
                   help="head scores: attribution (gradient), exact (steer each head), hybrid (default); or "
                        "learned: per-head alphas fitted by gradient descent (options below)")
    p.add_argument("--alpha", type=float, default=0.01, help="PASTA strength while profiling (default 0.01)")
    p.add_argument("--top-m", type=int, default=None,
                   help="hybrid: heads re-scored exactly, the attribution top-m (default: the largest k of --k/--ks, "
                        "so that exact scores decide every selection)")
    p.add_argument("--rescore-n", type=int, default=None,
                   help="hybrid: re-score on the first N examples per task only (default: all)")
    p.add_argument("--heads-per-batch", type=int, default=16, help="steered copies per forward (default 16)")
    p.add_argument("--k", type=_k, default="auto",
                   help="per-task top-k, or 'auto' to choose it on validation examples (default auto)")
    p.add_argument("--ks", default=DEFAULT_KS, help=f"candidate k for --k auto (default {DEFAULT_KS})")
    p.add_argument("--val-n", type=int, default=20, help="validation examples per task for --k auto (default 20)")
    p.add_argument("--strategy", choices=STRATEGIES, default="intersection",
                   help="combine per-task top-k sets (default: intersection, as in the paper)")
    # --k auto: what chooses (one block; see _check_selection)
    p.add_argument("--select-by", choices=("logprob", "metric"), default=None,
                   help="--k auto criterion: logprob (default: mean teacher-forced objective gain, fast) or metric "
                        "(the tasks' own metrics on validation generations, e.g. JSON F.Acc/P.Acc, with a fluency "
                        "floor; runs the evaluation harness, much slower)")
    p.add_argument("--strategies", default=None,
                   help="--k auto: compare these strategies and choose the best, e.g. intersection,union "
                        "(default: --strategy alone; task_specific with several tasks is compared, never chosen)")
    p.add_argument("--schedules", default=None,
                   help="--k auto --select-by metric: compare these steering schedules and choose one, e.g. "
                        "all,prompt,first:4 (default all); the choice is the profile's provenance['schedule']")
    p.add_argument("--fluency-floor", type=float, default=None,
                   help="--select-by metric: a candidate must keep >= this fraction of the unsteered fluency on "
                        "every task that reports fluency (default 0.95)")
    p.add_argument("--from-profile", default=None,
                   help="reuse the per-task scores of this saved profile (name or path; same model) instead of "
                        "profiling again: only the selection runs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's; 1 is much faster on a busy shared CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing task examples (default 0)")
    p.add_argument("--bios", choices=("named", "implied"), default="implied",
                   help="biographies of json/pronoun/biasbios for profiling, selection and learning: implied "
                        "(default: generated bios that only imply the occupation) or named (the first sentence "
                        "names it; what profiles made before this option used)")
    p.add_argument("--end-turn", action="store_true",
                   help="chat tasks' targets end with the template's end-of-turn marker (<|im_end|> on SmolLM2), "
                        "so the objective also rewards ending the answer (default: the answer alone)")
    p.add_argument("--out", default=None, help="where to write the profile JSON")
    p.add_argument("--checkpoint-dir", default=None, help="per-task checkpoints (default: OUT.ckpt/)")
    p.add_argument("--allow-attribution-tail", action="store_true",
                   help="hybrid: allow k > --top-m (heads beyond the exact block then come from attribution; the "
                        "profile's method says so)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_learned_arguments(p)
    add_placement_arguments(p)
    p.set_defaults(func=_cmd_profile, profile_command=None)
    plot_sub = p.add_subparsers(dest="profile_command")
    plot = plot_sub.add_parser("plot", help="layer x head heatmap of a profile, selected heads marked",
                               description="Write a PNG heatmap of a profile's per-task scores (layers x heads) "
                                           "with the selected heads marked. Needs matplotlib.")
    plot.add_argument("profile", help="a shipped profile name (e.g. smollm2-135m-instruct) or a JSON path")
    plot.add_argument("--out", dest="plot_out", required=True, help="PNG file to write")
    plot.add_argument("--task", action="append", default=None, help="plot only this task (repeatable)")
    union = plot_sub.add_parser("union", help="one profile steering the heads of several (strongest alpha wins)",
                                description="Combine profiles of one model and one schedule into one that steers "
                                            "every head of each, a head in several at its smallest alpha "
                                            "(e.g. the multi-task intersection plus heads learned for one task).")
    union.add_argument("profiles", nargs="+", help="shipped profile names or JSON paths (two or more)")
    union.add_argument("--out", dest="union_out", required=True, help="where to write the combined profile JSON")
