"""Graded emphasis, prototyped by stacking two PASTA rescalings: does keeping the document at an intermediate weight
keep it readable while the instruction is emphasised?

Question it answers: PASTA multiplies the attention to every key outside the emphasised span by alpha, the
document and the question included. With three tiers instead of two,

    w[k] = 1            on the emphasised instruction
    w[k] = alpha ** g   on the rest of the user's text (the document, the question, the request)
    w[k] = alpha        on everything else (the chat template, the system prompt)

does the model keep the content (context-QA correctness, the occupation) and still follow the format? ``g = 1`` is
plain PASTA, ``g = 0`` emphasises the instruction and the document alike (only the template is scaled).

No package change is needed to try it: two stacked PASTA rescalings on the same heads multiply their weights (the
pattern edit is ``A * w / sum(A * w)``, and two of them compose to one with the product of the weights). The outer
plan emphasises the whole user text at ``alpha ** (1 - g)``, the inner one the instruction at ``alpha ** g``; their
product is the three tiers above, head by head (per-head alphas of a learned profile included). Generation runs on
the hooks engine (``steer`` + ``generate_tokens``) with the tasks' own prompts, examples (seed 0) and metrics, so its
rows compare with ``pasta-lens evaluate`` rows of the same split and n.

Two more mechanisms run through the same loop: ``--alpha-power p`` raises every head's alpha to ``p`` (a smaller
alpha range: the document is scaled less everywhere), and ``--instruction-heads FILE`` keeps only the heads that
already prefer the instruction over the document (``experiments/instruction_heads.py``), leaving the
document-reading heads unsteered. ``--alpha 1`` steers nothing (the unsteered reference on the same loop).

Usage::

    python experiments/graded_emphasis_probe.py --profile smollm2-135m-instruct --grades 0.5,0 \\
        --tasks context_qa,json,instructions --bios implied --split validation --n 50 --out runs/graded-default

Rows go to ``OUT/rows.jsonl`` as they are made (rerunning resumes); ``OUT/summary.json`` holds the mean of every
metric per task and grade. The answer: ``results/transfer.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def user_ranges(model: Any, task: Any, markup: str, rendered: Any) -> tuple[int, int]:
    """Where the user's text lies in the rendered chat prompt (found by the package's own chat rendering)."""
    from pasta_lens.chat import render_chat
    from pasta_lens.spans import parse_markup

    clean, _ = parse_markup(markup)
    turn = render_chat(model, clean)
    if turn.text != rendered.text:
        raise ValueError("the task's rendering differs from render_chat's; this probe handles chat tasks only")
    return turn.start, turn.end


def graded_plans(plan: Any, grade: float) -> tuple[Any, Any]:
    """``(outer, inner)``: the user text emphasised at ``alpha ** (1 - g)``, the instruction at ``alpha ** g``."""
    from pasta_lens.plan import SteeringPlan

    outer = SteeringPlan(plan.heads, {h: a ** (1.0 - grade) for h, a in plan.alphas.items()}, plan.schedule)
    inner = SteeringPlan(plan.heads, {h: a ** grade for h, a in plan.alphas.items()}, plan.schedule)
    return outer, inner


def generate_graded(model: Any, task: Any, examples: list, plan: Any, grade: float, batch: int) -> list[str]:
    from pasta_lens import emphasize, steer
    from pasta_lens.generation import decode_new, generate_tokens
    from pasta_lens.tasks.base import emphasis_of

    outs: list[str] = []
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        markups = [task.queries(ex)[0].markup for ex in chunk]
        rendered = [task.render(model, m) for m in markups]
        em = emphasis_of(model, rendered)
        users = [[user_ranges(model, task, m, r)] for m, r in zip(markups, rendered)]
        em_user = emphasize(model, [r.text for r in rendered], char_ranges=users, prepend_bos=False)
        if not torch.equal(em.tokens, em_user.tokens):
            raise ValueError("the two emphases tokenise differently")
        outer, inner = graded_plans(plan, grade)
        with steer(model, outer, em_user), steer(model, inner, em):
            new = generate_tokens(model, em, task.max_new_tokens)
        outs += decode_new(model, new)
    return outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--profile", default=None, help="a profile name or path (its alphas and schedule apply)")
    p.add_argument("--heads", default=None, help="instead of --profile: 'all' for every head")
    p.add_argument("--alpha", type=float, default=None, help="explicit alpha for every head")
    p.add_argument("--schedule", default=None)
    p.add_argument("--grades", default="0.5", help="comma list of g (1 = plain PASTA)")
    p.add_argument("--alpha-power", type=float, default=1.0,
                   help="raise every head's alpha to this power first (< 1: a smaller alpha range, e.g. 0.5 turns "
                        "0.01 into 0.1)")
    p.add_argument("--instruction-heads", default=None,
                   help="the JSON written by experiments/instruction_heads.py: keep only the plan's heads whose "
                        "instruction preference instr / (instr + doc) is at least --min-preference")
    p.add_argument("--min-preference", type=float, default=0.5)
    p.add_argument("--tasks", default="context_qa,json,instructions")
    p.add_argument("--bios", default="implied")
    p.add_argument("--split", default="validation")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.split == "test":
        raise SystemExit("this probe chooses settings: run it on validation")
    torch.set_num_threads(args.threads)
    from pasta_lens import load_model, load_profile, resolve_plan
    from pasta_lens.tasks import build_task

    model = load_model(args.model)
    if args.profile:
        spec: Any = load_profile(args.profile)
    elif args.heads == "all":
        spec = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    else:
        raise SystemExit("give --profile or --heads all")
    plan = resolve_plan(model, spec, alpha=args.alpha, schedule=args.schedule)
    if args.alpha_power != 1.0:
        plan = dataclasses.replace(plan, alphas={h: a ** args.alpha_power for h, a in plan.alphas.items()})
    if args.instruction_heads:
        pref = json.loads(Path(args.instruction_heads).read_text())["preference"]
        plan = plan.subset([h for h in plan.heads if pref[h[0]][h[1]] >= args.min_preference])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = {}
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["task"], r["grade"], r["uid"])] = r
    start = time.time()
    grades = [float(g) for g in args.grades.split(",")]
    for name in args.tasks.split(","):
        task = build_task(name, bios=args.bios)
        examples = task.examples(args.split, args.n, 0)
        for g in grades:
            todo = [ex for ex in examples if (name, g, ex.uid) not in done]
            for i in range(0, len(todo), args.batch):
                chunk = todo[i:i + args.batch]
                texts = generate_graded(model, task, chunk, plan, g, args.batch)
                with open(rows_path, "a", encoding="utf-8") as f:
                    for ex, text in zip(chunk, texts):
                        row = {"task": name, "grade": g, "uid": ex.uid, "output": text,
                               "metrics": task.metrics_from(ex, {"output": text})}
                        done[(name, g, ex.uid)] = row
                        f.write(json.dumps(row) + "\n")
                print(f"{name} g={g}: {min(i + args.batch, len(todo))}/{len(todo)} ({time.time() - start:.0f} s)",
                      flush=True)
    summary: dict = {"command": "python experiments/graded_emphasis_probe.py " + " ".join(argv or sys.argv[1:]),
                     "plan": plan.describe(), "split": args.split, "n": args.n, "tasks": {}}
    for name in args.tasks.split(","):
        task = build_task(name, bios=args.bios)
        uids = [ex.uid for ex in task.examples(args.split, args.n, 0)]
        for g in grades:
            rows = [done[(name, g, u)] for u in uids]
            keys = rows[0]["metrics"].keys()
            summary["tasks"].setdefault(name, {})[f"g={g:g}"] = {
                k: sum(r["metrics"][k] for r in rows) / len(rows) for k in keys if not k.startswith("type:")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["tasks"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
