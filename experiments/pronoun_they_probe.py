"""Can steering make SmolLM2 write "they" where its own answer says "she"/"he"?

    .venv/bin/python experiments/pronoun_they_probe.py --profiles smollm2-135m-instruct --split validation --n 50

For each bio of the pronoun task, the unsteered model writes its own answer (greedy, up to 64 tokens or its end of
turn); :meth:`PronounTask.correct <pasta_lens.tasks.bio_tasks.PronounTask.correct>` turns it into the same answer
with "they"-forms (the instruction carried out on the model's own words). That corrected answer is teacher-forced
unsteered and under each profile (its recorded schedule; with ``prompt`` the answer rows are not steered, as in
generation), and at every position whose corrected token is a "they"-form (they, their, them, themselves, theirs)
the probe records whether it is the model's argmax there and its log-prob. The *first* such position is the one
greedy generation meets first: its argmax rate is the share of answers where the steered model, having written
the same words so far, would write the pronoun the instruction asks for.
"""
import argparse
import contextlib
import json
import re

import torch

from pasta_lens import load_model, load_profile, steer
from pasta_lens.profiling import own_continuations
from pasta_lens.plan import resolve_plan
from pasta_lens.tasks import get_task

THEY = re.compile(r"^\s*(they|their|them|themselves|theirs)$", re.IGNORECASE)

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--profiles", default="smollm2-135m-instruct", help="comma-separated profile names or paths")
p.add_argument("--split", default="validation")
p.add_argument("--n", type=int, default=50)
p.add_argument("--tokens", type=int, default=64, help="the own answer's budget (the pronoun task's: 64)")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", default=None, help="write the per-example values here (JSON lines)")
args = p.parse_args()
torch.set_num_threads(args.threads)
model = load_model("smollm2-135m-instruct")
task = get_task("pronoun")
names = ["unsteered"] + args.profiles.split(",")
profiles = [None] + [resolve_plan(model, prof) for prof in map(load_profile, names[1:])]  # alphas, schedule
exs = task.profiling_examples(model, args.split, n=args.n, end_turn=True)
corrected = own_continuations(model, exs, args.tokens, rewrite=task.correct)
first = {name: [] for name in names}
every = {name: [] for name in names}
logp_first = {name: [] for name in names}
rows = []
for ex, fixed in zip(exs, corrected):
    target = fixed.tokens[0, ex.n_prompt:].tolist()
    where = [ex.n_prompt + i for i, t in enumerate(target) if THEY.match(model.tokenizer.decode([t]))]
    row = {"n_they_positions": len(where)}
    if not where:  # the own answer has no gendered pronoun (a one-sentence answer): nothing to flip
        rows.append(row)
        continue
    for name, prof in zip(names, profiles):
        ctx = steer(model, prof, ex.key_mask) if prof is not None else contextlib.nullcontext()
        with ctx, torch.inference_mode():
            logits = model(fixed.tokens.to(model.cfg.device))[0].float()
        at = torch.tensor(where)
        gold = fixed.tokens[0, at]
        pred = logits[at - 1].argmax(-1).cpu()
        logp = torch.log_softmax(logits[at - 1], -1).cpu().gather(-1, gold[:, None])[:, 0]
        hit = (pred == gold).tolist()
        first[name].append(hit[0])
        every[name] += hit
        logp_first[name].append(float(logp[0]))
        row[name] = {"first_argmax": hit[0], "argmax_rate": sum(hit) / len(hit), "first_logp": float(logp[0])}
    rows.append(row)
n_with = len(first["unsteered"])
print(f"{args.split} n = {args.n}: {n_with} own answers have a gendered pronoun to change "
      f"({len(every['unsteered'])} positions)")
print("| config | first they-form is the argmax | every they-form position | mean log P(first they-form) |")
print("|---|---|---|---|")
for name in names:
    print(f"| {name} | {sum(first[name])} / {n_with} | {sum(every[name])} / {len(every[name])} | "
          f"{sum(logp_first[name]) / max(1, n_with):.2f} |")
if args.out:
    with open(args.out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
