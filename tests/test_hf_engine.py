"""The HF engine (:mod:`pasta_lens.hf_engine`): steered generation on a plain twin of the bridge's weights.

What must hold for ``generate(engine="auto")`` to take it: the additive mask bias is the ``hook_pattern`` edit
(every schedule, both scale positions, per-head alphas), the twin computes the bridge's logits on the bridge's own
tensors without touching the bridge, its tokens equal TransformerLens' steered ``generate`` (cached and
uncached, left-padded batches, batch == rows alone), and ``auto`` falls back to the bridge whenever a hook of the
user's must fire.
"""

import pytest
import torch

from pasta_lens import emphasize, generate, steer
from pasta_lens.generation import decode_new, generate_tokens
from pasta_lens.hf_engine import hf_engine_unavailable, hf_generate_tokens, hf_twin, mask_bias, prompt_log_weights
from pasta_lens.schedule import Schedule
from pasta_lens.kernels import key_weights, scheduled_rescale
from pasta_lens.plan import plan_from_spec

TEXTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is"]
HEADS = [(0, 1), (1, 0), (1, 3)]
SCHEDULES = ["all", "prompt", "first:2", "decay:0.5"]
bridge_only = pytest.mark.parametrize("backend", ["bridge"], indirect=True)
# The twin covers bridges that keep HF's parameter names (Llama-family); GPT-2's bridge renames c_attn to qkv.


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("scale_position", ["exclude", "include"])
@pytest.mark.parametrize("n_queries", [7, 1])  # a prefill block and a KV-cached decode row
def test_mask_bias_is_the_pattern_edit(schedule, scale_position, n_queries):
    torch.manual_seed(0)
    batch, n_heads, n_prompt, n_keys = 2, 4, 6, 9
    key_mask = torch.zeros(batch, n_prompt, dtype=torch.bool)
    key_mask[0, 2:4], key_mask[1, 1] = True, True
    causal = torch.full((n_queries, n_keys), torch.finfo(torch.float32).min).triu(n_keys - n_queries + 1)
    scores = torch.randn(batch, n_heads, n_queries, n_keys)
    heads, alphas = [1, 3], [0.01, 0.2]
    sched = Schedule.parse(schedule)

    log_w = prompt_log_weights(key_mask, heads, alphas, n_heads, scale_position)
    exponents = sched.exponents(torch.arange(n_keys - n_queries, n_keys), n_prompt)
    bias = mask_bias(log_w, exponents, n_keys)
    additive = torch.softmax(scores + causal + bias, dim=-1)
    pattern = torch.softmax(scores + causal, dim=-1)
    weights = key_weights(key_mask, n_keys, torch.tensor(alphas), scale_position)
    edited = pattern.clone()
    edited[:, heads] = scheduled_rescale(pattern[:, heads], weights, sched, n_prompt)

    torch.testing.assert_close(additive, edited, rtol=1e-5, atol=1e-6)
    assert torch.equal(bias[:, [0, 2]], torch.zeros_like(bias[:, [0, 2]]))  # unsteered heads: exactly 0
    # The decode row (position 8) is generated token 3's: steered by all and decay only, and exactly untouched
    # (bias 0, bit-identical softmax) under prompt and first:2.
    row_steered = n_queries > 1 or schedule in ("all", "decay:0.5")
    assert torch.equal(additive, pattern) != row_steered


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n_queries,n_keys", [(6, 6), (1, 7), (1, 9), (1, 12)])  # prefill, decode, past n_keys_max
def test_pre_hook_adds_mask_bias(schedule, n_queries, n_keys):
    """The hook's prompt term, built once and sliced per call, gives ``mask + mask_bias`` at every step, also for
    a key count beyond the one it was sized for; a row that is not steered keeps the very mask object."""
    from pasta_lens.hf_engine import _steering_pre_hook

    torch.manual_seed(0)
    batch, n_heads, n_prompt = 2, 4, 6
    key_mask = torch.zeros(batch, n_prompt, dtype=torch.bool)
    key_mask[0, 2:4], key_mask[1, 1] = True, True
    heads, alphas, sched = [1, 3], [0.01, 0.2], Schedule.parse(schedule)
    hook = _steering_pre_hook(0, key_mask, heads, alphas, n_heads, "exclude", sched, n_keys_max=9)
    mask = torch.randn(batch, 1, n_queries, n_keys)
    _, kwargs = hook(None, (), {"attention_mask": mask, "other": 1})
    exponents = sched.exponents(torch.arange(n_keys - n_queries, n_keys), n_prompt)
    expected = mask + mask_bias(prompt_log_weights(key_mask, heads, alphas, n_heads, "exclude"), exponents, n_keys)
    assert kwargs["other"] == 1
    if exponents.any():
        torch.testing.assert_close(kwargs["attention_mask"], expected, rtol=0, atol=1e-6)
    else:
        assert kwargs["attention_mask"] is mask
    with pytest.raises(RuntimeError, match="engine='hooks'"):
        hook(None, (), {"attention_mask": mask.bool()})


@bridge_only
def test_twin_shares_the_bridges_tensors_and_logits(llama):
    tiny = llama
    twin, attention = hf_twin(tiny)
    bridge_ptrs = {p.data_ptr() for p in tiny.original_model.parameters()}
    assert {p.data_ptr() for p in twin.parameters()} <= bridge_ptrs  # no copy of any weight
    assert sorted(attention) == list(range(tiny.cfg.n_layers))
    tokens = emphasize(tiny, TEXTS[0]).tokens
    with torch.inference_mode():
        torch.testing.assert_close(twin(tokens).logits, tiny(tokens), rtol=0, atol=1e-5)
    assert hf_engine_unavailable(tiny) is None  # building a twin left the bridge as it was (no hooks, same mode)


@bridge_only
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_hf_engine_tokens_equal_the_bridges_steered_generate(llama, schedule):
    tiny = llama
    em = emphasize(tiny, TEXTS)  # two rows, left-padded
    with steer(tiny, HEADS, em, schedule=schedule):
        cached = generate_tokens(tiny, em, 6, stop_at_eos=False)
        uncached = generate_tokens(tiny, em, 6, stop_at_eos=False, use_past_kv_cache=False)
    fast = hf_generate_tokens(tiny, em, plan_from_spec(HEADS, schedule=schedule), max_new_tokens=6, stop_at_eos=False)
    assert torch.equal(fast, cached) and torch.equal(fast, uncached)
    unsteered = hf_generate_tokens(tiny, em, None, max_new_tokens=6, stop_at_eos=False)
    assert torch.equal(unsteered, generate_tokens(tiny, em, 6, stop_at_eos=False))
    assert hf_engine_unavailable(tiny) is None  # the twin's steering hooks never touch the bridge


@bridge_only
def test_hf_engine_per_head_alphas_and_include(llama):
    em = emphasize(llama, TEXTS)
    alphas = {(0, 1): 0.5, (1, 0): 1e-4, (1, 3): 0.05}
    for alpha, position in [(alphas, "exclude"), (0.01, "include")]:
        with steer(llama, HEADS, em, alpha, position):
            bridge = generate_tokens(llama, em, 6, stop_at_eos=False)
        fast = hf_generate_tokens(llama, em, plan_from_spec(HEADS, alpha, scale_position=position), max_new_tokens=6, stop_at_eos=False)
        assert torch.equal(fast, bridge), position


@bridge_only
def test_hf_engine_batch_equals_rows_alone(llama):
    batched = hf_generate_tokens(llama, emphasize(llama, TEXTS), plan_from_spec(HEADS), max_new_tokens=6, stop_at_eos=False)
    for row, text in enumerate(TEXTS):
        single = hf_generate_tokens(llama, emphasize(llama, text), plan_from_spec(HEADS), max_new_tokens=6, stop_at_eos=False)
        assert torch.equal(single[0], batched[row]), row


@bridge_only
def test_generate_auto_takes_the_twin_and_gives_the_bridges_text(tiny):
    for steered in (True, False):
        auto = generate(tiny, TEXTS, HEADS, max_new_tokens=6, steered=steered)
        assert auto == generate(tiny, TEXTS, HEADS, max_new_tokens=6, steered=steered, engine="hooks")
        if type(tiny.original_model).__name__.startswith("GPT2"):  # renamed modules: auto took the hooks path
            with pytest.raises(ValueError, match="renames"):
                generate(tiny, TEXTS, HEADS, max_new_tokens=6, steered=steered, engine="hf")
        else:
            assert auto == generate(tiny, TEXTS, HEADS, max_new_tokens=6, steered=steered, engine="hf")


@bridge_only
def test_generate_auto_falls_back_to_the_bridge_when_a_user_hook_must_fire(llama):
    calls = []
    record = ("blocks.1.attn.hook_pattern", lambda p, hook: calls.append(p.shape[-2]))
    with llama.hooks(fwd_hooks=[record]):
        assert "blocks.1.attn.hook_pattern" in hf_engine_unavailable(llama)
        text = generate(llama, TEXTS[0], HEADS, max_new_tokens=4)
        with pytest.raises(ValueError, match="engine='hooks'"):
            generate(llama, TEXTS[0], HEADS, max_new_tokens=4, engine="hf")
    assert len(calls) == 4  # prefill + 3 cached decode steps ran through the bridge, the hook fired each time
    assert text == generate(llama, TEXTS[0], HEADS, max_new_tokens=4, engine="hooks")
    handle = llama.original_model.register_forward_hook(lambda *a: None)  # a raw PyTorch hook counts too
    try:
        assert "PyTorch hook" in hf_engine_unavailable(llama)
    finally:
        handle.remove()


@bridge_only
def test_hf_engine_refuses_what_it_cannot_reproduce(llama):
    assert "beyond greedy" in hf_engine_unavailable(llama, {"do_sample": True})
    assert "beyond greedy" in hf_engine_unavailable(llama, {"temperature": 0.7})
    assert hf_engine_unavailable(llama, {"do_sample": False, "stop_at_eos": False}) is None
    from pasta_lens.backends import bridge_class
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    processed = bridge_class().boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    processed.enable_compatibility_mode()
    assert "processed" in hf_engine_unavailable(processed)
    with pytest.raises(ValueError, match="engine='auto'"):
        generate(processed, TEXTS[0], HEADS, max_new_tokens=2, engine="hf")
    with pytest.raises(ValueError, match="engine must be"):
        generate(llama, TEXTS[0], HEADS, engine="fast")
    for engine in ("hf", "hooks"):  # a misspelt scale position is refused the same way on both paths
        with pytest.raises(ValueError, match="scale_position must be"):
            generate(llama, TEXTS[0], HEADS, scale_position="exlude", max_new_tokens=2, engine=engine)


@pytest.mark.parametrize("backend", ["hooked"], indirect=True)
def test_hooked_transformer_generates_on_its_own_loop(llama):
    assert "not a TransformerBridge" in hf_engine_unavailable(llama)
    assert generate(llama, TEXTS, HEADS, max_new_tokens=4) == generate(llama, TEXTS, HEADS, max_new_tokens=4,
                                                                       engine="hooks")


@pytest.mark.slow
def test_smollm2_hf_engine_equals_the_bridge(smollm2):
    """The real model, chat prompts, the shipped profile with its own schedule: same text on both engines."""
    texts = ["Maria is a nurse from Spain. *Answer in JSON.*", "Tell me about Paris. *Be brief.*"]
    for steered in (True, False):
        fast = generate(smollm2, texts, chat=True, max_new_tokens=24, steered=steered, engine="hf")
        assert fast == generate(smollm2, texts, chat=True, max_new_tokens=24, steered=steered, engine="hooks")


@bridge_only
def test_select_engine_says_which_loop_runs_and_why(tiny):
    from pasta_lens.generation import select_engine

    name, twin, why = select_engine(tiny)
    if type(tiny.original_model).__name__.startswith("GPT2"):
        assert (name, twin) == ("hooks", None) and "renames" in why
    else:
        assert name == "hf" and twin is not None and why == ""
    assert select_engine(tiny, "hooks")[::2] == ("hooks", "engine='hooks' was asked for")
    assert select_engine(tiny, generate_kwargs={"top_k": 5})[0] == "hooks"


def test_cli_steer_names_the_engine(capsys, tmp_path):
    from pasta_lens.cli import main
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    for engine in ("auto", "hooks"):
        assert main(["steer", "Maria is a nurse. *Answer in JSON.*", "--model", str(tmp_path), "--heads", "1:0",
                     "--max-new-tokens", "3", "--engine", engine]) == 0
        out = capsys.readouterr().out
        assert f"engine: {'hf' if engine == 'auto' else 'hooks'}" in out, out


@bridge_only
def test_auto_keeps_bf16_on_the_hooks_and_hf_runs_there_when_asked(llama):
    from pasta_lens.generation import select_engine
    from pasta_lens.backends import bridge_class
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    half = bridge_class().boot_transformers("tiny-llama", hf_model=hf.to(torch.bfloat16), tokenizer=tok)
    name, _, why = select_engine(half)
    assert name == "hooks" and "fp32" in why
    assert select_engine(half, "hf")[0] == "hf"
    assert len(generate(half, TEXTS, HEADS, max_new_tokens=3, engine="hf")) == 2


@bridge_only
def test_the_libraries_own_hooks_do_not_count_as_a_users(llama):
    """The bridge wires capture hooks, and HF installs output-capturing hooks on the first forward that asks for
    attentions; neither changes an output, so the twin stays available (a user's PyTorch hook does not: above)."""
    tokens = emphasize(llama, TEXTS[0]).tokens
    with torch.inference_mode():
        llama(tokens)
        llama.original_model(tokens, output_attentions=True, output_hidden_states=True)
    assert any(m._forward_hooks or m._forward_pre_hooks for m in llama.original_model.modules())
    assert hf_engine_unavailable(llama) is None
