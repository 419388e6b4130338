"""``pasta-lens steer``: greedy generation without and with PASTA steering, printed one above the other.

pasta-lens steer "Maria is a nurse. *Answer in JSON.*" --chat --heads 20:0,20:3 --alpha 0.01
pasta-lens steer "Maria is a nurse. *Answer in JSON.*" --chat --schedule prompt   # steer the prefill only
pasta-lens steer "Maria is a nurse. *Answer in JSON.*" --chat --engine hooks      # TransformerLens' generate
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pasta_lens.cli import add_prompt_command, check_prompt_arguments, parse_heads, parse_markers, parse_schedule
from pasta_lens.schedule import SCHEDULE_HELP


def _cmd_steer(args: argparse.Namespace) -> int:
    from pasta_lens.generation import generate, select_engine
    from pasta_lens.models import load_model
    from pasta_lens.plan import resolve_plan
    from pasta_lens.registry import INTERIM_ALPHA, INTERIM_HEADS_NOTE, default_profile

    check_prompt_arguments(args)
    model = load_model(args.model)
    note = ""
    if args.heads:
        spec = parse_heads(args.heads, model.cfg.n_heads)
    else:
        spec, note = default_profile(model, name=args.model)  # the shipped profile (its alphas and schedule) or interim
    plan = resolve_plan(model, spec, args.alpha, args.schedule, args.scale_position)  # what is steered, once
    if args.heads:
        plan = dataclasses.replace(plan, source="--heads")
    elif note == INTERIM_HEADS_NOTE:  # no shipped profile for this model (default_profile has warned)
        plan = dataclasses.replace(
            plan, source=f"interim head set: every head of the last third of the layers, alpha {INTERIM_ALPHA}, prompt"
        )
    engine, _, why = select_engine(model, args.engine)
    common = dict(
        chat=args.chat, markers=parse_markers(args.markers), max_new_tokens=args.max_new_tokens, engine=engine
    )
    unsteered = generate(model, args.text, **common, steered=False)
    steered = generate(model, args.text, plan, **common)
    print(f"model: {args.model}   {plan.describe()}   engine: {engine}" + (f" ({why})" if why else ""))
    print("=== unsteered ===")
    print(unsteered)
    print("=== steered ===")
    print(steered)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``steer`` on the ``pasta-lens`` sub-command parser."""
    p = add_prompt_command(
        sub,
        "steer",
        help="generate with and without steering and print both",
        description="Greedy generation without and with PASTA steering, printed one above the other.",
    )
    p.add_argument(
        "--scale-position",
        choices=("exclude", "include"),
        default="exclude",
        help="exclude: down-weight keys outside the span (PASTA); include: down-weight the span",
    )
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")
    p.add_argument(
        "--schedule",
        type=parse_schedule,
        default=None,
        help=f"which query rows are steered: {SCHEDULE_HELP} (default: the shipped profile's "
        "recorded schedule, else all)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "hooks", "hf"),
        default="auto",
        help="auto (default): HF's generation loop on a plain twin of the bridge's weights where that "
        "gives the hooked result (~1.3x faster), else TransformerLens' generate with the hooks; "
        "hooks: always the hooks; hf: insist on the twin",
    )
    p.set_defaults(func=_cmd_steer)
