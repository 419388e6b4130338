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
fluency floor and, with ``context_qa`` among the tasks, a content floor ``--content-floor``; its rows are kept in
``CHECKPOINT_DIR/selection/`` so a rerun resumes). ``--select-by logprob``
(the default: no generation, minutes instead of tens of minutes) keeps the teacher-forced objective gain.
``--from-profile P`` reuses the per-task scores of a saved profile instead of profiling again.

    pasta-lens profile --from-profile smollm2-135m-instruct --k auto --select-by metric --ks 60,90,120 \
        --strategies intersection,union --schedules all,prompt --val-n 20 --out profiles/smollm2-metric.json
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Sequence
from typing import Any

from pasta_lens.cli import int_list
from pasta_lens.cli.profile_learned import check_learned_arguments, run_learned
from pasta_lens.cli.profile_options import DEFAULT_TASKS, add_profile_arguments
from pasta_lens.cli.profile_preset import (
    apply_preset,
    apply_preset_tasks,
    check_preset,
    pre_load_tasks,
    preset_provenance,
)
from pasta_lens.cli.profile_select import check_selection, choose, reused_scores, selection_command


def recorded_command(args: argparse.Namespace) -> str:
    """The canonical command line that repeats this run (recorded in the profile): every option spelled out, so
    that the line means the same whatever the defaults or the preset become (``--preset`` is kept, and changes
    nothing, since every option it fills in is given)."""
    args = apply_preset(argparse.Namespace(**vars(args)), chat=False)  # a copy: parsed-only args get their defaults
    parts = ["pasta-lens", "profile"] + (["--preset", args.preset] if getattr(args, "preset", None) else [])
    parts += [
        "--model",
        args.model,
        "--tasks",
        args.tasks,
        "--n",
        str(args.n),
        "--method",
        args.method,
        "--alpha",
        str(args.alpha),
    ]
    if args.method == "hybrid":  # --top-m and --rescore-n change nothing for the other methods
        parts += ["--top-m", str(args.top_m)] if args.top_m is not None else []
        if args.rescore_n is not None:
            parts += ["--rescore-n", str(args.rescore_n)]
    parts += ["--k", str(args.k)]
    if args.k == "auto":
        parts += ["--ks", args.ks, "--val-n", str(args.val_n)]
        parts += selection_command(args)
    parts += ["--strategy", args.strategy, "--seed", str(args.seed), "--bios", args.bios]
    if args.end_turn:
        parts += ["--end-turn"]
    if args.allow_attribution_tail:
        parts += ["--allow-attribution-tail"]
    if args.from_profile:
        parts += ["--from-profile", str(args.from_profile)]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


def _examples(
    model: Any, tasks: Sequence[str], split: str, n: int, seed: int, end_turn: bool = False, bios: str = "implied"
) -> dict[str, list]:
    try:
        from pasta_lens.tasks import build_task
    except ImportError as err:
        raise ImportError(f"pasta-lens profile needs the task definitions (pasta_lens.tasks): {err}") from None
    return {
        t: list(build_task(t, bios=bios).profiling_examples(model, split=split, n=n, seed=seed, end_turn=end_turn))
        for t in tasks
    }


def _check_arguments(args: argparse.Namespace) -> list[str]:
    """Everything that can be checked without the model (which takes ~20 s to load): fail fast, before it."""
    from pasta_lens.tasks import get_task

    if args.out is None:
        raise ValueError("pasta-lens profile needs --out PATH for the profile JSON (e.g. profiles/my-model.json).")
    tasks = [t.strip() for t in pre_load_tasks(args).split(",") if t.strip()]
    if not tasks:
        raise ValueError(f"--tasks is empty; give task names separated by commas, e.g. {DEFAULT_TASKS}.")
    for t in tasks:
        get_task(t)  # an unknown name raises with the list of names
    check_preset(args)
    if args.strategy == "task_specific" and len(tasks) != 1:
        raise ValueError("--strategy task_specific profiles one task: pass exactly one name in --tasks.")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1) to profile (1 = no steering); got {args.alpha}.")
    ks = [args.k] if args.k != "auto" else int_list(args.ks)
    if args.top_m is None:  # hybrid: by default exact scores decide every k that can be chosen
        args.top_m = max(ks)
    for name in ("n", "top_m", "heads_per_batch", "val_n"):
        if getattr(args, name) < (2 if name == "heads_per_batch" else 1):
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive integer"
                f"{' >= 2' if name == 'heads_per_batch' else ''}; got {getattr(args, name)}."
            )
    if args.rescore_n is not None and args.rescore_n < 1:
        raise ValueError(f"--rescore-n must be a positive integer; got {args.rescore_n}.")
    if args.method == "hybrid" and max(ks) > args.top_m and not args.allow_attribution_tail:
        raise ValueError(
            f"--method hybrid re-scores the top {args.top_m} heads exactly (--top-m), but k goes up to "
            f"{max(ks)}: beyond place {args.top_m} heads would be selected by attribution. Raise --top-m "
            f"to {max(ks)}, lower --k/--ks, use --method attribution, or pass --allow-attribution-tail "
            "(the profile's method then says so)."
        )
    if args.method == "learned":
        check_learned_arguments(args)
        if getattr(args, "from_profile", None):
            raise ValueError(
                "--from-profile reuses a profile's scores for --k auto; --method learned trains its own "
                "strengths on train examples: drop one of them."
            )
    check_selection(args, tasks)
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
        print(
            f"{len(union.heads)} heads ({' + '.join(str(len(p.heads)) for p in profiles)} in "
            f"{', '.join(args.profiles)}), schedule {union.provenance['schedule']}. Wrote {args.union_out}"
        )
        return 0
    if args.profile_command == "plot":
        from pasta_lens.cli import read_profile
        from pasta_lens.plot import plot_profile

        plot_profile(read_profile(args.profile), args.plot_out, tasks=args.task)
        print(f"wrote {args.plot_out}")
        return 0
    from pasta_lens.distributed import current_world

    apply_preset(args)  # the preset's options (or the plain defaults) where the user gave none
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
        import torch  # (pasta_lens.cli.main restores the caller's count after the command)

        torch.set_num_threads(args.threads)
    model = load_model_for(args)
    if args.tasks is None:  # --preset without --tasks: the model's chat template decides the tasks
        tasks = [t.strip() for t in apply_preset_tasks(args, model).split(",") if t.strip()]
    reused: dict[str, Any] = {}
    examples = (
        _examples(model, tasks, "train", args.n, args.seed, args.end_turn, args.bios) if not args.source_profile else {}
    )
    if args.method == "learned":  # per-head strengths by gradient descent: pasta_lens/cli/profile_learned.py
        return run_learned(args, model, examples, started, quiet)
    checkpoint_dir = args.checkpoint_dir or f"{args.out}.ckpt"
    profile_start = time.perf_counter()
    scores = (
        profile_tasks(
            model,
            examples,
            args.method,
            args.alpha,
            args.top_m,
            args.heads_per_batch,
            checkpoint_dir,
            progress=not quiet,
            rescore_examples=args.rescore_n,
        )
        if not args.source_profile
        else reused_scores(args, model, tasks, reused)
    )
    # every resumed segment counts: each task's checkpoint sums its segments' compute time
    profiled = sum(s.wall_time_s for s in scores.values())
    profiled = profiled if profiled == profiled else 0.0  # NaN: reused scores without a recorded time
    this_segment = time.perf_counter() - profile_start
    provenance: dict[str, Any] = {
        "profiling_wall_time_s": round(profiled, 1),
        "split": "train",
        "profiling_wall_time_s_per_task": {
            t: round(s.wall_time_s, 1) for t, s in scores.items() if s.wall_time_s == s.wall_time_s
        },
        "processes": world.size,
        **preset_provenance(args),
        **reused,
    }
    if args.method != "attribution":
        provenance["heads_per_batch"] = args.heads_per_batch
    if args.method == "hybrid":
        provenance["top_m"] = args.top_m
        if args.rescore_n is not None:
            provenance["rescore_examples"] = args.rescore_n
    k, strategy = args.k, args.strategy
    if k == "auto":
        total = model.cfg.n_layers * model.cfg.n_heads
        ks = [x for x in int_list(args.ks) if x <= total]
        selection_start = time.perf_counter()
        k, strategy, _ = choose(
            args,
            model,
            scores,
            tasks,
            ks,
            quiet,
            provenance,
            lambda: _examples(model, tasks, "validation", args.val_n, args.seed, bios=args.bios),
        )
        provenance["selection_wall_time_s"] = round(time.perf_counter() - selection_start, 1)
    # this run's wall time with its own profiling segment replaced by the profiling time of every segment
    provenance["total_wall_time_s"] = round(time.perf_counter() - started - this_segment + profiled, 1)
    profile = make_profile(
        model,
        args.model,
        scores,
        int(k),
        strategy,
        task=tasks[0] if strategy == "task_specific" else None,
        seed=args.seed,
        command=recorded_command(args),
        provenance=provenance,
        allow_attribution_tail=args.allow_attribution_tail,
    )
    if not world.is_main:
        return 0
    profile.save(args.out)
    chosen = f", schedule {provenance['schedule']}" if "schedule" in provenance else ""
    print(
        f"{args.model}: {len(profile.heads)} heads selected (k={k}, {strategy}{chosen}; "
        f"{provenance.get('selected_by', 'fixed k')}) from "
        f"{', '.join(f'{t} x {s.n_examples}' for t, s in scores.items())} examples, {profile.method}; "
        f"{provenance['total_wall_time_s']:.0f} s. Wrote {args.out}"
    )
    return 0


def add_parser(sub: Any) -> None:
    """Register ``profile`` (and ``profile plot``) on the ``pasta-lens`` sub-command parser."""
    p = sub.add_parser(
        "profile",
        help="profile heads on tasks and save a head profile (or: profile plot)",
        description="Score every attention head on the tasks' train examples, select heads "
        "(per-task top-k combined), and save a HeadProfile JSON; or fit per-head "
        "strengths (--method learned). `pasta-lens profile plot PROFILE --out x.png` "
        "draws one; `pasta-lens profile union A B --out C` combines profiles.",
    )
    add_profile_arguments(p)
    p.set_defaults(func=_cmd_profile, profile_command=None)
    plot_sub = p.add_subparsers(dest="profile_command")
    plot = plot_sub.add_parser(
        "plot",
        help="layer x head heatmap of a profile, selected heads marked",
        description="Write a PNG heatmap of a profile's per-task scores (layers x heads) "
        "with the selected heads marked. Needs matplotlib.",
    )
    plot.add_argument("profile", help="a shipped profile name (e.g. smollm2-135m-instruct) or a JSON path")
    plot.add_argument("--out", dest="plot_out", required=True, help="PNG file to write")
    plot.add_argument("--task", action="append", default=None, help="plot only this task (repeatable)")
    union = plot_sub.add_parser(
        "union",
        help="one profile steering the heads of several (strongest alpha wins)",
        description="Combine profiles of one model and one schedule into one that steers "
        "every head of each, a head in several at its smallest alpha "
        "(e.g. the multi-task intersection plus heads learned for one task).",
    )
    union.add_argument("profiles", nargs="+", help="shipped profile names or JSON paths (two or more)")
    union.add_argument("--out", dest="union_out", required=True, help="where to write the combined profile JSON")
