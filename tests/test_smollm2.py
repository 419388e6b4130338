"""Integration tests on the real offline model, SmolLM2-135M-Instruct (30 layers x 9 heads, 3 KV heads)."""

import pytest
import torch

from pasta_lens import emphasize, generate, pasta_hooks, steer
from pasta_lens.generation import generate_tokens
from tests.reference import additive_reference_hooks

pytestmark = pytest.mark.slow
PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.*"


def test_loads_offline(smollm2):
    assert (smollm2.cfg.n_layers, smollm2.cfg.n_heads, smollm2.cfg.n_key_value_heads) == (30, 9, 3)
    assert not smollm2.training


def test_chat_template_emphasis(smollm2):
    em = emphasize(smollm2, PROMPT, chat=True)
    assert em.text.startswith("<|im_start|>system") and em.text.endswith("<|im_start|>assistant\n")
    ids = em.tokens[0].tolist()
    assert ids[0] == 1 and ids[1] != 1  # <|im_start|> once: no doubled BOS
    assert smollm2.tokenizer.decode(em.tokens[0, em.key_mask[0]]).strip() == "Answer in JSON."
    assert torch.equal(em.tokens, smollm2.to_tokens(em.text, prepend_bos=False))


def test_parity_with_additive_reference(smollm2):
    em = emphasize(smollm2, [PROMPT, "The capital of *France* is"], chat=True)
    heads = [(20, 0), (20, 3), (21, 5), (25, 8), (5, 2)]
    with torch.inference_mode():
        ours = smollm2.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                      fwd_hooks=pasta_hooks(heads, em, 0.01))
        ref = smollm2.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                     fwd_hooks=additive_reference_hooks(heads, em.key_mask, 0.01))
        plain = smollm2(em.tokens, attention_mask=em.attention_mask)
    real = em.attention_mask.bool()
    assert (ours - ref).abs()[real].max() <= 1e-4
    assert (ours - plain).abs()[real].max() > 0.1


def test_cached_equals_uncached_and_steering_changes_the_answer(smollm2):
    em = emphasize(smollm2, PROMPT, chat=True)
    heads = {layer: range(9) for layer in range(20, 30)}
    with steer(smollm2, heads, em):
        cached = generate_tokens(smollm2, em, 16, stop_at_eos=False)
        uncached = generate_tokens(smollm2, em, 16, use_past_kv_cache=False, stop_at_eos=False)
    assert torch.equal(cached, uncached)
    assert generate(smollm2, PROMPT, heads, chat=True, max_new_tokens=16) != generate(
        smollm2, PROMPT, chat=True, max_new_tokens=16, steered=False)


def test_readme_demo_claim(smollm2, capsys):
    """`make demo` as the Makefile types it: unsteered the model answers "guitar", steered (shipped profile) "piano",
    as the README says."""
    import re
    import shlex
    from pathlib import Path

    from pasta_lens.cli import main

    repo = Path(__file__).resolve().parents[1]
    (line,) = [ln for ln in (repo / "Makefile").read_text().splitlines() if "pasta-lens steer" in ln]
    argv = shlex.split(line.split("pasta-lens", 1)[1])
    prompt = argv[1]
    assert f"`{prompt}`" in " ".join((repo / "README.md").read_text().split())  # the README quotes this prompt
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"heads: \d+ \(profile 'smollm2-135m-instruct'\)", out), out
    assert "schedule: prompt" in out, out  # the shipped profile is steered with the schedule it was chosen with
    assert "alpha: per head, 0.01-" in out, out  # ... and at its learned per-head alphas, not a blanket 0.01
    unsteered = out.split("=== unsteered ===\n", 1)[1].split("=== steered ===\n")[0]
    steered = out.split("=== steered ===\n", 1)[1]
    first_word = lambda s: re.findall(r"[A-Za-z]+", s)[0].lower()  # noqa: E731
    assert (first_word(unsteered), first_word(steered)) == ("guitar", "piano"), out


def test_default_profile_is_used_at_its_own_alphas_everywhere(smollm2):
    """With no heads given, generation and the attention analysis steer the shipped profile's heads at its learned
    per-head alphas (as steer(model, profile, em) does), not its heads at a blanket 0.01."""
    from pasta_lens import emphasize, generate, load_profile
    from pasta_lens.analysis import span_attention

    profile = load_profile("smollm2-135m-instruct")
    assert profile.head_alphas and len(set(profile.head_alphas.values())) > 1
    text = "Maria Lopez is a nurse. *Answer the occupation of Maria Lopez in json format.*"
    assert generate(smollm2, text, chat=True, max_new_tokens=16) == generate(smollm2, text, profile, chat=True,
                                                                            max_new_tokens=16)
    em = emphasize(smollm2, text, chat=True)
    by_default, explicit = span_attention(smollm2, em), span_attention(smollm2, em, profile)
    assert torch.equal(by_default.steered, explicit.steered)
    blanket = span_attention(smollm2, em, profile.heads, alpha=0.01)
    assert not torch.equal(blanket.steered, explicit.steered)
