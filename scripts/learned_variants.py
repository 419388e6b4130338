"""Exploration harness behind results/learned_smollm2.md (issue 11): learned per-head strengths with objective
variants the package does not ship, each trained and then evaluated on the validation split (n = 20 per task).

    .venv/bin/python scripts/learned_variants.py --tag m1                       # 4 tasks, schedule prompt
    .venv/bin/python scripts/learned_variants.py --tag m2 --cap 1.0 --clip 100  # gain cap 1 nat per answer token
    .venv/bin/python scripts/learned_variants.py --tag m3 --gradnorm 1 --focus 1 --nt 1
    .venv/bin/python scripts/learned_variants.py --tag m4 --init max --focus 1 --nt 1
    .venv/bin/python scripts/learned_variants.py --tag r1 --tasks json --base smollm2-135m-instruct-metric --steps 80 --nt 1
    .venv/bin/python scripts/learned_variants.py --tag r2 --base smollm2-135m-instruct-metric --nt 1
    .venv/bin/python scripts/learned_variants.py --tag c0.5 --tasks json --base smollm2-135m-instruct-metric --steps 80 --nt 1 --close 0.5
    # the default of stop 22, shipped as profiles/smollm2-135m-instruct-protect-script.json since stop 23 (it records
    # this exact command, whose --profile-out named the default's file then: pass another one to rerun it)
    .venv/bin/python scripts/learned_variants.py --tag g1 --tasks json --base smollm2-135m-instruct-metric --steps 80 --nt 1 --close 0.5 --occ 1 --early 0.5 --per-step 2 --protect pronoun --protect-gen 16

It re-implements the training step of :func:`pasta_lens.profiling.learn_alphas` (same parametrisation, KL term,
sparsity, Adam) so that the variants can differ from it; its examples are drawn per step with replacement (the
package: seeded per-epoch permutations), so the same recipe in the package is another draw:

* chat targets end with ``<|im_end|>`` (``--eos 1``, as ``--end-turn``), rows steered per ``--sched``;
* CounterFact's term is ``log P(new)/token + min(log P(new_1) - log P(old_1), --clip)`` (the package's objective
  without the clip is ``log P(new) - log P(old_1)``, summed and divided by the answer length);
* ``--cap C``: an example's term at most C above its unsteered value (the package's ``gain_cap``);
* ``--focus 1``: the pronoun term is the mean log-prob of the gold tokens that differ from the bio restated with its
  own pronouns (difflib on token ids), not of the whole rewrite;
* ``--gradnorm 1``: each task's gradient scaled to unit L2 norm before they are summed;
* ``--init max``: logits start from the max over tasks of the normalised attribution, not the mean;
* ``--base P``: P's heads steered at their alphas during training and added to the result (``--base-profile``);
* ``--close W``: a chat task's term also counts W * log P(the answer's closing token, the one before
  ``<|im_end|>``) (the package's ``close_weight`` / ``--close-weight``);
* ``--occ W``: JSON's and the pronoun task's terms also count W * the mean log-prob of the answer tokens that spell
  the occupation (its last mention; the package's ``focus_weight`` / ``--focus-weight`` since stop 23);
* ``--per-step K``: K train examples per task and step (their gradients averaged; default 1);
* ``--protect T --protect-weight P``: also P * KL(steered || unsteered) over the answer rows of task T's train
  examples (teacher-forced gold answer + end of turn): T's own writing is kept, T is not otherwise trained for
  (the package's ``protect`` / ``--protect``, ``--protect-weight`` since stop 23);
* ``--protect-gen F``: ... over the unsteered model's own greedy first F answer tokens instead of the gold answer
  (what free generation starts with: the first-token decision weighs 1/F of the term, not 1/len(answer); the
  package's ``own_continuations`` / ``--protect-gen``, which this script calls since stop 23: KV-cached, the same
  40 x 16 pronoun tokens as the uncached argmax loop it had, in 52 s instead of 293 s);
* ``--early W``: ... and W * sum of log(1 - P(that closing token)) at the earlier answer positions whose gold token is
  another (the answer must not close before its end; the package's ``early_weight`` / ``--early-weight``).

Initial logits come from the attribution tables stored in ``smollm2-135m-instruct-attribution`` (100 train examples
per task, targets without the end-of-turn marker). Each step draws ``--per-step`` (default one) train examples per
task with a generator seeded by ``crc32(f"{salt}{step}:{task}")`` (``--salt``, default empty; another salt is
another draw of the same recipe). Writes ``OUT/g_TAG.pt``, the profile ``OUT/prof_TAG.json`` (or
``--profile-out``; it records this command) and, unless ``--eval 0``, the validation run ``OUT/ev_TAG``.
"""
import argparse
import shlex
import sys
import time
import zlib
from pathlib import Path

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--sched", default="prompt"); ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--kl", type=float, default=1.0); ap.add_argument("--sp", type=float, default=0.01)
ap.add_argument("--clip", type=float, default=2.0); ap.add_argument("--eos", type=int, default=1)
ap.add_argument("--tasks", default="json,pronoun,biasbios,counterfact"); ap.add_argument("--n", type=int, default=40)
ap.add_argument("--tag", default="m1"); ap.add_argument("--eval", type=int, default=1); ap.add_argument("--valn", type=int, default=20)
ap.add_argument("--keep", type=float, default=0.5); ap.add_argument("--lr", type=float, default=0.1)
ap.add_argument("--nt", type=int, default=2); ap.add_argument("--cap", type=float, default=0.0); ap.add_argument("--focus", type=int, default=0); ap.add_argument("--gradnorm", type=int, default=0); ap.add_argument("--init", default="mean"); ap.add_argument("--base", default="")
ap.add_argument("--close", type=float, default=0.0); ap.add_argument("--early", type=float, default=0.0)
ap.add_argument("--occ", type=float, default=0.0); ap.add_argument("--salt", default="")
ap.add_argument("--per-step", type=int, default=1)
ap.add_argument("--protect", default=""); ap.add_argument("--protect-weight", type=float, default=1.0)
ap.add_argument("--protect-gen", type=int, default=0)
ap.add_argument("--out-dir", default="runs/learned-variants"); ap.add_argument("--profile-out", default="")
a = ap.parse_args()
if a.protect_gen and not a.protect:
    ap.error("--protect-gen F protects a task's own free generation: name the task with --protect T")
out = Path(a.out_dir)
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(a.nt)
from pasta_lens import load_model, load_profile
from pasta_lens.tasks import get_task
from pasta_lens.tasks.biographies import occupation_text
from pasta_lens.schedule import Schedule
from pasta_lens.profiling.learned import (LearnedAlphas, _answer_kl, _hooks, _prompt_kl, base_alphas, init_logits,
                                         learned_profile, own_continuations)
from pasta_lens.evaluation import evaluate

model = load_model("smollm2-135m-instruct")
tasks = a.tasks.split(",")
end_id = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
data = {}
for t in tasks:
    task = get_task(t)
    exs = task.profiling_examples(model, split="train", n=a.n)
    rows = []
    for bio, ex in zip(task.examples("train", a.n), exs):  # profiling_examples keeps examples()'s order
        tokens, n_ans = ex.tokens, ex.tokens.shape[1] - ex.n_prompt
        if a.eos and task.chat:
            tokens = torch.cat([tokens, torch.tensor([[end_id]])], 1); n_ans += 1
        contrast = task.contrast  # method
        focus = None
        if a.focus and t == "pronoun":
            import difflib
            gold = tokens[0, ex.n_prompt:].tolist()
            orig_text = task.answer(bio).replace(bio.neutral.rstrip(), bio.context.rstrip())
            orig = model.tokenizer(orig_text, add_special_tokens=False)["input_ids"]
            focus = torch.zeros(len(gold), dtype=torch.bool)
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=gold, b=orig, autojunk=False).get_opcodes():
                if tag in ("replace", "delete"):
                    focus[i1:i2] = True
            if len(rows) == 0:
                print("FOCUS", repr(model.tokenizer.decode([g for g, f in zip(gold, focus) if f])), int(focus.sum()), len(gold))
        occ = None
        if a.occ and t in ("json", "pronoun"):  # the answer tokens that spell the occupation (its last mention)
            text, word = task.answer(bio), occupation_text(bio.occupation)
            start = text.rindex(word); end = start + len(word)
            gold = tokens[0, ex.n_prompt:].tolist()
            ends = [len(model.tokenizer.decode(gold[:j + 1])) for j in range(len(gold))]
            occ = torch.tensor([e > start and (j == 0 or ends[j - 1] < end) for j, e in enumerate(ends)])
            if len(rows) == 0:
                print("OCC", repr(model.tokenizer.decode([g for g, f in zip(gold, occ) if f])), int(occ.sum()), len(gold))
        rows.append((tokens, ex.key_mask, ex.n_prompt, n_ans, focus, occ))
    data[t] = rows
# --protect T: T's train examples (gold answer + end of turn), whose answer positions the KL term also covers
protect = []
if a.protect:
    pexs = get_task(a.protect).profiling_examples(model, split="train", n=a.n, end_turn=True)
    if a.protect_gen:  # the unsteered model's own greedy first F tokens (up to and including the end of turn)
        pexs = own_continuations(model, pexs, a.protect_gen)  # KV-cached; the tokens of an uncached argmax loop
        print("PROTECT-GEN", repr(model.tokenizer.decode(pexs[0].tokens[0, pexs[0].n_prompt:])))
    protect = [(ex.tokens, ex.key_mask, ex.n_prompt) for ex in pexs]
# CF contrast: first token of old object
cf_old = {}
if "counterfact" in tasks:
    task = get_task("counterfact")
    from pasta_lens.tasks.base import answer_ids
    for i, ex in enumerate(task.examples("train", a.n)):
        cf_old[i] = int(answer_ids(model, task.contrast(ex))[0])

prof = load_profile("smollm2-135m-instruct-attribution")
init = init_logits({t: prof.scores[t] for t in tasks})
if a.init == "max":
    tabs = torch.stack([torch.tensor(prof.scores[t]) / torch.tensor(prof.scores[t]).abs().max() for t in tasks])
    init = -4.0 + 6.0 * tabs.max(0).values
g = init.clone().requires_grad_(True)
opt = torch.optim.Adam([g], lr=a.lr)
sched = str(Schedule.parse(a.sched))
base_profile = load_profile(a.base) if a.base else None
base = base_alphas(base_profile) if base_profile else {}  # steered at fixed alphas, kept in the result
if base:
    print("base", len(base))

def term(logits, tokens, n_prompt, n_ans, t, i):
    logp = torch.log_softmax(logits[0, n_prompt - 1:n_prompt - 1 + n_ans].float(), -1)
    per = logp.gather(-1, tokens[0, n_prompt:n_prompt + n_ans, None]).squeeze(-1)
    focus, occ = data[t][i][4], data[t][i][5]
    lp = per[focus].mean() if focus is not None else per.sum() / n_ans
    if a.close and a.eos and get_task(t).chat:
        lp = lp + a.close * per[-2]  # the answer's closing token (the one before the end-of-turn marker)
    if a.early and a.eos and get_task(t).chat:  # ... and not before it: log(1 - P(closing token)) earlier
        close_tok = tokens[0, n_prompt + n_ans - 2]
        gold = tokens[0, n_prompt:n_prompt + n_ans - 2]
        p_close = logp[:n_ans - 2, close_tok].exp()
        lp = lp + a.early * torch.log1p(-p_close.clamp(max=1 - 1e-6))[gold != close_tok].sum()
    if a.occ and occ is not None:  # the occupation's own tokens, on top of the whole-answer mean
        lp = lp + a.occ * per[occ].mean()
    if t == "counterfact":
        margin = logp[0, tokens[0, n_prompt]] - logp[0, cf_old[i]]
        lp = lp + torch.clamp(margin, max=a.clip)
    return lp

def plain_and_steered(tokens, km):
    """The unsteered logits (no gradient: the reference) and the steered ones (differentiable in g)."""
    with torch.no_grad():
        plain = model(tokens)
    with torch.enable_grad():
        with model.hooks(fwd_hooks=_hooks(g, 0.01, km, sched, base)):
            return plain, model(tokens)

t0 = time.time(); hist = []
for s in range(a.steps):
    grad = torch.zeros_like(g); rec = {}
    for t in tasks:
        gen = torch.Generator().manual_seed(zlib.crc32(f"{a.salt}{s}:{t}".encode()))
        rec[t] = rec["kl_" + t] = 0.0
        for i in torch.randint(len(data[t]), (a.per_step,), generator=gen).tolist():
            tokens, km, npr, n_ans, _f, _o = data[t][i]
            plain, logits = plain_and_steered(tokens, km)  # plain: reference for the cap and the KL
            with torch.no_grad():
                b = float(term(plain, tokens, npr, n_ans, t, i))
            with torch.enable_grad():
                v = term(logits, tokens, npr, n_ans, t, i)
                if a.cap > 0: v = torch.clamp(v, max=b + a.cap)
                kl = _prompt_kl(logits, plain, npr)
                loss = (-v + a.kl * kl) / len(tasks) / a.per_step
                (dg,) = torch.autograd.grad(loss, [g])
            if a.gradnorm: dg = dg / dg.norm().clamp_min(1e-12)
            grad += dg; rec[t] += (float(v.detach()) - b) / a.per_step; rec["kl_" + t] += float(kl.detach()) / a.per_step
    if protect:  # KL(steered || unsteered) over the protected task's answer rows, teacher-forced on its gold answer
        gen = torch.Generator().manual_seed(zlib.crc32(f"{a.salt}{s}:protect:{a.protect}".encode()))
        rec["kl_ans_" + a.protect] = 0.0
        for i in torch.randint(len(protect), (a.per_step,), generator=gen).tolist():
            tokens, km, npr = protect[i]
            plain, logits = plain_and_steered(tokens, km)
            with torch.enable_grad():
                kl_ans = _answer_kl(logits, plain, npr)  # the package's protect term, the same operations
                (dg,) = torch.autograd.grad(a.protect_weight * kl_ans / a.per_step, [g])
            grad += dg; rec["kl_ans_" + a.protect] += float(kl_ans.detach()) / a.per_step
    with torch.enable_grad():
        pen = a.sp * torch.sigmoid(g).sum(); (dp,) = torch.autograd.grad(pen, [g])
    g.grad = grad + dp; opt.step(); g.grad = None; hist.append(rec)
    if s % 10 == 9 or s == a.steps - 1:
        last = hist[-10:]
        print(f"step {s+1} " + " ".join(f"{k}={sum(h[k] for h in last)/len(last):.3f}" for k in rec) +
              f" nstrong={(torch.sigmoid(g)>0.5).sum().item()} t={time.time()-t0:.0f}", flush=True)
torch.save(g.detach(), out / f"g_{a.tag}.pt")
la = LearnedAlphas(g=g.detach(), init_g=init, alpha_min=0.01, steps=a.steps, history=(), n_examples={t: a.n for t in tasks},
                   settings=dict(lr=a.lr, kl_weight=a.kl, sparsity=a.sp, alpha_min=0.01, per_step=a.per_step, seed=0,
                                 schedule=sched), base=base, wall_time_s=time.time() - t0)
kept = la.kept(a.keep)
print("kept", len(kept), sorted(((k, round(v, 3)) for k, v in kept.items()), key=lambda kv: kv[1]))
# the profile records the command that made it (this script), the schedule it was trained with, and its base
command = shlex.join(["python", "scripts/learned_variants.py", *sys.argv[1:]])
provenance = {"split": "train", "init_scores_from": "smollm2-135m-instruct-attribution"}
p = learned_profile(model, "smollm2-135m-instruct", la, keep_below=a.keep, command=command, seed=0,
                    provenance=provenance, base_profile=base_profile, base_name=a.base or None)
p.save(a.profile_out or out / f"prof_{a.tag}.json")
if a.eval:
    res = evaluate(model, "all", ["pasta"], split="validation", n=a.valn, profile=p, out_dir=out / f"ev_{a.tag}", progress=False)
    print(res.table)
