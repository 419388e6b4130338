"""An independent reference for steered generation: an uncached greedy loop with PASTA as an additive term.

Every step runs the whole sequence (no KV cache, so every layer's scores hold every key, local layers included)
with a hook on ``blocks.L.attn.hook_attn_scores`` that adds ``e(q) * log(alpha)`` to the steered heads' scaled
prompt keys, the official code's form. ``e(q)`` is the schedule's exponent for the query at absolute position
``q``, restated here from the schedule table (:mod:`pasta_lens.schedule`'s docstring), not imported: generated
token ``t`` (``t = q - n_prompt + 1``, 0 on prompt rows) has ``all``: 1, ``prompt``: 1 if ``t == 0``,
``first:N``: 1 if ``t <= N``, ``decay:G``: ``G ** t``. Nothing here calls pasta_lens' steering code.
"""

import math

import torch


def exponent(position, n_prompt, schedule="all"):
    t = max(0, position - n_prompt + 1)
    kind, _, value = schedule.partition(":")
    if kind == "all":
        return 1.0
    if kind == "prompt":
        return 1.0 if t == 0 else 0.0
    if kind == "first":
        return 1.0 if t <= int(value) else 0.0
    if kind == "decay":
        return float(value) ** t
    raise ValueError(schedule)


def reference_hooks(alphas, key_mask, schedule="all", scale_position="exclude"):
    """``[(hook_attn_scores name, hook)]`` adding ``e(q) * log(alpha)`` for ``alphas = {(layer, head): alpha}``."""
    n_prompt = key_mask.shape[1]
    scaled = (~key_mask if scale_position == "exclude" else key_mask).float()
    by_layer = {}
    for (layer, head), alpha in alphas.items():
        by_layer.setdefault(layer, []).append((head, alpha))

    def make(items):
        def hook(scores, hook):
            n = scores.shape[-1]
            assert scores.shape[-2] == n, "the reference runs uncached: every query row and key of the sequence"
            e = torch.tensor([exponent(q, n_prompt, schedule) for q in range(n)], dtype=torch.float32)
            out = scores.clone()
            for head, alpha in items:
                bias = torch.zeros(scores.shape[0], n, n)
                bias[:, :, :n_prompt] = e[None, :, None] * scaled[:, None, :] * math.log(alpha)
                out[:, head] = out[:, head] + bias.to(scores.dtype)
            return out
        return hook

    return [(f"blocks.{layer}.attn.hook_attn_scores", make(items)) for layer, items in sorted(by_layer.items())]


def reference_generate(model, tokens, attention_mask, hooks, max_new_tokens):
    """Greedy, uncached: each step runs the whole (left-padded) sequence with ``hooks``; the new tokens."""
    n = tokens.shape[1]
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model.run_with_hooks(tokens, attention_mask=attention_mask, fwd_hooks=hooks)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
    return tokens[:, n:]
