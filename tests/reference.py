"""An independent reference for PASTA: the official code's additive log(alpha) on the pre-softmax scores.

The official PASTA implementation adds ``log(alpha)`` to the attention mask of every prompt key outside the
emphasised span, for the steered heads, before the softmax. Here that is a hook on ``hook_attn_scores``; it shares
no code with pasta_lens.steering or pasta_lens.kernels.
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


# --- The official JSON metrics, copied from pastalib 0.1.3 (evaluation/evaluator.py, InstructionEvaluator;
# MIT licence, Copyright (c) 2023 Qingru Zhang; https://github.com/QingruZhang/PASTA). Copied because that
# module imports spacy and scikit-learn, which the tests do not install; only the whitespace is changed.
def _all_substring_index(string, substring):
    return [i for i in range(len(string)) if string.startswith(substring, i)]


def official_json_em(generation):
    """pastalib's ``evaluate_json_EM``: some substring from a '{' to a '}' loads as JSON (the paper's F.Acc)."""
    import json

    generation = generation.strip()
    if "{" not in generation and "}" not in generation:
        return False
    for beg in _all_substring_index(generation, "{"):
        for end in _all_substring_index(generation, "}"):
            try:
                json.loads(generation[beg:end + 1])
                return True
            except ValueError:
                continue
    return False


def official_json_pred(generation, target):
    """pastalib's ``evaluate_json_pred``: a loaded object's (lower-cased) string value contains the target."""
    import json

    generation = generation.strip()
    if "{" not in generation and "}" not in generation:
        return False
    for beg in _all_substring_index(generation, "{"):
        for end in _all_substring_index(generation, "}"):
            try:
                pred = json.loads(generation[beg:end + 1])
                values = [p.lower() if isinstance(p, str) else p for p in pred.values()]
                if target.lower() in values:
                    return True
                for value in values:
                    if isinstance(value, str) and target.lower() in value:
                        return True
            except ValueError:
                continue
    return False
