"""The options of ``pasta-lens profile``: what to profile on, how heads are scored and selected, where the run goes.

:func:`add_profile_arguments` puts them on the ``profile`` parser in argument groups, with the learned method's
options (:mod:`pasta_lens.cli.profile_learned_options`) and the device placement ones after them. Options a
``--preset`` covers default to None here, so that the run can tell a typed option (which wins) from a preset's
(:mod:`pasta_lens.cli.profile_preset`). What the command does with them is in :mod:`pasta_lens.cli.profile`.
"""

from __future__ import annotations

import argparse

from pasta_lens.cli import add_placement_arguments, int_list
from pasta_lens.cli.profile_learned_options import add_learned_arguments
from pasta_lens.cli.profile_preset import PLAIN_DEFAULTS, add_preset_argument
from pasta_lens.head_profile import STRATEGIES
from pasta_lens.models import DEFAULT_MODEL
from pasta_lens.profiling import METHODS

DEFAULT_TASKS = PLAIN_DEFAULTS["tasks"]
DEFAULT_KS = PLAIN_DEFAULTS["ks"]


def k_option(text: str) -> int | str:
    """``--k``: ``"auto"`` or one integer."""
    if text == "auto":
        return text
    value = int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError("--k is one integer or 'auto'")
    return value[0]


def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of ``pasta-lens profile`` (its sub-commands ``plot`` and ``union`` have their own)."""
    d = p.add_argument_group("what to profile on")
    d.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    add_preset_argument(d)
    d.add_argument("--tasks", default=None, help=f"comma-separated tasks (default: {DEFAULT_TASKS})")
    d.add_argument(
        "--n",
        "--n-examples",
        dest="n",
        type=int,
        default=None,
        help="train examples per task (default 200; spell it --n-examples under torchrun, whose own "
        "parser reads --n as an abbreviation of its options)",
    )
    d.add_argument(
        "--bios",
        choices=("named", "implied"),
        default="implied",
        help="biographies of json/pronoun/biasbios for profiling, selection and learning: implied "
        "(default: generated bios that only imply the occupation) or named (the first sentence "
        "names it; what profiles made before this option used)",
    )
    d.add_argument(
        "--end-turn",
        action="store_true",
        help="chat tasks' targets end with the template's end-of-turn marker (<|im_end|> on SmolLM2), "
        "so the objective also rewards ending the answer (default: the answer alone)",
    )
    d.add_argument("--seed", type=int, default=0, help="seed for drawing task examples (default 0)")
    h = p.add_argument_group("head scores", "every head's objective change under PASTA, per task (docs/profiling.md)")
    h.add_argument(
        "--method",
        choices=METHODS + ("learned",),
        default=None,
        help="head scores: attribution (gradient), exact (steer each head), hybrid (default); or "
        "learned: per-head alphas fitted by gradient descent (options below)",
    )
    h.add_argument("--alpha", type=float, default=0.01, help="PASTA strength while profiling (default 0.01)")
    h.add_argument(
        "--top-m",
        type=int,
        default=None,
        help="hybrid: heads re-scored exactly, the attribution top-m (default: the largest k of --k/--ks, "
        "so that exact scores decide every selection)",
    )
    h.add_argument(
        "--rescore-n",
        type=int,
        default=None,
        help="hybrid: re-score on the first N examples per task only (default: all)",
    )
    h.add_argument("--heads-per-batch", type=int, default=16, help="steered copies per forward (default 16)")
    h.add_argument(
        "--allow-attribution-tail",
        action="store_true",
        help="hybrid: allow k > --top-m (heads beyond the exact block then come from attribution; the "
        "profile's method says so)",
    )
    h.add_argument(
        "--from-profile",
        default=None,
        help="reuse the per-task scores of this saved profile (name or path; same model) instead of "
        "profiling again: only the selection runs",
    )
    k = p.add_argument_group(
        "head selection", "per-task top-k sets combined into one; --k auto chooses k (and more) on validation examples"
    )
    k.add_argument(
        "--k",
        type=k_option,
        default=None,
        help="per-task top-k, or 'auto' to choose it on validation examples (default auto)",
    )
    k.add_argument("--ks", default=None, help=f"candidate k for --k auto (default {DEFAULT_KS})")
    k.add_argument("--val-n", type=int, default=None, help="validation examples per task for --k auto (default 20)")
    k.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="intersection",
        help="combine per-task top-k sets (default: intersection, as in the paper)",
    )
    k.add_argument(
        "--select-by",
        choices=("logprob", "metric"),
        default=None,
        help="--k auto criterion: logprob (default: mean teacher-forced objective gain, fast) or metric "
        "(the tasks' own metrics on validation generations, e.g. JSON F.Acc/P.Acc, with a fluency "
        "floor; runs the evaluation harness, much slower)",
    )
    k.add_argument(
        "--strategies",
        default=None,
        help="--k auto: compare these strategies and choose the best, e.g. intersection,union "
        "(default: --strategy alone; task_specific with several tasks is compared, never chosen)",
    )
    k.add_argument(
        "--schedules",
        default=None,
        help="--k auto --select-by metric: compare these steering schedules and choose one, e.g. "
        "all,prompt,first:4 (default all); the choice is the profile's provenance['schedule']",
    )
    k.add_argument(
        "--fluency-floor",
        type=float,
        default=None,
        help="--select-by metric: a candidate must keep >= this fraction of the unsteered fluency on "
        "every task that reports fluency (default 0.95)",
    )
    k.add_argument(
        "--content-floor",
        type=float,
        default=None,
        help="--select-by metric with context_qa in --tasks: a candidate must keep >= this fraction of "
        "the unsteered context_qa answer correctness on the same examples (default 0.95; always "
        "applied when context_qa is a task)",
    )
    r = p.add_argument_group("the run")
    r.add_argument("--out", default=None, help="where to write the profile JSON")
    r.add_argument("--checkpoint-dir", default=None, help="per-task checkpoints (default: OUT.ckpt/)")
    r.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; 1 is much faster on a busy shared CPU)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    add_learned_arguments(p)
    add_placement_arguments(p)
