"""The options of ``pasta-lens profile --method learned`` and the command line that repeats a run.

:func:`add_learned_arguments` puts them on the ``profile`` parser in four groups (as
:class:`~pasta_lens.profiling.LearnedConfig` groups its fields; the extra terms and protection are marked
experimental), with :class:`LearnedConfig`'s defaults; :func:`learned_command` writes the canonical command a
profile records (every option of :data:`LEARNED_DEFAULTS` with its value, then the ones that were set). What the
options do, and the run itself, are in :mod:`pasta_lens.cli.profile_learned`.
"""

from __future__ import annotations

import argparse
import shlex

from pasta_lens.profiling.learned.config import KEEP_BELOW, LearnedConfig

_CONFIG = LearnedConfig()
LEARNED_DEFAULTS = dict(
    steps=_CONFIG.steps,
    lr=_CONFIG.lr,
    kl_weight=_CONFIG.kl_weight,
    sparsity=_CONFIG.sparsity,
    alpha_min=_CONFIG.alpha_min,
    per_step=_CONFIG.per_step,
    keep_below=KEEP_BELOW,
    init_bias=-4.0,
    init_scale=6.0,
    checkpoint_every=_CONFIG.checkpoint_every,
    schedule=_CONFIG.schedule,
    gain_cap=0.0,
    close_weight=_CONFIG.close_weight,
    early_weight=_CONFIG.early_weight,
    focus_weight=_CONFIG.focus_weight,
    protect_weight=_CONFIG.protect_weight,
    protect_gen=0,
)
"""The options recorded with their value in every ``--method learned`` command, in this order (the defaults of
:class:`~pasta_lens.profiling.LearnedConfig`; ``--gain-cap 0`` is its ``gain_cap=None``)."""

EXPERIMENTAL = "[experimental] "

CONTENT_TASK = "context_qa"
"""The task whose prompts the content term (``--content-weight``) is built from."""
CONTENT_ANSWER_TOKENS = 24
"""The content term's targets: the unsteered model's own greedy first this many answer tokens (to its end of turn)."""


def add_learned_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--method learned``, in four argument groups (as :class:`LearnedConfig` groups its fields;
    the last two, extra terms and protection, are marked experimental)."""
    d = LEARNED_DEFAULTS
    g = p.add_argument_group(
        "--method learned: optimisation",
        "per-head strengths alpha_h = alpha_min ** sigmoid(g_h), fitted by Adam on the tasks' "
        "train objectives + a fluency (KL) and a sparsity term (docs/learned.md)",
    )
    g.add_argument("--steps", type=int, default=d["steps"], help=f"Adam steps (default {d['steps']})")
    g.add_argument("--lr", type=float, default=d["lr"], help=f"learning rate on the logits g (default {d['lr']})")
    g.add_argument(
        "--per-step",
        type=int,
        default=d["per_step"],
        help=f"train examples per task in each step (default {d['per_step']})",
    )
    g.add_argument(
        "--kl-weight",
        type=float,
        default=d["kl_weight"],
        help=f"weight of KL(steered || unsteered) on the prompt positions (default {d['kl_weight']})",
    )
    g.add_argument(
        "--sparsity",
        type=float,
        default=d["sparsity"],
        help=f"weight of sum_h sigmoid(g_h): fewer heads when larger (default {d['sparsity']})",
    )
    g.add_argument(
        "--alpha-min",
        type=float,
        default=d["alpha_min"],
        help=f"strongest alpha a head can learn; also the attribution alpha (default {d['alpha_min']})",
    )
    g.add_argument(
        "--keep-below",
        type=float,
        default=d["keep_below"],
        help=f"keep the heads whose learned alpha is below this (default {d['keep_below']})",
    )
    g.add_argument(
        "--init-bias",
        type=float,
        default=d["init_bias"],
        help=f"g at zero attribution (default {d['init_bias']}: alpha 0.92)",
    )
    g.add_argument(
        "--init-scale",
        type=float,
        default=d["init_scale"],
        help=f"g added at the best normalised attribution (default {d['init_scale']})",
    )
    g.add_argument(
        "--init-from",
        default=None,
        help="initialise from the attribution score tables stored in this profile (a shipped name or a "
        "JSON path, same model, e.g. smollm2-135m-instruct-attribution) instead of computing "
        "attribution on the train examples (default: compute them)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d["checkpoint_every"],
        help=f"write the training checkpoint every N steps (default {d['checkpoint_every']})",
    )
    f = p.add_argument_group("--method learned: what the strengths are fitted to")
    f.add_argument(
        "--schedule",
        default=d["schedule"],
        help="query rows steered while training, as they will be when the profile is used: all "
        "(prompt and answer rows, the paper's), prompt (the prompt only; the answer is written "
        "unsteered), first:N, decay:G; the profile records it and is steered with it "
        f"(default {d['schedule']})",
    )
    f.add_argument(
        "--base-profile",
        default=None,
        help="learn on top of this profile (a shipped name or a JSON path): its heads are steered at "
        "their alphas throughout training and kept in the result beside the learned heads; its "
        "recorded schedule must be --schedule",
    )
    t = p.add_argument_group(
        "--method learned: extra task terms (experimental)", "terms added to each example's task term; 0 = off"
    )
    t.add_argument(
        "--gain-cap",
        type=float,
        default=d["gain_cap"],
        help=EXPERIMENTAL + "an example's task term counts at most this many nats per answer token above "
        "the unsteered value, so tasks that steering moves by many nats do not decide alone "
        "(0: no cap; default 0)",
    )
    t.add_argument(
        "--close-weight",
        type=float,
        default=d["close_weight"],
        help=EXPERIMENTAL + "with --end-turn: the log-prob of the answer's closing token (its last, "
        "before the end-of-turn marker; JSON's \"}) counts this many times more in a chat task's "
        "term, so the strengths learn to end the answer (0: off; default 0)",
    )
    t.add_argument(
        "--early-weight",
        type=float,
        default=d["early_weight"],
        help=EXPERIMENTAL + "with --end-turn: add this times sum log(1 - P(closing token)) over the "
        "answer's earlier positions, so the answer does not close before its end (0: off; default 0)",
    )
    t.add_argument(
        "--focus-weight",
        type=float,
        default=d["focus_weight"],
        help=EXPERIMENTAL + "add this times the mean log-prob of the answer's focus tokens (json, "
        "pronoun: the occupation) to the task term, so the content is not drowned by the format "
        "(0: off; default 0)",
    )
    t.add_argument(
        "--own-targets",
        type=int,
        default=0,
        metavar="F",
        help=EXPERIMENTAL + "the trained tasks whose instruction can be carried out on a model's own "
        "answer (pronoun: gendered pronouns -> they) learn the unsteered model's own greedy first F "
        "answer tokens with the instruction carried out (to the end of turn) instead of their gold "
        "answers (0: the gold answers; default 0)",
    )
    k = p.add_argument_group(
        "--method learned: keeping other tasks as they are (experimental)",
        "each step adds --protect-weight x KL(steered || reference) over the answers of "
        "--per-step protected train examples",
    )
    k.add_argument(
        "--protect",
        default=None,
        metavar="TASK",
        help=EXPERIMENTAL + "a task the strengths must not change (not in --tasks): each step also adds "
        "--protect-weight x KL(steered || unsteered) over the answers of --per-step of its --n train "
        "examples (with the end-of-turn marker; one pool with --protect-base's unless --protect-each)",
    )
    k.add_argument(
        "--protect-base",
        default=None,
        metavar="TASK",
        help=EXPERIMENTAL + "a task whose behaviour under --base-profile the strengths must not change "
        "(not in --tasks or --protect): its answers (with --protect-gen: the base-steered model's own "
        "first F tokens) join the protect term with KL(steered || base alone) instead of KL to the "
        "unsteered model",
    )
    k.add_argument(
        "--protect-each",
        action="store_true",
        help=EXPERIMENTAL + "with --protect and --protect-base both: each protected task gets its own "
        "--per-step rows per step (as strongly protected as alone) instead of one shared pool of "
        "--per-step rows",
    )
    k.add_argument(
        "--protect-weight",
        type=float,
        default=d["protect_weight"],
        help=EXPERIMENTAL + f"weight of the --protect term (default {d['protect_weight']})",
    )
    k.add_argument(
        "--content-weight",
        type=float,
        default=0.0,
        metavar="W",
        help=EXPERIMENTAL + "content term: each step adds W x KL(unsteered || steered) over the answer "
        f"tokens copied from the document of --per-step {CONTENT_TASK} train prompts (their unsteered "
        f"model's own first {CONTENT_ANSWER_TOKENS} answer tokens, --n of them), so the steered model still "
        "reads the document (0: off; default 0)",
    )
    k.add_argument(
        "--protect-gen",
        type=int,
        default=d["protect_gen"],
        metavar="F",
        help=EXPERIMENTAL + "protect the unsteered model's own greedy first F answer tokens of "
        "--protect's prompts (what free generation starts with; for --protect-base the base-steered "
        "model's) instead of their gold answers (0: the gold answers; default 0)",
    )


def learned_command(args: argparse.Namespace) -> str:
    """The canonical command line that repeats a ``--method learned`` run (recorded in the profile)."""
    from pasta_lens.cli.profile_preset import apply_preset

    args = apply_preset(argparse.Namespace(**vars(args)), chat=False)  # a copy, with the defaults filled in
    parts = [
        "pasta-lens",
        "profile",
        "--model",
        args.model,
        "--tasks",
        args.tasks,
        "--n",
        str(args.n),
        "--method",
        "learned",
    ]
    for name in LEARNED_DEFAULTS:
        parts += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    parts += ["--seed", str(args.seed), "--bios", getattr(args, "bios", "implied")]
    parts += ["--end-turn"] if getattr(args, "end_turn", False) else []
    if getattr(args, "base_profile", None):
        parts += ["--base-profile", str(args.base_profile)]
    if getattr(args, "protect", None):
        parts += ["--protect", str(args.protect)]
    if getattr(args, "protect_base", None):
        parts += ["--protect-base", str(args.protect_base)]
    if getattr(args, "init_from", None):
        parts += ["--init-from", str(args.init_from)]
    if getattr(args, "own_targets", 0):
        parts += ["--own-targets", str(args.own_targets)]
    if getattr(args, "protect_each", False):
        parts += ["--protect-each"]
    if getattr(args, "content_weight", 0.0):
        parts += ["--content-weight", str(args.content_weight)]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)
