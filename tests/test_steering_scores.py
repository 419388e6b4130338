"""The additive variant (``where="scores"``: log(alpha) on hook_attn_scores) against the hook_pattern default."""

import pytest
import torch

from pasta_lens import emphasize, pasta_hooks, steer
from pasta_lens.generation import generate_tokens
from pasta_lens.steering import scores_hooks

TEXTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is"]
HEADS = [(0, 1), (1, 0), (1, 3)]


def _logits(model, em, hooks):
    with torch.inference_mode():
        return model.run_with_hooks(em.tokens, attention_mask=em.attention_mask, fwd_hooks=hooks)


@pytest.mark.parametrize("scale_position", ["exclude", "include"])
def test_scores_variant_equals_pattern_variant(tiny, scale_position):
    em = emphasize(tiny, TEXTS)  # a left-padded batch
    alpha = {(0, 1): 0.01, (1, 0): 0.2, (1, 3): 0.05}
    pattern = _logits(tiny, em, pasta_hooks(HEADS, em, alpha, scale_position))
    scores = _logits(tiny, em, pasta_hooks(HEADS, em, alpha, scale_position, where="scores"))
    plain = _logits(tiny, em, [])
    real = em.attention_mask.bool()
    assert (pattern - scores).abs()[real].max() <= 1e-4
    assert (pattern - plain).abs()[real].max() > 0.1


def test_scores_variant_pattern_rows_and_untouched_heads(llama):
    em = emphasize(llama, TEXTS[0])
    seen = {}
    record = ("blocks.1.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p.clone()))
    with torch.inference_mode():
        _, plain = llama.run_with_cache(em.tokens)
        # only layer 1 steered, so its input is the unsteered run's
        llama.run_with_hooks(em.tokens, fwd_hooks=scores_hooks(HEADS[1:], em) + [record])
    steered, unsteered = seen["p"], plain["blocks.1.attn.hook_pattern"]
    assert torch.allclose(steered.sum(-1), torch.ones_like(steered.sum(-1)), atol=1e-5)
    for head in (1, 2):  # not steered in layer 1: bit-identical
        assert torch.equal(steered[:, head], unsteered[:, head])
    (_, pattern_hook), = pasta_hooks(HEADS[1:], em)
    expected = pattern_hook(unsteered, None)
    assert torch.allclose(steered, expected, atol=1e-5)


def test_scores_variant_cached_equals_uncached_and_batch_equals_rows(llama):
    em = emphasize(llama, TEXTS)
    with steer(llama, HEADS, em, where="scores"):
        cached = generate_tokens(llama, em, 8, stop_at_eos=False)
        uncached = generate_tokens(llama, em, 8, use_past_kv_cache=False, stop_at_eos=False)
    with steer(llama, HEADS, em):
        by_pattern = generate_tokens(llama, em, 8, stop_at_eos=False)
    assert torch.equal(cached, uncached) and torch.equal(cached, by_pattern)
    for row, text in enumerate(TEXTS):
        single = emphasize(llama, text)
        with steer(llama, HEADS, single, where="scores"):
            assert torch.equal(generate_tokens(llama, single, 8, stop_at_eos=False)[0], cached[row])


def test_bad_where_names_the_choices(llama):
    with pytest.raises(ValueError, match="'pattern'.*'scores'"):
        pasta_hooks(HEADS, emphasize(llama, TEXTS[0]), where="mask")


@pytest.mark.slow
def test_scores_variant_on_smollm2(smollm2):
    em = emphasize(smollm2, TEXTS, chat=True)
    heads = [(20, 0), (20, 3), (21, 5), (25, 8), (5, 2)]
    pattern = _logits(smollm2, em, pasta_hooks(heads, em))
    scores = _logits(smollm2, em, pasta_hooks(heads, em, where="scores"))
    assert (pattern - scores).abs()[em.attention_mask.bool()].max() <= 1e-4
