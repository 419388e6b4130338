# %% [markdown]
# # Steering meets activation patching: which steered heads carry the effect?
#
# PASTA steers many heads at once. Does each of them matter, or do a few carry the change in the answer?
# Because steering is just hooks, the interpretability toolbox applies directly:
#
# 1. **Activation patching on head outputs.** Run the prompt unsteered and steered. Take one steered head's
#    output `blocks.L.attn.hook_z[:, :, h]` from the steered run and patch it into the unsteered run: how much of
#    the steering effect does that head alone bring back (*sufficiency*)? And the reverse: put the head's
#    unsteered output into the steered run: how much of the effect is lost (*necessity*)?
# 2. **Compare** with cheaper head scores: the profiler's, and how much steering moves the head's attention
#    onto the span.
# 3. **Inspect** the most important heads: what they attend to, and what they write directly into the answer
#    logit through the unembedding (direct logit attribution).
#
# The task metric is CounterFact's: the prompt states an old and a new fact, the new one emphasised, and we
# measure `log P(new answer) - log P(old answer)`. Cases come from the train split (analysis, like profiling,
# never touches the test split). `PASTA_LENS_FAST=1` selects tiny settings; pictures go to `$PASTA_LENS_OUT`.

# %%
import os
from pathlib import Path

import pandas as pd  # TransformerLens' patching utilities index the patched heads with a DataFrame
import torch
from transformer_lens import patching

from pasta_lens import load_model, load_profile, profile_heads, steer
from pasta_lens.analysis import (
    cumulative_patching,
    direct_logit_effect,
    patch_steered_heads,
    span_attention,
)
from pasta_lens.plot import plot_ablation, plot_attention_row, plot_head_scores
from pasta_lens.registry import find_profile
from pasta_lens.tasks import get_task

FAST = os.environ.get("PASTA_LENS_FAST") == "1"
OUT = Path(os.environ.get("PASTA_LENS_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
N_CANDIDATES = 4 if FAST else None  # heads to patch one by one (None: every steered head)

# %% [markdown]
# ## The model, the steered heads, one CounterFact case
# The steered heads are SmolLM2's shipped multi-task intersection (`smollm2-135m-instruct-metric`). The task gives the prompt in the PASTA paper's
# format, `Previously, <old fact>. Currently, *<new fact>*. <question>`, and a `ProfilingExample`: the prompt
# followed by the new answer's tokens (teacher forcing), the key mask, and the objective
# `log P(new answer) - log P(first token of the old answer)`. That objective is our metric. The cases are the real
# CounterFact files shipped inside the package (`$PASTA_LENS_DATA` names another folder).

# %%
model = load_model("smollm2-135m-instruct")
# The multi-task intersection shipped for this model: 12 heads chosen on all four tasks, steered at one alpha. (The
# default profile, `default_heads(model)`, adds heads learned for the JSON instruction at their own strengths,
# which a CounterFact case does not need and a single alpha would misrepresent.)
heads = load_profile("smollm2-135m-instruct-metric").heads
print(len(heads), "steered heads: the shipped intersection profile smollm2-135m-instruct-metric")
task = get_task("counterfact")
# The case is fixed before looking at any effect: the first of the train split in its seeded order. (Picking the
# case where steering works best would show a bigger effect than steering typically has.)
fact = task.examples("train", n=1)[0]
ex = task.profiling_example(model, fact)
metric = ex.objective  # logits [batch, pos, vocab] -> [batch]
n_prompt = ex.n_prompt
answer_pos = n_prompt - 1  # the position that predicts the first answer token
str_tokens = model.to_str_tokens(ex.tokens[0])
print("chosen:", task.prompt(fact), "->", task.answer(fact))

# %% [markdown]
# ## TransformerLens' patching utilities work on the bridge
# `transformer_lens.patching.generic_activation_patch` takes the corrupted tokens, a "clean" cache, a metric
# and a patch setter. With the steered run's cache as the clean one and `layer_head_vector_patch_setter` on
# activation `"z"`, it patches one head's output at a time into the unsteered run. Checked here against a
# hand-written hook. Two caveats: the utility runs the tokens *without an attention mask* (so one unpadded
# prompt at a time), and it patches one index per forward (joint patches need a hook of your own, below).

# %%
LAYER, HEAD = heads[0]
z_name = f"blocks.{LAYER}.attn.hook_z"
with torch.inference_mode():
    with steer(model, heads, ex.key_mask):
        _, steered_cache = model.run_with_cache(ex.tokens, names_filter=z_name)
    via_tl = patching.generic_activation_patch(
        model, ex.tokens, steered_cache, lambda logits: metric(logits).mean(),
        patching.layer_head_vector_patch_setter, "z",
        index_df=pd.DataFrame([[LAYER, HEAD]], columns=["layer", "head_index"]))


def patch_one_head(z, hook):
    z = z.clone()
    z[:, :, HEAD] = steered_cache[z_name][:, :, HEAD]
    return z


with torch.inference_mode():
    by_hand = metric(model.run_with_hooks(ex.tokens, fwd_hooks=[(z_name, patch_one_head)]))
print(f"L{LAYER}H{HEAD} patched in: TL utility {float(via_tl[0]):+.4f}, hand-written hook {float(by_hand):+.4f}")

# %% [markdown]
# ## Patch every steered head, both directions
# `patch_steered_heads` runs the utility twice: steered -> unsteered (the clean cache is the steered run's) and
# unsteered -> steered (the utility runs inside `steer(...)`; its own hooks come and go, the steering stays).
# `recovered` = the fraction of the steering effect one head brings back on its own; `removed` = the fraction
# lost when only that head is reset. In fast mode we patch only a few candidate heads, pre-screened by how much
# steering changes their direct effect on the answer (a cheap proxy computed from two cached runs).

# %%
new_id = model.tokenizer.encode(task.answer(fact), add_special_tokens=False)[0]
old_id = model.tokenizer.encode(task.contrast(fact), add_special_tokens=False)[0]


def z_and_scale(name):
    return name.endswith("attn.hook_z") or name == "ln_final.hook_scale"


with torch.inference_mode():
    _, cache_unsteered = model.run_with_cache(ex.tokens, names_filter=z_and_scale)
    with steer(model, heads, ex.key_mask):
        _, cache_steered = model.run_with_cache(ex.tokens, names_filter=z_and_scale)
dla_unsteered = direct_logit_effect(model, cache_unsteered, new_id, old_id, pos=answer_pos)  # [layer, head]
dla_steered = direct_logit_effect(model, cache_steered, new_id, old_id, pos=answer_pos)
dla_change = dla_steered - dla_unsteered
if N_CANDIDATES is None:
    candidates = heads
else:
    candidates = sorted(heads, key=lambda lh: -abs(float(dla_change[lh])))[:N_CANDIDATES]

result = patch_steered_heads(model, ex, heads, metric, candidates=candidates)
print(f"metric unsteered {result.unsteered:+.3f}, steered {result.steered:+.3f}, effect {result.effect:+.3f}")
print("head     recovered  removed  (fraction of the effect)")
for head in result.ranked()[:10]:
    i = result.heads.index(head)
    print(f"L{head[0]}H{head[1]}    {float(result.recovered[i]):+.3f}    {float(result.removed[i]):+.3f}")
n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
plot_head_scores(result.grid(n_layers, n_heads, "recovered"), selected=result.heads,
                 title="Effect recovered by patching one steered head (grey: not patched)",
                 colorbar_label="fraction of effect",
                 path=OUT / "03_patching_recovered.png")

# %% [markdown]
# Each head alone brings back only part of the effect, and the parts need not add up: downstream layers read the
# upstream steered heads, so the heads' effects interact. Patching a growing set, best heads first, shows how many
# it takes (against a random order). Patching *all* steered heads' outputs reproduces the steered run exactly:
# every effect of steering goes through those outputs.

# %%
ranked = list(result.ranked())
rest = [h for h in heads if h not in ranked]
order = ranked + rest
generator = torch.Generator().manual_seed(0)
shuffled = [order[i] for i in torch.randperm(len(order), generator=generator).tolist()]
ks = sorted(set([0, len(ranked) // 2, len(ranked)] if FAST else range(len(ranked) + 1)) | {len(order)})
curve_ranked = cumulative_patching(model, ex, heads, order, metric, ks=ks)
curve_random = cumulative_patching(model, ex, heads, shuffled, metric, ks=ks)
plot_ablation({"best patched heads first": curve_ranked, "random order": curve_random},
              "number of steered heads patched into the unsteered run", OUT / "03_cumulative_patching.png",
              ylabel="log P(new) - log P(old)", title=f"{result.unsteered:+.2f} unsteered, "
                                                       f"{result.steered:+.2f} steered")
print("best first:", [(k, round(v, 2)) for k, v in curve_ranked])
print("random:    ", [(k, round(v, 2)) for k, v in curve_random])

# %% [markdown]
# ## Compare with head scores
# Scores that need no patching: the profiler's score (`pasta_lens.profile_heads`, here by gradient attribution
# on this one example: the first-order estimate of the metric change when the head *alone* is steered); the
# shipped profile's CounterFact score table, when the model has a profile (averaged over its own profiling
# examples); and how much steering raises the head's attention on the span. Rank correlation with `recovered`
# over the patched heads:

# %%
attribution = profile_heads(model, [ex], method="attribution", progress=False)
span = span_attention(model, ex, heads)
span_gain = span.steered - span.unsteered  # [layer, head]


def rank_correlation(a, b):
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


patched_idx = torch.tensor(result.heads)


def at_patched(table):
    return table[patched_idx[:, 0], patched_idx[:, 1]]


corr_profile = rank_correlation(result.recovered, at_patched(attribution.scores))
corr_span = rank_correlation(result.recovered, at_patched(span_gain))
corr_dla = rank_correlation(result.recovered, at_patched(dla_change))
print(f"rank correlation with recovered: profile score (attribution) {corr_profile:+.2f}, "
      f"span-mass gain {corr_span:+.2f}, direct-effect change {corr_dla:+.2f}")
shipped = find_profile(model)
if shipped is not None and "counterfact" in shipped[1].scores:
    corr_shipped = rank_correlation(result.recovered, at_patched(shipped[1].score_table("counterfact")))
    print(f"... and with the CounterFact scores of the shipped profile {shipped[0]} "
          f"({shipped[1].n_examples.get('counterfact')} examples): {corr_shipped:+.2f}")
plot_head_scores(attribution.scores, selected=result.ranked()[:3],
                 title="Attribution score; the 3 best patched heads", colorbar_label="est. metric change",
                 path=OUT / "03_attribution_scores.png")

# %% [markdown]
# ## The most important steered head up close
# What does it attend to from the answer position, without and with steering? And what does it write into the
# answer logit directly? `direct_logit_effect` projects each head's output at the last position through the
# final norm (with its cached scale) onto `W_U[:, new] - W_U[:, old]`. A head that, once steered, reads the
# new fact and writes the new answer's direction behaves like a "mover" head (as name movers in IOI do).

# %%
TOP = result.ranked()[0]
pattern_name = f"blocks.{TOP[0]}.attn.hook_pattern"
with torch.inference_mode():
    _, c0 = model.run_with_cache(ex.tokens, names_filter=pattern_name)
    with steer(model, heads, ex.key_mask):
        _, c1 = model.run_with_cache(ex.tokens, names_filter=pattern_name)
# the answer position's row; keys after it (the teacher-forced answer) get no attention under causal masking
row_before = c0[pattern_name][0, TOP[1], answer_pos, :n_prompt]
row_after = c1[pattern_name][0, TOP[1], answer_pos, :n_prompt]
plot_attention_row(str_tokens[:n_prompt], row_before, row_after, ex.key_mask[0], OUT / "03_top_head_row.png",
                   title=f"L{TOP[0]}H{TOP[1]} (most important steered head), query = answer position")
top_tokens = [(str_tokens[j], round(float(row_after[j]), 2)) for j in row_after.topk(3).indices.tolist()]
print(f"L{TOP[0]}H{TOP[1]} steered attends most to {top_tokens}")
print(f"of the row on the span: {float(row_before[ex.key_mask[0]].sum()):.2f} unsteered -> "
      f"{float(row_after[ex.key_mask[0]].sum()):.2f} steered")
for head in result.ranked()[:5]:
    print(f"L{head[0]}H{head[1]} direct effect on logit(new) - logit(old): "
          f"{float(dla_unsteered[head]):+.3f} unsteered -> {float(dla_steered[head]):+.3f} steered")
