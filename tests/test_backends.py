"""The two backends: TransformerBridge and HookedTransformer of the same weights agree, and pasta_lens treats them alike.

Tiny random models (seconds). The hooked cases need TransformerLens 3.x: skipped on 4.x, required (a skip is a
failure) in the TL 3.9 world of ``make test``; see tests/conftest.py.
"""

import pytest
import torch

from pasta_lens import emphasize, load_model, steer
from pasta_lens.backends import BACKENDS, available_backends, backend_of, generate_padding_kwargs
from pasta_lens.generation import generate_tokens
from tests.conftest import require_backend
from tests.tiny import tiny_hf_model, tiny_model

PROMPTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is", "*Two* spans"]
HEADS = [(0, 1), (1, 0), (1, 3)]


def test_the_installed_transformer_lens_has_the_bridge():
    assert "bridge" in available_backends()
    assert set(available_backends()) <= set(BACKENDS)


def test_bad_backend_names_the_choices():
    with pytest.raises(ValueError, match="backend must be one of"):
        load_model("smollm2-135m-instruct", backend="hf")
    with pytest.raises(ValueError, match="backend='hooked'"):
        load_model("smollm2-135m-instruct", processing=True)


def test_hooked_on_transformer_lens_4_names_the_version():
    if "hooked" in available_backends():
        pytest.skip("TransformerLens 3.x is installed: HookedTransformer exists (this checks the 4.x error)")
    with pytest.raises(ImportError, match=r"transformer-lens==3\.9\.0"):
        load_model("smollm2-135m-instruct", backend="hooked")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_backend_of(arch, backend):
    assert backend_of(tiny_model(arch, backend=backend)) == backend


@pytest.mark.parametrize("processing", [False, True])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hooked_and_bridge_give_the_same_log_probs(arch, processing):
    """Ground truth: a second, untouched copy of the Hugging Face model (same seed, same weights)."""
    require_backend("hooked")
    hooked = tiny_model(arch, backend="hooked", processing=processing)
    bridge = tiny_model(arch)
    hf, _ = tiny_hf_model(arch)
    for prompt in PROMPTS:  # one row each: HF GPT-2 does not shift positions for left padding, TL does
        tokens = emphasize(bridge, prompt).tokens
        with torch.inference_mode():
            ref = hf(tokens).logits.log_softmax(-1)
            for model in (hooked, bridge):
                assert (model(tokens).log_softmax(-1) - ref).abs().max() < 1e-4
    if processing:  # processing really rewrote the weights (else this test would not test it)
        assert not torch.allclose(hooked.W_U, tiny_model(arch, backend="hooked").W_U)


def test_hooked_generate_needs_left_padding_told(llama):
    """Without padding_side='left' HookedTransformer masks nothing at the left: the fix is load-bearing."""
    require_backend("hooked")
    hooked = tiny_model("llama", backend="hooked")
    em = emphasize(hooked, PROMPTS)
    assert not bool(em.attention_mask.bool().all())
    with torch.inference_mode():
        naive = hooked.generate(em.tokens, max_new_tokens=6, do_sample=False, prepend_bos=False, verbose=False,
                                stop_at_eos=False, padding_side="right")[:, em.tokens.shape[1]:]
    ours = generate_tokens(hooked, em, 6, stop_at_eos=False)
    alone = [generate_tokens(hooked, emphasize(hooked, p), 6, stop_at_eos=False)[0] for p in PROMPTS]
    assert all(torch.equal(ours[i], alone[i]) for i in range(len(PROMPTS)))
    assert not all(torch.equal(naive[i], alone[i]) for i in range(len(PROMPTS)))


def test_hooked_padding_that_pad_tokens_cannot_express_is_refused():
    require_backend("hooked")
    hooked = tiny_model("llama", backend="hooked")
    em = emphasize(hooked, PROMPTS[:2])
    bad = em.tokens.clone()
    bad[1, 0] = 5  # a padded position that does not hold the pad token
    with pytest.raises(ValueError, match="pad token"):
        generate_padding_kwargs(hooked, bad, em.attention_mask)
    assert generate_padding_kwargs(tiny_model("llama"), bad, em.attention_mask) == {"attention_mask":
                                                                                      em.attention_mask}


def test_steered_generation_is_the_same_on_both_backends():
    require_backend("hooked")
    results = []
    for backend in BACKENDS:
        model = tiny_model("llama", backend=backend)
        em = emphasize(model, PROMPTS)
        with steer(model, HEADS, em, 0.01):
            results.append(generate_tokens(model, em, 8, stop_at_eos=False))
    assert torch.equal(results[0], results[1])
