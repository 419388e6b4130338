"""The first probe of results/learned_smollm2.md (issue 11): can *any* per-head steering make SmolLM2 write the JSON
answer? Learned strengths on the JSON task alone (40 train examples; target = gold JSON + <|im_end|> unless the 5th
argument is "noeos"), trained with the rows of a schedule steered, then 20 validation prompts generated (40 new
tokens) under schedules prompt and all, and F.Acc / P.Acc counted.

    .venv/bin/python scripts/learned_json_probe.py prompt 60 1.0 0.01 eos     # SCHEDULE STEPS KL_WEIGHT SPARSITY EOS
    .venv/bin/python scripts/learned_json_probe.py prompt 60 1.0 0.01 noeos

Initial logits: the JSON attribution table of smollm2-135m-instruct-attribution; one example per step, drawn by a
generator seeded 0. Saves the logits to runs/learned-json-probe/. The package's own route to the same strengths is
`pasta-lens profile --method learned --tasks json --schedule prompt --end-turn` (profiles/*-json-learned.json).
"""
import sys, time, torch
import os; torch.set_num_threads(int(os.environ.get("NT","2")))
from pasta_lens import load_model, generate, load_profile
from pasta_lens.tasks import get_task
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.profiling.learned import _hooks, _prompt_kl, init_logits, strengths_to_alphas
from pasta_lens.metrics import json_format_ok, json_occupation_ok
from pasta_lens.tasks.biographies import occupation_text

sched_train = sys.argv[1] if len(sys.argv) > 1 else "prompt"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
klw = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
sp = float(sys.argv[4]) if len(sys.argv) > 4 else 0.01
eos = sys.argv[5] == "eos" if len(sys.argv) > 5 else True
model = load_model("smollm2-135m-instruct")
task = get_task("json")
tok = model.tokenizer
end_id = tok.convert_tokens_to_ids("<|im_end|>")
exs = task.profiling_examples(model, split="train", n=40)
if eos:
    new = []
    for ex in exs:
        tokens = torch.cat([ex.tokens, torch.tensor([[end_id]])], 1)
        new.append(ProfilingExample(tokens=tokens, key_mask=ex.key_mask,
                   objective=target_logprob(ex.n_prompt, tokens[0, ex.n_prompt:]), task="json"))
    exs = new
prof = load_profile("smollm2-135m-instruct-attribution")
init = init_logits({"json": prof.scores["json"]})
g = init.clone().requires_grad_(True)
opt = torch.optim.Adam([g], lr=0.1)

t0 = time.time()
gen = torch.Generator().manual_seed(0)
for s in range(steps):
    i = int(torch.randint(len(exs), (1,), generator=gen))
    ex = exs[i]
    n_ans = ex.tokens.shape[1] - ex.n_prompt
    with torch.no_grad():
        base = model(ex.tokens)
    with torch.enable_grad():
        with model.hooks(fwd_hooks=_hooks(g, 0.01, ex.key_mask, sched_train)):
            logits = model(ex.tokens)
        obj = ex.objective(logits)[0] / n_ans
        kl = _prompt_kl(logits, base, ex.n_prompt)
        loss = -obj + klw * kl + sp * torch.sigmoid(g).sum()
        (dg,) = torch.autograd.grad(loss, [g])
    g.grad = dg; opt.step(); g.grad = None
    if s % 10 == 0 or s == steps - 1:
        b = float(ex.objective(base)[0]) / n_ans
        print(f"step {s} obj {float(obj):.3f} base {b:.3f} kl {float(kl):.3f} nstrong {(torch.sigmoid(g)>0.5).sum().item()} t {time.time()-t0:.0f}", flush=True)

alphas = strengths_to_alphas(g.detach(), 0.01)
os.makedirs("runs/learned-json-probe", exist_ok=True)
torch.save(g.detach(), f"runs/learned-json-probe/g_{sched_train}_{steps}_{klw}_{sp}_{eos}.pt")
kept = {(int(l), int(h)): float(alphas[l, h]) for l, h in torch.nonzero(alphas < 0.5).tolist()}
print("kept", len(kept), sorted(kept.items(), key=lambda kv: kv[1])[:20])
val = task.examples("validation", n=20)
prompts = [task.prompt(e) for e in val]
for sch in ["prompt", "all"]:
    outs = []
    for i in range(0, len(prompts), 10):
        outs += generate(model, prompts[i:i+10], heads=list(kept), alpha=kept, chat=True, max_new_tokens=40, schedule=sch)
    f = sum(json_format_ok(o) for o in outs); p = sum(json_occupation_ok(o, occupation_text(e.occupation)) for e, o in zip(val, outs))
    print(f"EVAL sched={sch} F={f}/20 P={p}/20", flush=True)
    for o in outs[:4]: print("   ", repr(o[:200]))
