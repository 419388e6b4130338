"""``pasta-lens profile --method learned``: fit one steering strength per head and save a profile with them.

    pasta-lens profile --method learned --tasks json,pronoun,biasbios,counterfact --n 40 --steps 100 \\
        --out profiles/my-learned.json

The options build a :class:`~pasta_lens.profiling.LearnedConfig` (:func:`learned_config`; ``--help`` shows them in
its groups, the experimental ones marked), and the steps mirror the Python API (:mod:`pasta_lens.profiling.learned`):
attribution scores of every head on the train examples at ``--alpha-min``
(:func:`~pasta_lens.profiling.profile_tasks`, checkpointed per task in ``OUT.ckpt/{task}.ckpt`` like the other
methods), :func:`~pasta_lens.profiling.init_logits`,
:func:`~pasta_lens.profiling.learn_alphas` (checkpointed in ``OUT.ckpt/learned.ckpt``: rerun the same command to
resume, or with a larger ``--steps`` to continue) and :func:`~pasta_lens.profiling.learned_profile` (the heads with
alpha < ``--keep-below``, each at its learned alpha). ``--init-from P`` takes the initial logits from the attribution
tables stored in profile ``P`` instead of computing them (no attribution pass). ``--protect T`` (with
``--protect-gen F``: :func:`~pasta_lens.profiling.own_continuations`) builds task ``T``'s train examples for the
protect term of :func:`~pasta_lens.profiling.learn_alphas`; ``--protect-base T`` does the same for a task kept as
the ``--base-profile`` alone has it (KL to the base-steered model, targets from the base-steered model);
``--protect-each`` gives each protected task its own ``--per-step`` rows per step (default: one shared pool).
``--content-weight W`` adds the content term: ``--n`` context-QA train prompts with the unsteered model's own first
:data:`CONTENT_ANSWER_TOKENS` answer tokens (:func:`~pasta_lens.profiling.content_targets`), and each step
``W x KL(unsteered || steered)`` over the answer tokens copied from the document, so the steered model still reads
it.
``--own-targets F`` trains the tasks that can correct a model's own answer (pronoun) on the unsteered model's own
first ``F`` answer tokens with the instruction carried out (:meth:`~pasta_lens.tasks.base.Task.correct`). The shipped
SmolLM2 default was made by (the command its ``command`` records; ``bench/profile_budget.py --profile
smollm2-135m-instruct`` rebuilds it):

    pasta-lens profile --model smollm2-135m-instruct --tasks json --n 40 --method learned --steps 80 --per-step 2 \\
        --schedule prompt --end-turn --close-weight 0.5 --early-weight 0.5 --focus-weight 1 --protect pronoun \\
        --protect-base counterfact --protect-gen 16 --init-from smollm2-135m-instruct-attribution \\
        --base-profile smollm2-135m-instruct-metric --seed 2 --out profiles/my-default.json

``--k``, ``--ks``, ``--val-n``, ``--strategy``, ``--top-m`` and ``--rescore-n`` do not apply (no top-k selection
is made).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pasta_lens.cli.profile_learned_options import (
    CONTENT_ANSWER_TOKENS,
    CONTENT_TASK,
    learned_command,
)
from pasta_lens.profiling.learned.config import LearnedConfig


def check_learned_arguments(args: argparse.Namespace) -> None:
    """What can be checked before the model loads."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.alpha != 0.01:
        raise ValueError("--method learned measures attribution at --alpha-min, not --alpha: pass --alpha-min.")
    for name in ("steps", "per_step", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}.")
    if not 0.0 < args.alpha_min < 1.0:
        raise ValueError(f"--alpha-min must be in (0, 1); got {args.alpha_min}.")
    if not 0.0 < args.keep_below <= 1.0:
        raise ValueError(f"--keep-below must be in (0, 1]; got {args.keep_below}.")
    if not args.gain_cap >= 0:
        raise ValueError(f"--gain-cap must be >= 0 nats (0: no cap); got {args.gain_cap}.")
    args.content_weight = getattr(args, "content_weight", 0.0)
    for name in ("close_weight", "early_weight", "focus_weight", "protect_weight", "content_weight"):
        if not getattr(args, name) >= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0 (0: off); got {getattr(args, name)}.")
    for name in ("close_weight", "early_weight"):
        if getattr(args, name) and not getattr(args, "end_turn", False):
            raise ValueError(
                f"--{name.replace('_', '-')} weights the token before the end-of-turn marker: pass --end-turn too."
            )
    own_targets = getattr(args, "own_targets", 0)
    if own_targets < 0:
        raise ValueError(f"--own-targets must be >= 0 tokens (0: the gold answers); got {own_targets}.")
    if own_targets:
        from pasta_lens.tasks import get_task

        if not getattr(args, "end_turn", False):
            raise ValueError("--own-targets cuts the model's own answers at the end of its turn: pass --end-turn too.")
        if not any(get_task(t).corrects_answers for t in tasks):
            raise ValueError(
                f"--own-targets corrects the model's own answers of a task with such a rule (pronoun); "
                f"none of --tasks {args.tasks} has one: add pronoun or drop --own-targets."
            )
    if args.protect_gen < 0:
        raise ValueError(f"--protect-gen must be >= 0 tokens (0: the gold answers); got {args.protect_gen}.")
    protect_base = getattr(args, "protect_base", None)
    if args.protect_gen and not (args.protect or protect_base):
        raise ValueError("--protect-gen F protects a task's own free generation: name the task with --protect TASK.")
    for option, task in (("--protect", args.protect), ("--protect-base", protect_base)):
        if not task:
            continue
        from pasta_lens.tasks import TASK_NAMES

        if task not in TASK_NAMES:
            raise ValueError(f"{option} {task!r} is not a task; choose one of {', '.join(TASK_NAMES)}.")
        if task in tasks:
            raise ValueError(
                f"{option} {task} is also in --tasks: a task is either trained for or "
                "protected; drop it from one of them."
            )
    if protect_base and protect_base == args.protect:
        raise ValueError(
            f"--protect and --protect-base both name {protect_base}: a task's answers are kept either "
            "as the unsteered model has them or as the base profile has them; drop one."
        )
    if getattr(args, "protect_each", False) and not (args.protect and protect_base):
        raise ValueError(
            "--protect-each gives each protected task its own rows: it needs two, --protect TASK and "
            "--protect-base TASK."
        )
    if protect_base and not args.base_profile:
        raise ValueError(
            "--protect-base keeps what the base profile does on a task: give the base with "
            "--base-profile, or use --protect (kept as the unsteered model has it)."
        )
    from pasta_lens.schedule import Schedule

    try:
        args.schedule = str(Schedule.parse(args.schedule))
    except ValueError as err:
        raise ValueError(f"--schedule: {err}") from None
    args.init_profile, args.init_scores = None, None
    if getattr(args, "init_from", None):
        from pasta_lens.cli import read_profile
        from pasta_lens.profiling import scores_from_profile

        args.init_profile = read_profile(args.init_from, "--init-from")
        missing = [t for t in tasks if t not in args.init_profile.scores]
        if missing:
            raise ValueError(
                f"--init-from {args.init_from} has no score table for {missing} (it has "
                f"{sorted(args.init_profile.scores)}): drop it to compute attribution, or pick a "
                "profile of these tasks."
            )
        args.init_scores = scores_from_profile(args.init_profile, tasks)  # knows each table's estimator
        if any(s.method != "attribution" for s in args.init_scores.values()):
            raise ValueError(
                f"--init-from {args.init_from}: its tables are not attribution scores (method "
                f"{args.init_profile.method!r}); the initialisation is defined on attribution. Give "
                "an attribution profile."
            )
    args.base = None
    if args.base_profile:
        from pasta_lens.cli import read_profile
        from pasta_lens.plan import spec_schedule

        args.base = read_profile(args.base_profile, "--base-profile")
        recorded = str(spec_schedule(args.base))  # what the base is steered with
        if recorded != args.schedule:
            raise ValueError(
                f"--base-profile {args.base_profile} is steered with schedule {recorded}, but "
                f"--schedule is {args.schedule}: one profile is steered with one schedule; pass "
                f"--schedule {recorded}."
            )
    for name in ("lr", "kl_weight", "sparsity"):
        if getattr(args, name) < 0 or (name == "lr" and args.lr == 0):
            raise ValueError(
                f"--{name.replace('_', '-')} must be {'> 0' if name == 'lr' else '>= 0'}; got {getattr(args, name)}."
            )
    args.learned_config = learned_config(args)


def learned_config(args: argparse.Namespace) -> LearnedConfig:
    """The :class:`~pasta_lens.profiling.LearnedConfig` of these options (the base from ``--base-profile``, read
    by :func:`check_learned_arguments`; ``--protect`` kept as the unsteered model has it, ``--protect-base`` as
    the base does).

    Example:
        >>> learned_config(build_parser().parse_args(["profile", "--method", "learned", "--steps", "80"])).steps
        80
    """
    from pasta_lens.profiling import base_alphas

    references = _protected(args)
    base = getattr(args, "base", None)
    return LearnedConfig(
        steps=args.steps,
        lr=args.lr,
        per_step=args.per_step,
        seed=args.seed,
        alpha_min=args.alpha_min,
        checkpoint_every=args.checkpoint_every,
        schedule=args.schedule,
        base=base_alphas(base) if base is not None else {},
        kl_weight=args.kl_weight,
        sparsity=args.sparsity,
        gain_cap=args.gain_cap or None,
        close_weight=args.close_weight,
        early_weight=args.early_weight,
        focus_weight=args.focus_weight,
        protect_weight=args.protect_weight,
        protect_reference=references or "unsteered",
        protect_each=getattr(args, "protect_each", False),
        content_weight=getattr(args, "content_weight", 0.0),
    )


def _protected(args: argparse.Namespace) -> dict[str, str]:
    """``{task: reference}``: ``--protect``'s task kept as the unsteered model has it, ``--protect-base``'s as the
    base profile has it (in that order)."""
    pairs = ((args.protect, "unsteered"), (getattr(args, "protect_base", None), "base"))
    return {task: reference for task, reference in pairs if task}


def run_learned(args: argparse.Namespace, model: Any, examples: dict[str, list], started: float, quiet: bool) -> int:
    """Attribution -> initial logits -> training -> profile; print one line and write ``--out``."""
    from pathlib import Path

    from pasta_lens.distributed import current_world
    from pasta_lens.profiling import init_logits, learn_alphas, learned_profile, profile_tasks

    check_learned_arguments(args)
    if current_world().size > 1:
        raise ValueError("--method learned runs in one process (its steps are sequential); launch it without torchrun.")
    checkpoint_dir = Path(args.checkpoint_dir or f"{args.out}.ckpt")
    own: dict[str, Any] = {}
    if getattr(args, "own_targets", 0):  # the unsteered model's own answers, the instruction carried out on them
        from pasta_lens.profiling import own_continuations
        from pasta_lens.tasks import get_task

        tick = time.perf_counter()
        examples = dict(examples)
        for task in [t for t in examples if get_task(t).corrects_answers]:
            examples[task] = own_continuations(model, examples[task], args.own_targets, rewrite=get_task(task).correct)
            own[task] = {
                "n": len(examples[task]),
                "targets": f"the unsteered model's own greedy first "
                f"{args.own_targets} answer tokens (to the end of turn) with the task's correct() applied",
            }
        own_s = time.perf_counter() - tick
    if args.init_profile is not None:  # stored tables (read by check_learned_arguments): no attribution pass
        args.init_profile.validate_for(model)
        scores = args.init_scores
    else:
        scores = profile_tasks(
            model, examples, "attribution", args.alpha_min, checkpoint_dir=checkpoint_dir, progress=not quiet
        )
    init = init_logits(scores, args.init_bias, args.init_scale)
    config = args.learned_config
    base = config.base or None
    if args.base is not None:
        args.base.validate_for(model)
    protect, protect_s, counts = None, 0.0, {}
    references = _protected(args)
    for task, reference in references.items():  # the protected task's train examples, or the (base-steered)
        from pasta_lens.profiling import own_continuations  # model's own start of their answers
        from pasta_lens.tasks import build_task

        tick = time.perf_counter()
        rows = build_task(task, bios=getattr(args, "bios", "implied")).profiling_examples(
            model, split="train", n=args.n, seed=args.seed, end_turn=True
        )
        if args.protect_gen:
            rows = own_continuations(
                model, rows, args.protect_gen, base if reference == "base" else None, args.schedule
            )
        protect = (protect or []) + rows
        counts[task] = len(rows)
        protect_s += time.perf_counter() - tick
    content, content_s = None, 0.0
    if config.content_weight:  # context-QA prompts + the unsteered model's own answers, document tokens in focus
        from pasta_lens.profiling import content_targets
        from pasta_lens.tasks import ContextQAExample, build_task

        tick = time.perf_counter()
        qa = build_task(CONTENT_TASK, bios=getattr(args, "bios", "implied"))
        documents = [e.document for e in qa.examples("train", args.n, args.seed) if isinstance(e, ContextQAExample)]
        rows = qa.profiling_examples(model, split="train", n=args.n, seed=args.seed, end_turn=True)
        content = content_targets(model, rows, documents, CONTENT_ANSWER_TOKENS)
        content_s = time.perf_counter() - tick
    learned = learn_alphas(
        model,
        examples,
        init,
        config,
        protect=protect,
        checkpoint=checkpoint_dir / "learned.ckpt",
        progress=not quiet,
        content=content,
    )
    # every resumed segment of each (0: the tables were read from --init-from)
    attribution_s = 0.0 if args.init_profile is not None else sum(s.wall_time_s for s in scores.values())
    provenance: dict[str, Any] = {
        "split": "train",
        "processes": 1,
        "attribution_wall_time_s": round(attribution_s, 1),
        "profiling_wall_time_s": round(attribution_s + protect_s + learned.wall_time_s, 1),
        "this_run_wall_time_s": round(time.perf_counter() - started, 1),
    }  # incl. model load; one segment
    for task, reference in references.items():  # --protect's entry, then --protect-base's
        which = "unsteered" if reference == "unsteered" else "base-steered"
        provenance["protect" if reference == "unsteered" else "protect_base"] = {
            "task": task,
            "n": counts[task],
            "weight": args.protect_weight,
            **({"reference": f"the base profile {args.base_profile} alone"} if reference == "base" else {}),
            "targets": (f"the {which} model's own greedy first {args.protect_gen} answer tokens (to the end of turn)")
            if args.protect_gen
            else "the gold answers with the end-of-turn marker",
            "wall_time_s": round(protect_s, 1),
        }  # this run's, all protected tasks' (recomputed when resumed)
    if content is not None:
        provenance["content"] = {
            "task": CONTENT_TASK,
            "n": len(content),
            "of": args.n,
            "weight": config.content_weight,
            "targets": f"the unsteered model's own greedy first {CONTENT_ANSWER_TOKENS} answer tokens (to the end "
            "of turn) of train prompts; focus: the answer tokens copied from the document (prompts whose answer "
            "copies none left out)",
            "term": "content_weight * mean_{focus i} KL(p_unsteered(.|i) || p_steered(.|i))",
            "wall_time_s": round(content_s, 1),
        }
        provenance["profiling_wall_time_s"] = round(provenance["profiling_wall_time_s"] + content_s, 1)
    if own:
        provenance["own_targets"] = {"tokens": args.own_targets, "tasks": own, "wall_time_s": round(own_s, 1)}
        provenance["profiling_wall_time_s"] = round(provenance["profiling_wall_time_s"] + own_s, 1)
    if args.init_profile is not None:
        provenance["init_scores_from"] = {
            "profile": args.init_from,
            "method": args.init_profile.method,
            "n_examples": {t: args.init_profile.n_examples.get(t) for t in examples},
        }
    profile = learned_profile(
        model,
        args.model,
        learned,
        keep_below=args.keep_below,
        task_scores=scores,
        seed=args.seed,
        command=learned_command(args),
        provenance=provenance,
        base_profile=args.base,
        base_name=args.base_profile,
    )
    profile.save(args.out)
    losses = learned.losses()
    on_base = f" ({len(learned.base)} of them the base profile's)" if learned.base else ""
    print(
        f"{args.model}: {len(profile.heads)} heads with learned alphas{on_base} "
        f"(min {min(profile.head_alphas.values()):.3g})"
        f" after {learned.steps} steps on {', '.join(f'{t} x {len(e)}' for t, e in examples.items())} examples; "
        f"loss {losses.get('loss_start', float('nan')):.4f} -> {losses.get('loss_end', float('nan')):.4f}; "
        f"{provenance['profiling_wall_time_s']:.0f} s of profiling. Wrote {args.out}"
    )
    return 0
