"""``pasta-lens evaluate``: the paper's tasks under the baselines and PASTA, via :func:`pasta_lens.evaluation.evaluate`.

    pasta-lens evaluate --tasks json,counterfact --profile smollm2-135m-instruct --n 50 --out runs/smollm2

writes ``examples.jsonl``, ``summary.json`` and ``table.md`` to ``--out`` and resumes an interrupted run. The run
holds ``--out``'s lock: a second run on the same folder is refused with one line naming the running process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pasta_lens.cli import (
    add_placement_arguments,
    check_alpha,
    parse_heads,
    parse_schedule,
    read_profile,
    split_list,
    split_method_specs,
)

if TYPE_CHECKING:
    from pasta_lens.tasks import Task


def build_tasks(names: str, bios: str | None = None, data_dir: str | None = None) -> list[Task]:
    """Task objects for the CLI: ``"all"`` (the paper's four) or ``"json,instructions"``; ``bios``: ``named``,
    ``implied`` or a file of real bios (for the biography tasks)."""
    from pasta_lens.tasks import BIO_SOURCES, TASK_NAMES, build_task, load_bias_in_bios, load_biosbias_pkl

    chosen = list(TASK_NAMES) if names == "all" else split_list(names)
    source: Any = bios
    if bios and bios not in BIO_SOURCES:
        source = load_biosbias_pkl(bios) if bios.endswith(".pkl") else load_bias_in_bios(bios)
    return [build_task(name, bios=source, data_dir=data_dir) for name in chosen]


def _check_arguments(args: Any) -> tuple[list[str], Any, list[Task]]:
    """Everything checkable without the model (~20 s to load): methods, alphas, ks, heads syntax, tasks, profile."""
    from pasta_lens.evaluation import BASELINES, ablation_methods, parse_method
    from pasta_lens.plan import DEFAULT_ALPHA

    if args.profile and args.heads:
        raise ValueError("Give --profile or --heads, not both.")
    if args.alpha is not None:
        check_alpha(args.alpha)
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be a positive number of examples per task; got {args.n}.")
    methods = list(BASELINES) if args.baselines == "all" else split_method_specs(args.baselines)
    try:
        alphas = [check_alpha(float(a), "--alphas") for a in split_list(args.alphas)] if args.alphas else []
        ks = [int(k) for k in split_list(args.ks)] if args.ks else []
    except ValueError as err:
        raise ValueError(
            f"--alphas takes numbers in (0, 1] and --ks positive integers, comma-separated: {err}"
        ) from None
    if any(k < 1 for k in ks):
        raise ValueError(f"--ks takes positive integers (numbers of heads); got {args.ks!r}.")
    schedules = [parse_schedule(x) for x in split_list(args.schedules)] if args.schedules else []
    default_alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    profile = read_profile(args.profile, "--profile") if args.profile else None
    # the default schedule: --schedule, else the one the profile was chosen with (as evaluate() resolves it)
    default = (
        args.schedule
        if args.schedule is not None
        else (profile.provenance.get("schedule") if profile is not None else None)
    )
    methods += [m for m in ablation_methods(alphas, ks, default_alpha, schedules, default) if m not in methods]
    for m in methods:
        parse_method(m)
    if args.heads:
        parse_heads(args.heads, n_heads=1)  # syntax now; ranges once the model's shape is known
    tasks = build_tasks(args.tasks, args.bios, args.data_dir)
    return methods, profile, tasks


def _cmd_evaluate(args: Any) -> int:
    from pasta_lens.cli import load_model_for
    from pasta_lens.distributed import current_world
    from pasta_lens.evaluation import evaluate, parse_method
    from pasta_lens.registry import default_profile

    methods, profile, tasks = _check_arguments(args)
    if args.threads:
        # On a shared CPU, one intra-op thread per process avoids OpenMP spin-waiting (measured ~8x faster
        # generation on this project's machine under load); torch's own default is one thread per core.
        torch.set_num_threads(args.threads)
    world = current_world()  # under torchrun: batches shared by rank, rank 0 writes and prints
    model = load_model_for(args)
    source: Any = profile or (parse_heads(args.heads, model.cfg.n_heads) if args.heads else None)
    if source is None and any(parse_method(m).heads in ("profile", "random") for m in methods):
        source, note = default_profile(model, name=args.model)  # the shipped profile (its schedule) or the interim set
        if world.is_main:
            print(f"no --profile/--heads given: using the {note}", file=sys.stderr)
    as_profile = profile is not None or hasattr(source, "provenance")
    kwargs = dict(profile=source) if as_profile else dict(heads=source)
    res = evaluate(
        model,
        tasks,
        methods,
        args.split,
        args.n,
        out_dir=args.out,
        alpha=args.alpha,
        schedule=args.schedule,
        batch_size=args.batch_size,
        resume=not args.no_resume,
        seed=args.seed,
        variant=args.variant,
        max_new_tokens=args.max_new_tokens,
        allow_transfer=args.allow_transfer,
        progress=world.is_main,
        engine=args.engine,
        **kwargs,
    )
    if not world.is_main:
        return 0
    print(res.table)
    config = res.summary["config"]
    for method, plan in config["plans"].items():
        if plan is not None:
            print(f"{method}: {plan}   engine: {config['engine']}")
    out = Path(args.out)  # --out is required: the folder evaluate wrote
    print(f"rows: {out / 'examples.jsonl'}\nsummary: {out / 'summary.json'}\ntable: {out / 'table.md'}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``pasta-lens evaluate`` on the CLI's sub-parsers."""
    from pasta_lens.evaluation import BASELINES
    from pasta_lens.schedule import SCHEDULE_HELP

    p = sub.add_parser(
        "evaluate",
        help="evaluate baselines and PASTA on the paper's tasks; write a results table",
        description="Batched greedy evaluation of the paper's tasks (json, pronoun, biasbios, "
        "counterfact) under the baselines and PASTA; writes examples.jsonl, "
        "summary.json and table.md to --out and resumes an interrupted run.",
    )
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name (default: the offline SmolLM2)")
    p.add_argument(
        "--tasks",
        default="all",
        help="all (the paper's four), or a comma list of json, pronoun, "
        "biasbios, counterfact, instructions, context_qa",
    )
    p.add_argument("--profile", default=None, help="head profile: a registry name or a path to a profile JSON")
    p.add_argument("--heads", default=None, help="instead of --profile: LAYER:HEAD pairs, e.g. 20:0,20:3,21:*")
    p.add_argument(
        "--baselines",
        default="all",
        help=f"all, or a comma list of methods: {', '.join(BASELINES)}, or a steering method (instaboost, guide, "
        "spotlight, seka, prism_delta, spa); options after a colon, comma-separated: pasta:alpha=0.1,schedule=prompt",
    )
    p.add_argument("--alphas", default="", help="alpha ablation: add pasta at these alphas, e.g. 0.001,0.1,0.5")
    p.add_argument("--ks", default="", help="head-count ablation: add pasta with the top-k profile heads, e.g. 10,20")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument(
        "--n",
        "--n-examples",
        dest="n",
        type=int,
        default=50,
        help="examples per task (default 50; spell it --n-examples under torchrun)",
    )
    p.add_argument("--out", required=True, help="output folder (examples.jsonl, summary.json, table.md)")
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="steering strength (default: a learned --profile's per-head alphas for pasta, else 0.01; "
        "a value given here is used by every steered method)",
    )
    p.add_argument(
        "--schedule",
        type=parse_schedule,
        default=None,
        help=f"default steering schedule of the steered methods: {SCHEDULE_HELP} (default: the "
        "--profile's recorded schedule, provenance['schedule'], else all)",
    )
    p.add_argument(
        "--schedules",
        default="",
        help="schedule ablation: add pasta under these schedules, e.g. prompt,first:4,decay:0.5 (a "
        "method can also carry its own: pasta:schedule=prompt)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="default", help="prompt variant (json: default, short, rephrased)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation length (default: per task)")
    p.add_argument(
        "--bios",
        default="named",
        help="biographies of json/pronoun/biasbios: named (default: generated bios whose first sentence "
        "names the occupation), implied (generated bios that only imply it), or a file of real bios: "
        "LabHC/bias_in_bios rows (.json/.jsonl) or a biosbias BIOS.pkl",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with counterfact/{train,test,rome_format}.json[.gz] "
        "(default: $PASTA_LENS_DATA, else the cases shipped with "
        "pasta_lens)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="recompute this command's rows instead of reusing them (rows of other tasks, methods or "
        "settings in examples.jsonl are kept)",
    )
    p.add_argument(
        "--allow-transfer",
        action="store_true",
        help="use a --profile made on other weights of the same shape (e.g. a base model's on its "
        "fine-tune); without it such a profile is refused",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; 1 is much faster on a busy shared CPU)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "hooks", "hf"),
        default="auto",
        help="generation loop: auto (HF's loop on a twin of the weights where it gives the hooked "
        "result, else TransformerLens' hooks), hooks or hf; recorded in every row",
    )
    add_placement_arguments(p)
    p.set_defaults(func=_cmd_evaluate)
