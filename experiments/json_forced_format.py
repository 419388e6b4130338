"""How many occupations the model gets right once the JSON format is given (the content behind P.Acc).

    .venv/bin/python experiments/json_forced_format.py --profiles smollm2-135m-instruct --split test --n 200

For each bio of the JSON task, the prompt is followed by the gold answer's start ``{"name": "<name>",
"occupation": "`` (teacher-forced) and the model greedily writes 6 more tokens; the value (up to the first ``"``)
counts as right when it contains the gold occupation, the rule of P.Acc (:func:`pasta_lens.metrics.
json_occupation_ok`). Run unsteered and under each profile (its recorded schedule: with ``prompt`` the forced and
generated rows are not steered, as in generation). Separates the content from the format: free generation's
P.Acc needs both an object that parses and the right value.
"""
import argparse
import contextlib
import json

import torch

from pasta_lens import load_model, load_profile, steer
from pasta_lens.generation import generate_new_tokens
from pasta_lens.plan import resolve_plan
from pasta_lens.metrics import normalise_occupation
from pasta_lens.tasks import get_task
from pasta_lens.tasks.biographies import occupation_text

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--profiles", default="smollm2-135m-instruct", help="comma-separated profile names or paths")
p.add_argument("--split", default="validation")
p.add_argument("--n", type=int, default=50)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", default=None, help="write the per-example values here (JSON lines)")
args = p.parse_args()
torch.set_num_threads(args.threads)
model = load_model("smollm2-135m-instruct")
tok = model.tokenizer
task = get_task("json")
names = ["unsteered"] + args.profiles.split(",")
# each profile is resolved against the model once here: its heads, its alphas, its recorded schedule
profiles = [None] + [resolve_plan(model, prof) for prof in map(load_profile, names[1:])]  # alphas, schedule
right = dict.fromkeys(names, 0)
rows = []
bios = task.examples(args.split, args.n)
for bio in bios:
    ex = task.profiling_example(model, bio)
    n_prompt = ex.n_prompt
    answer = task.answer(bio)
    cut = answer.index('"occupation": "') + len('"occupation": "')
    forced = torch.tensor([tok(answer[:cut], add_special_tokens=False)["input_ids"]])
    start = torch.cat([ex.tokens[:, :n_prompt], forced], 1)
    row = {"uid": bio.uid, "occupation": bio.occupation}
    for name, prof in zip(names, profiles):
        ctx = steer(model, prof, ex.key_mask) if prof is not None else contextlib.nullcontext()
        # greedy with the KV cache from raw tokens: the key mask covers the prompt only, the forced tokens play
        # generated ones
        with ctx:
            new = generate_new_tokens(model, start, max_new_tokens=6, stop_at_eos=False)
        value = tok.decode(new[0]).split('"')[0]
        ok = normalise_occupation(occupation_text(bio.occupation)) in normalise_occupation(value)
        right[name] += ok
        row[name] = value
    rows.append(row)
if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
print(f"right occupation with the format forced ({args.split}, n = {len(bios)}):")
for name in names:
    print(f"  {name}: {right[name]}/{len(bios)} = {100 * right[name] / len(bios):.1f}%")
