"""PASTA steering composes with SAELens: a HookedSAETransformer with an SAE attached, steered by pasta_hooks.

SAELens needs TransformerLens < 4, so this runs in the TL 3.9 world of ``make test`` (``.venv-tl3``, where a skip is
a failure); on TL 4.x it is skipped. Everything is built here: a tiny ``HookedSAETransformer`` from a
``HookedTransformerConfig`` and a randomly initialised ``StandardSAE`` on ``blocks.1.hook_resid_pre`` (no download).

What is checked, with numbers: the SAE changes the logits; the steering changes them with the SAE attached and
equals the independent additive log(alpha) reference there too; the SAE's feature activations under steering are
the SAE's own encoding of the steered residual stream (computed without the SAE), and differ from the unsteered
ones.
"""

import pytest
import torch

from pasta_lens import emphasize, pasta_hooks, steer
from tests.conftest import require_module
from tests.reference import additive_reference_hooks
from tests.tiny import tiny_tokenizer

HOOK = "blocks.1.hook_resid_pre"
HEADS = [(0, 1), (0, 3), (1, 2)]  # layer 0 feeds the SAE's input; layer 1 reads its output
PROMPTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is Paris."]


@pytest.fixture(scope="module")
def sae_model():
    require_module("sae_lens", "SAELens composes with pasta_lens on TransformerLens 3.9")
    from sae_lens import HookedSAETransformer, StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformerConfig

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, n_ctx=128,
                                  d_vocab=len(tok), act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedSAETransformer(cfg, tokenizer=tok).eval()
    with torch.no_grad():  # peaked attention (random init is near-uniform), so steering has something to move
        for block in model.blocks:
            block.attn.W_Q.mul_(8.0)
            block.attn.W_K.mul_(8.0)
    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=96, metadata=SAEMetadata(hook_name=HOOK))).eval()
    model.add_sae(sae)
    yield model, sae
    model.reset_saes()


def _logits(model, em, hooks=()):
    with torch.inference_mode():
        return model.run_with_hooks(em.tokens, attention_mask=em.attention_mask, fwd_hooks=list(hooks))


def test_sae_and_steering_both_take_effect(sae_model):
    model, sae = sae_model
    assert model.acts_to_saes == {HOOK: sae}
    em = emphasize(model, PROMPTS)
    real = em.attention_mask.bool()
    with_sae = _logits(model, em)
    steered = _logits(model, em, pasta_hooks(HEADS, em, 0.01))
    reference = _logits(model, em, additive_reference_hooks(HEADS, em.key_mask, 0.01))
    model.reset_saes()
    try:
        without_sae = _logits(model, em)
        steered_without_sae = _logits(model, em, pasta_hooks(HEADS, em, 0.01))
    finally:
        model.add_sae(sae)
    assert (with_sae - without_sae).abs()[real].max() > 0.05      # the SAE's reconstruction is in the path
    assert (steered - with_sae).abs()[real].max() > 0.05          # the steering is too
    assert (steered - reference).abs()[real].max() < 1e-4         # and it is PASTA, with the SAE attached
    assert (steered - steered_without_sae).abs()[real].max() > 0.05


def test_run_with_cache_returns_sae_features_under_steering(sae_model):
    model, sae = sae_model
    em = emphasize(model, PROMPTS)
    acts = f"{HOOK}.hook_sae_acts_post"
    with torch.inference_mode():
        with steer(model, HEADS, em, 0.01):
            _, cache = model.run_with_cache(em.tokens, attention_mask=em.attention_mask)
        _, plain = model.run_with_cache(em.tokens, attention_mask=em.attention_mask)
        # Ground truth another way: the SAE's encoding of the steered residual stream, taken with no SAE attached.
        model.reset_saes()
        try:
            with steer(model, HEADS, em, 0.01):
                _, bare = model.run_with_cache(em.tokens, attention_mask=em.attention_mask,
                                               names_filter=HOOK)
        finally:
            model.add_sae(sae)
        expected = sae.encode(bare[HOOK])
    real = em.attention_mask.bool()
    assert cache[acts].shape == (2, em.tokens.shape[1], 96)
    assert torch.allclose(cache[acts][real], expected[real], atol=1e-5)
    assert (cache[acts] - plain[acts])[real].abs().max() > 1e-3  # steering moved the features
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"].sum(-1).transpose(1, 2)[real], torch.ones(()), atol=1e-5)
