"""Probe: the default profile (its recorded ``prompt`` schedule) plus a second head set steered at *every* token.

    .venv/bin/python experiments/schedule_mix_probe.py \
        --extra results/smollm2-135m-instruct/own-targets/profile-probe-all.json \
        --overlap drop --tasks pronoun,json --split validation --n 50 --out runs/mix-drop

A profile carries one schedule. The ``probe-all`` heads of ``results/smollm2-135m-instruct/own-targets/``
(pronouns learned with every generated token steered) raised the pronoun metric inside the fluency floor, but the
default's JSON strengths need ``prompt``; this asks, before anyone builds per-head schedules into the core, whether
the two would work together. It runs :func:`pasta_lens.evaluate` with the default profile and, for this script
only, wraps the harness's ``steer`` so that every steered batch also gets the extra profile's heads (its alphas as
the one precedence rule gives them, :func:`~pasta_lens.plan.head_alphas`; schedule ``"all"``), on the hooks engine
(the HF twin takes one head set). ``--overlap drop``: a head in both sets is steered once, as the extra set says;
``--overlap both``: it is steered by both (the default's alpha on prompt rows, then the extra alpha). Writes the
usual ``examples.jsonl`` / ``summary.json`` / ``table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from pasta_lens import load_model, load_profile
from pasta_lens.evaluation import harness
from pasta_lens.plan import SteeringPlan, head_alphas, normalize_heads, plan_from_spec
from pasta_lens.steering import steer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="smollm2-135m-instruct", help="the profile steered with its own schedule")
    p.add_argument("--extra", required=True, help="a profile steered at every token (its own alphas)")
    p.add_argument("--overlap", choices=("drop", "both"), default="drop")
    p.add_argument("--tasks", default="pronoun,json")
    p.add_argument("--split", default="validation")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    extra = load_profile(args.extra)
    extra_heads = normalize_heads(extra)
    extra_plan = SteeringPlan(extra_heads, head_alphas(extra_heads, extra), "all")  # its alphas, every row

    def steer_both(model, spec, emphasis, alpha=None, schedule=None):
        """The harness's steer (a plan, or heads + alpha + schedule), plus the extra head set at every row."""
        own = spec if isinstance(spec, SteeringPlan) else plan_from_spec(list(spec), alpha, schedule)
        heads = tuple(h for h in own.heads if args.overlap == "both" or h not in extra_plan.alphas)
        stack = contextlib.ExitStack()
        if heads:
            stack.enter_context(steer(model, SteeringPlan(heads, {h: own.alphas[h] for h in heads}, own.schedule),
                                      emphasis))
        stack.enter_context(steer(model, extra_plan, emphasis))
        return stack

    harness.steer = steer_both  # this script's probe only: the package is not changed
    harness.select_engine = lambda model, *a, **k: ("hooks", None, "two head sets with their own schedules")
    model = load_model("smollm2-135m-instruct")
    result = harness.evaluate(model, args.tasks.split(","), methods=["pasta"], split=args.split, n=args.n,
                              profile=args.profile, out_dir=args.out, progress=False)
    print(result.table)


if __name__ == "__main__":
    main()
