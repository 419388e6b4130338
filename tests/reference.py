"""An independent reference for PASTA: the official code's additive log(alpha) on the pre-softmax scores.

The official PASTA implementation adds ``log(alpha)`` to the attention mask of every prompt key outside the
emphasised span, for the steered heads, before the softmax. Here that is a hook on ``hook_attn_scores``; it shares
no code with pasta_lens.steering.
"""

import math

import torch


def additive_reference_hooks(heads, key_mask, alpha, scale_position="exclude"):
    by_layer = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def make(hs):
        def hook(scores, hook):
            n_prompt = key_mask.shape[1]
            penalised = ~key_mask if scale_position == "exclude" else key_mask
            bias = torch.zeros(key_mask.shape[0], scores.shape[-1], dtype=scores.dtype)
            bias[:, :n_prompt] = penalised.to(scores.dtype) * math.log(alpha)
            scores = scores.clone()
            for h in hs:
                scores[:, h] = scores[:, h] + bias[:, None, :]
            return scores
        return hook

    return [(f"blocks.{layer}.attn.hook_attn_scores", make(hs)) for layer, hs in sorted(by_layer.items())]
