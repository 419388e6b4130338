"""Generation in the less-trodden modes: ``scale_position="include"`` (suppress the span) and a bf16 model.

Ground truth comes from elsewhere: decode-step patterns are compared with the additive log(alpha) reference
(``tests/reference.py``) run uncached on the whole generated sequence, and the bf16 model with the same weights in
fp32.
"""

import pytest
import torch

from pasta_lens import emphasize, generate, steer
from pasta_lens.generation import decode_new, generate_tokens
from tests.reference import additive_reference_hooks
from tests.tiny import tiny_hf_model, tiny_model

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."
HEADS = [(0, 1), (1, 0), (1, 3)]
N_NEW = 8


def recorded_patterns(model, layers):
    """Hooks that keep every pattern of ``layers`` they see (added after steering's, so they see its output)."""
    seen = {layer: [] for layer in layers}

    def make(layer):
        def hook(pattern, hook):
            seen[layer].append(pattern.detach().clone())
        return hook

    return [(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in layers], seen


def full_patterns(model, tokens, hooks=()):
    with torch.inference_mode(), model.hooks(fwd_hooks=list(hooks)):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    return cache


# --- scale_position="include" -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_include_generation_matches_the_reference_step_by_step(arch):
    model = tiny_model(arch)
    em = emphasize(model, PROMPT)
    n = em.tokens.shape[1]
    layers = sorted({layer for layer, _ in HEADS})
    record, seen = recorded_patterns(model, layers)
    with steer(model, HEADS, em, 0.01, scale_position="include"):
        with model.hooks(fwd_hooks=record):
            new = generate_tokens(model, em, N_NEW, stop_at_eos=False)
        uncached = generate_tokens(model, em, N_NEW, stop_at_eos=False, use_past_kv_cache=False)
    assert torch.equal(new, uncached)  # KV-cached == uncached in include mode too
    with steer(model, HEADS, em, 0.01, scale_position="exclude"):
        excluded = generate_tokens(model, em, N_NEW, stop_at_eos=False)
    assert not torch.equal(new, excluded)  # include is another intervention, not a synonym

    # every step's (cached) pattern equals the additive reference on the whole sequence, run uncached
    tokens = torch.cat([em.tokens, new[:, :-1]], dim=1)
    ref = full_patterns(model, tokens, additive_reference_hooks(HEADS, em.key_mask, 0.01, "include"))
    plain = full_patterns(model, tokens)
    for layer in layers:
        steps = seen[layer]
        assert len(steps) == N_NEW and steps[0].shape[-2:] == (n, n)
        want = ref[f"blocks.{layer}.attn.hook_pattern"]
        torch.testing.assert_close(steps[0], want[:, :, :n, :n], atol=1e-5, rtol=0)
        for i, step in enumerate(steps[1:], start=1):
            torch.testing.assert_close(step[:, :, 0], want[:, :, n + i - 1, :n + i], atol=1e-5, rtol=0)
        # suppressing the span: the steered heads' queries (prompt and generated) put less mass on it
        first = int(em.key_mask[0].nonzero()[0])
        mask = em.key_mask[0]
        unsteered = plain[f"blocks.{layer}.attn.hook_pattern"]
        for head in [h for lay, h in HEADS if lay == layer]:
            got = want[0, head, first:, :n][:, mask].sum(-1)
            before = unsteered[0, head, first:, :n][:, mask].sum(-1)
            assert bool((got < before).all()), (layer, head)


def test_generate_passes_scale_position(llama):
    em = emphasize(llama, PROMPT)
    with steer(llama, HEADS, em, 0.01, scale_position="include"):
        by_hand = decode_new(llama, generate_tokens(llama, em, N_NEW))[0]
    include = generate(llama, PROMPT, HEADS, scale_position="include", max_new_tokens=N_NEW)
    assert include == by_hand
    assert include != generate(llama, PROMPT, HEADS, max_new_tokens=N_NEW)


# --- a bf16 model end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_bf16():
    """The tiny Llama's weights in bf16 (its own copy: the cached fp32 model is not touched)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf, tok = tiny_hf_model("llama")
    model = TransformerBridge.boot_transformers("tiny-llama-bf16", hf_model=hf.to(torch.bfloat16), tokenizer=tok)
    model.eval()
    assert next(model.parameters()).dtype == torch.bfloat16
    return model


def test_bf16_model_end_to_end(llama_bf16, llama):
    em = emphasize(llama_bf16, PROMPT)
    n = em.tokens.shape[1]
    layers = sorted({layer for layer, _ in HEADS})
    record, seen = recorded_patterns(llama_bf16, layers)
    with steer(llama_bf16, HEADS, em):
        with llama_bf16.hooks(fwd_hooks=record):
            new = generate_tokens(llama_bf16, em, N_NEW, stop_at_eos=False)
        uncached = generate_tokens(llama_bf16, em, N_NEW, stop_at_eos=False, use_past_kv_cache=False)
    assert torch.equal(new, uncached)
    # steered patterns stay bf16 and every row still sums to 1 (bf16 has 8 mantissa bits: eps 2**-8 ~ 0.004;
    # measured max error 0.0022 on this prompt)
    for layer in layers:
        assert [tuple(p.shape[-2:]) for p in seen[layer]] == [(n, n)] + [(1, n + i) for i in range(1, N_NEW)]
        for pattern in seen[layer]:
            assert pattern.dtype == torch.bfloat16
            assert float((pattern.float().sum(-1) - 1).abs().max()) < 1e-2
    text = generate(llama_bf16, PROMPT, HEADS, max_new_tokens=N_NEW)
    assert isinstance(text, str) and text == decode_new(llama_bf16, generate_tokens_steered(llama_bf16, em))[0]

    # the same steering on the fp32 weights: same span mass at the steered heads and the same logit change,
    # to bf16 precision (measured: mass within 0.002, logit-change correlation 0.9998, log-probs within 0.008)
    def steered_and_change(model):
        e = emphasize(model, PROMPT)
        with torch.inference_mode():
            base = model(e.tokens).float()
            with steer(model, HEADS, e):
                logits, cache = model.run_with_cache(e.tokens, names_filter=lambda nm: nm.endswith("hook_pattern"))
        mass = torch.stack([cache[f"blocks.{lay}.attn.hook_pattern"][0, h][:, e.key_mask[0]].sum(-1).float()
                            for lay, h in HEADS])
        return logits.float(), logits.float() - base, mass

    l16, d16, m16 = steered_and_change(llama_bf16)
    l32, d32, m32 = steered_and_change(llama)
    assert float((m16 - m32).abs().max()) < 0.02
    assert float(torch.corrcoef(torch.stack([d16.flatten(), d32.flatten()]))[0, 1]) > 0.99
    assert float((l16.log_softmax(-1) - l32.log_softmax(-1)).abs().max()) < 0.05
    assert float(d32.abs().max()) > 0.1  # steering changes the logits: the comparison is not vacuous


def generate_tokens_steered(model, em):
    with steer(model, HEADS, em):
        return generate_tokens(model, em, N_NEW)
