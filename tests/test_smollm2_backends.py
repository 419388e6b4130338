"""SmolLM2-135M-Instruct on both backends (slow): same logits, and PASTA's invariants hold on the HookedTransformer.

The HookedTransformer cases need TransformerLens 3.x (skipped on 4.x; required in ``make test-tl3``).
"""

import pytest
import torch

from pasta_lens import emphasize, load_model, pasta_hooks, steer
from pasta_lens.generation import generate_tokens
from tests.conftest import require_backend
from tests.reference import additive_reference_hooks

pytestmark = pytest.mark.slow
PROMPTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is"]
HEADS = [(20, 0), (20, 3), (21, 5), (25, 8), (5, 2)]
LOGPROB_ATOL = 1e-3
"""Bridge vs HookedTransformer, fp32: measured max |delta log-prob| 2.3e-5 unprocessed (NOTES) - see the test."""


@pytest.mark.parametrize("processing", [False, True])
def test_both_backends_give_the_same_next_token_log_probs(smollm2, processing):
    require_backend("hooked")
    hooked = load_model("smollm2-135m-instruct", backend="hooked", processing=processing)
    assert (hooked.cfg.n_layers, hooked.cfg.n_heads, hooked.cfg.n_key_value_heads) == (30, 9, 3)
    em = emphasize(smollm2, PROMPTS, chat=True)
    real = em.attention_mask.bool()
    with torch.inference_mode():
        ref = smollm2(em.tokens, attention_mask=em.attention_mask)
        out = hooked(em.tokens, attention_mask=em.attention_mask)
    # Log-probs: center_unembed (processing) shifts each position's logits by a constant.
    delta = (out.log_softmax(-1) - ref.log_softmax(-1)).abs()[real].max()
    assert delta < LOGPROB_ATOL, float(delta)
    if not processing:  # unprocessed, the logits themselves agree
        assert (out - ref).abs()[real].max() < LOGPROB_ATOL
    assert torch.equal(out[:, -1].argmax(-1), ref[:, -1].argmax(-1))


def test_hooked_parity_with_additive_reference(smollm2_hooked):
    model = smollm2_hooked
    em = emphasize(model, PROMPTS, chat=True)
    with torch.inference_mode():
        ours = model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                    fwd_hooks=pasta_hooks(HEADS, em, 0.01))
        ref = model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                   fwd_hooks=additive_reference_hooks(HEADS, em.key_mask, 0.01))
        plain = model(em.tokens, attention_mask=em.attention_mask)
    real = em.attention_mask.bool()
    assert (ours - ref).abs()[real].max() <= 1e-4
    assert (ours - plain).abs()[real].max() > 0.1


def test_hooked_cached_equals_uncached_and_batch_equals_rows(smollm2_hooked):
    model = smollm2_hooked
    em = emphasize(model, PROMPTS, chat=True)
    assert not bool(em.attention_mask.bool().all())  # really left-padded
    heads = {layer: range(9) for layer in range(20, 30)}
    with steer(model, heads, em):
        cached = generate_tokens(model, em, 6, stop_at_eos=False)
        uncached = generate_tokens(model, em, 6, use_past_kv_cache=False, stop_at_eos=False)
    assert torch.equal(cached, uncached)
    for row, prompt in enumerate(PROMPTS):
        alone = emphasize(model, prompt, chat=True)
        with steer(model, heads, alone):
            assert torch.equal(generate_tokens(model, alone, 6, stop_at_eos=False)[0], cached[row]), row
    with torch.inference_mode():
        plain = generate_tokens(model, em, 6, stop_at_eos=False)
    assert not torch.equal(plain, cached)


def test_steered_generation_agrees_across_backends(smollm2, smollm2_hooked):
    em = emphasize(smollm2, PROMPTS, chat=True)
    outs = []
    for model in (smollm2, smollm2_hooked):
        with steer(model, HEADS, em):
            outs.append(generate_tokens(model, em, 6, stop_at_eos=False))
    assert torch.equal(outs[0], outs[1])
