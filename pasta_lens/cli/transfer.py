"""``pasta-lens transfer``: leave-one-task-out, via :mod:`pasta_lens.evaluation.transfer`.

    pasta-lens transfer --profile smollm2-135m-instruct --ks 60,90,120,150,200 --val-n 10 --n 50 --out runs/loto

For each task of the profile: heads selected from the other tasks' scores (k chosen on their validation examples),
then that task evaluated on ``--split`` under zero-shot, the full profile and the held-out profile. Held-out
profiles made otherwise (e.g. ``pasta-lens profile --method learned`` on the other three tasks) are given with
``--held-out TASK=PATH`` (repeatable; each must be made without TASK); only those tasks are then evaluated:

    pasta-lens transfer --profile profiles/learned.json --held-out json=runs/no-json.json \
        --held-out pronoun=runs/no-pronoun.json --n 50 --out runs/loto-learned

The run holds ``--out``'s lock (a second run on it is refused). Writes
``OUT/table.md``, ``OUT/summary.json``, ``OUT/profiles/without-<task>.json`` and the resumable runs
``OUT/full``, ``OUT/without-<task>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pasta_lens.cli import add_placement_arguments, read_profile, split_list


def _head_counts(text: str) -> list[int]:
    """``"60,90"`` -> ``[60, 90]``, or ``ValueError`` naming the accepted form."""
    try:
        values = [int(x) for x in split_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"--ks takes comma-separated positive integers (head counts), e.g. 60,90,120; got {text!r}.")
    return values


def _cmd_transfer(args: Any) -> int:
    import torch

    from pasta_lens.cli import load_model_for
    from pasta_lens.evaluation.transfer import leave_one_out_profiles, transfer

    ks = _head_counts(args.ks)
    if args.n < 1 or args.val_n < 1:
        raise ValueError(f"--n and --val-n must be positive numbers of examples; got {args.n} and {args.val_n}.")
    profile = read_profile(args.profile, "--profile")
    given = _held_out_profiles(args.held_out or [], profile)
    if not given and len([t for t in profile.tasks if t in profile.scores]) < 2:
        raise ValueError(
            f"--profile {args.profile}: leave-one-task-out needs score tables for at least two tasks; "
            f"it has {sorted(profile.scores) or 'none'}."
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model_for(args)
    for prof in given.values():
        prof.validate_for(model)
    held_out = given or leave_one_out_profiles(
        model, profile, ks, val_n=args.val_n, seed=args.seed, progress=not args.quiet
    )
    res = transfer(
        model,
        profile,
        held_out,
        split=args.split,
        n=args.n,
        out_dir=args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(res.table)
    out = Path(args.out)  # --out is required: the folder transfer wrote
    print(f"profiles: {out / 'profiles'}\ntable: {out / 'table.md'}")
    return 0


def _held_out_profiles(specs: list[str], profile: Any) -> dict[str, Any]:
    """``["json=path", ...]`` -> ``{"json": HeadProfile}``, each checked to be made without its task."""
    out: dict[str, Any] = {}
    for spec in specs:
        task, sep, path = spec.partition("=")
        task = task.strip()
        if not sep or not task or not path.strip():
            raise ValueError(f"--held-out takes TASK=PATH (a profile made without TASK); got {spec!r}.")
        if task not in profile.tasks:
            raise ValueError(
                f"--held-out {spec}: {task!r} is not a task of --profile (its tasks: {', '.join(profile.tasks)})."
            )
        if task in out:
            raise ValueError(f"--held-out names {task!r} twice.")
        prof = read_profile(path.strip(), "--held-out")
        if task in prof.tasks or task in prof.scores:
            raise ValueError(
                f"--held-out {spec}: that profile was made with {task!r} (its tasks: "
                f"{', '.join(prof.tasks)}), so it is not held out; profile it on the other tasks only."
            )
        out[task] = prof
    return out


def add_parser(sub: Any) -> None:
    """Register ``pasta-lens transfer`` on the CLI's sub-parsers."""
    p = sub.add_parser(
        "transfer",
        help="leave-one-task-out: profile without a task, evaluate it on that task",
        description="For each task of a multi-task profile, select heads from the other tasks' "
        "scores (k chosen on their validation examples) and evaluate the held-out task "
        "under zero-shot, the full profile and the held-out profile.",
    )
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name (default: the offline SmolLM2)")
    p.add_argument("--profile", required=True, help="a multi-task head profile: registry name or JSON path")
    p.add_argument("--ks", default="60,90,120,150,200", help="candidate per-task top-k (default 60,90,120,150,200)")
    p.add_argument(
        "--held-out",
        action="append",
        default=None,
        metavar="TASK=PATH",
        help="a held-out profile made elsewhere without TASK (e.g. --method learned on the other "
        "tasks); repeatable; only these tasks are evaluated, nothing is selected from scores",
    )
    p.add_argument("--val-n", type=int, default=10, help="validation examples per task to choose k (default 10)")
    p.add_argument("--split", default="test", choices=("validation", "test"), help="split to report (default test)")
    p.add_argument("--n", "--n-examples", dest="n", type=int, default=50, help="examples per task (default 50)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is fastest on a busy CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_placement_arguments(p)
    p.set_defaults(func=_cmd_transfer)
