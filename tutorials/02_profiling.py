# %% [markdown]
# # Profiling a model: which heads to steer
#
# PASTA steers a chosen *set* of heads. The paper finds it by **model profiling**: steer each head alone on a few
# examples of each task, score it by how much the task objective improves, keep the top-k heads of every task and
# intersect the sets. pasta_lens does this with `profile_heads` (per task), `select_heads` (combine), an ablation
# curve over k on validation examples, and a `HeadProfile` that saves the choice with its provenance.
#
# Scoring a head exactly costs one forward per head (270 on SmolLM2). The cheap alternative is **attribution**:
# one forward and one backward give the gradient of the objective w.r.t. every attention pattern, and
#
#     score[l, h] ~ sum_{q,k} dF/dA[l, h, q, k] * (PASTA(A)[l, h, q, k] - A[l, h, q, k])
#
# estimates all 270 scores at once. `hybrid` re-scores the best attribution heads exactly. Here we compare them.
# `PASTA_LENS_FAST=1` selects tiny settings (the test suite uses them); pictures go to `$PASTA_LENS_OUT`.

# %%
import os
from pathlib import Path

import torch

from pasta_lens import (
    HeadProfile,
    ablation_curve,
    choose_k,
    load_model,
    load_profile,
    make_profile,
    profile_heads,
    select_heads,
    steer,
)
from pasta_lens.plot import plot_ablation, plot_head_scores
from pasta_lens.profiling import exact_scores
from pasta_lens.tasks import get_task

FAST = os.environ.get("PASTA_LENS_FAST") == "1"
OUT = Path(os.environ.get("PASTA_LENS_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
TASKS = ("json", "counterfact")
N_PROFILE = 2 if FAST else 16     # train examples per task
N_VALIDATION = 2 if FAST else 16  # validation examples per task, for choosing k
TOP_M = 8 if FAST else 32         # heads checked exactly
KS = (10, 40) if FAST else (5, 10, 20, 40, 60, 90)

# %% [markdown]
# ## Examples from the tasks
# Each task turns its examples into `ProfilingExample`s: the prompt (with the emphasised span) followed by the
# gold answer's tokens, a key mask over the prompt, and the objective (the answer's log-probability; for
# CounterFact minus the old answer's). Profiling uses the train split; k is chosen on the validation split.

# %%
model = load_model("smollm2-135m-instruct")
train = {name: get_task(name).profiling_examples(model, "train", n=N_PROFILE) for name in TASKS}
validation = {name: get_task(name).profiling_examples(model, "validation", n=N_VALIDATION) for name in TASKS}
for name, examples in train.items():
    print(f"{name}: {len(examples)} examples, first prompt {examples[0].n_prompt} tokens")

# %% [markdown]
# ## Score every head by attribution; check the best ones exactly
# `profile_heads(..., method="attribution")` scores all heads from one forward and one backward pass per example.
# `exact_scores` then steers the attribution's `TOP_M` best heads one at a time (batched: one steered copy of the
# example per head) and measures the real change. How well does the cheap estimate rank the heads the exact one
# ranks? (`method="hybrid"` does both steps in one call and keeps the exact values.)

# %%
scores = {name: profile_heads(model, examples, method="attribution", progress=False)
          for name, examples in train.items()}


def rank_correlation(a, b):
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


comparison, pairs = {}, {}
for name, hs in scores.items():
    top = hs.top(TOP_M)
    exact = torch.stack([exact_scores(model, ex, hs.alpha, top, heads_per_batch=TOP_M + 1)[1]
                         for ex in train[name]]).mean(0)
    approx = torch.tensor([float(hs.scores[head]) for head in top])
    pairs[name] = (approx, exact)
    comparison[name] = (rank_correlation(approx, exact), float((approx - exact).abs().mean()))
    print(f"{name}: top-{TOP_M} heads, attribution vs exact: rank correlation {comparison[name][0]:+.2f}, "
          f"mean |difference| {comparison[name][1]:.3f}; best head {hs.top(1)[0]} "
          f"(attribution {float(approx[0]):+.3f}, exact {float(exact[0]):+.3f})")
    plot_head_scores(hs.scores, selected=hs.top(5), title=f"{name}: attribution scores, top 5",
                     colorbar_label="est. objective change", path=OUT / f"02_scores_{name}.png")

# %% [markdown]
# ## Pick the head set
# `select_heads(scores, k)` keeps the heads in *every* task's top-k (the paper's intersection). Which k? Steer each
# candidate set on validation examples and keep the k with the best mean objective gain (`ablation_curve`,
# `choose_k`).

# %%
curve = ablation_curve(model, scores, validation, ks=KS, progress=False)
for point in curve:
    print(f"k={point.k:3d}: {point.n_heads:3d} heads, mean objective gain {point.metric:+.3f} {point.per_task}")
k = choose_k(curve)
heads = select_heads(scores, k)
print(f"chosen k={k}: {len(heads)} heads")
plot_ablation({"mean over tasks": [(p.n_heads, p.metric) for p in curve],
               **{name: [(p.n_heads, p.per_task[name]) for p in curve] for name in TASKS}},
              "number of steered heads (intersection of per-task top-k)", OUT / "02_ablation.png",
              ylabel="objective gain on validation", title="Choosing k")

# %% [markdown]
# ## Save and reload the profile
# A `HeadProfile` records what is needed to trust and repeat it: model name and shape, a hash of the weights,
# tasks, method, alpha, k, strategy, examples per task, library version, date, the command, and the score tables.
# `steer(model, profile, ...)` checks the profile against the model before steering.

# %%
profile = make_profile(model, "smollm2-135m-instruct", scores, k=k, seed=0,
                       command="python tutorials/02_profiling.py")
path = profile.save(OUT / "02_profile.json")
reloaded = load_profile(path)
assert isinstance(reloaded, HeadProfile) and reloaded.heads == profile.heads
print(f"saved {path}: {len(reloaded.heads)} heads, tasks {reloaded.tasks}, weights {reloaded.weights_hash}")
plot_head_scores(torch.tensor(reloaded.scores["counterfact"]), selected=reloaded.heads,
                 title="counterfact scores and the profile's heads",
                 path=OUT / "02_profile_heads.png")

# %% [markdown]
# Steering with the reloaded profile reproduces the validation gain that k was chosen by (same heads, same
# examples, same objective):

# %%
chosen = next(p for p in curve if p.k == k)
gains = {}
with torch.inference_mode():
    for name in TASKS:
        changes = []
        for ex in validation[name]:
            before = float(ex.objective(model(ex.tokens)))
            after = before  # an empty intersection steers nothing
            if reloaded.heads:
                with steer(model, reloaded, ex.key_mask):
                    after = float(ex.objective(model(ex.tokens)))
            changes.append(after - before)
        gains[name] = sum(changes) / len(changes)
        print(f"{name}: mean objective gain {gains[name]:+.3f} with the reloaded profile "
              f"(ablation curve at k={k}: {chosen.per_task[name]:+.3f})")
