"""Invariants of pasta_lens.analysis on tiny random models (seconds)."""

import pytest
import torch

from pasta_lens import emphasize, steer
from pasta_lens.analysis import (
    HeadPatching,
    SpanAttention,
    cumulative_patching,
    direct_logit_effect,
    head_patch_hooks,
    logit_direction,
    patch_steered_heads,
    span_attention,
    span_mass,
)
from tests.tiny import tiny_model

TEXT = "Maria is a nurse who lives in Paris. *Answer in JSON format.* John is a software engineer."
HEADS = [(1, 0), (1, 2), (2, 3)]  # valid on both tiny models (gpt2 has layers 0-1: filtered below)


def heads_for(model):
    return [(l, h) for l, h in HEADS if l < model.cfg.n_layers] + [(model.cfg.n_layers - 1, 1)]


def z_only(name):
    return name.endswith("attn.hook_z")


def last_token_metric(token=7):
    return lambda logits: logits[:, -1].log_softmax(-1)[:, token]


# ------------------------------------------------------------------------------------------------ span attention
def test_span_mass_by_hand():
    # one row, keys 0..3, span = key 2; query 0 and 1 come before the span and are not counted
    pattern = torch.tensor([[[[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.2, 0.6, 0], [0.1, 0.1, 0.3, 0.5]]]])
    key_mask = torch.tensor([[False, False, True, False]])
    assert span_mass(pattern, key_mask).tolist() == pytest.approx([(0.6 + 0.3) / 2])


def test_span_mass_ignores_padding_rows():
    pattern = torch.zeros(1, 1, 4, 4)
    pattern[0, 0, :, 1] = 1.0
    pattern[0, 0, 3] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # a (right-)padding query with junk
    key_mask = torch.tensor([[False, True, False, False]])
    attention_mask = torch.tensor([[1, 1, 1, 0]])
    assert span_mass(pattern, key_mask, attention_mask).item() == pytest.approx(1.0)  # queries 1 and 2
    assert span_mass(pattern, key_mask).item() == pytest.approx(2 / 3)  # without the mask query 3 counts


def test_steering_raises_span_mass_on_steered_heads_only(tiny):
    em = emphasize(tiny, TEXT)
    heads = heads_for(tiny)
    sa = span_attention(tiny, em, heads, alpha=0.01)
    assert isinstance(sa, SpanAttention)
    assert sa.unsteered.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads)
    assert bool(((sa.unsteered >= 0) & (sa.unsteered <= 1 + 1e-6)).all())
    before, after = sa.of_heads()
    assert bool((after > before + 0.05).all()), (before, after)
    assert bool((after > 0.9).all())  # alpha=0.01 puts nearly every row's mass on the span
    first = min(layer for layer, _ in heads)
    for layer in range(first + 1):  # nothing upstream of or beside the first steered heads changes
        for head in range(tiny.cfg.n_heads):
            if (layer, head) not in heads:
                assert sa.steered[layer, head] == sa.unsteered[layer, head]
    low, high = sa.per_layer()
    assert low.shape == (tiny.cfg.n_layers,)
    assert sa.steered_layers == tuple(sorted({layer for layer, _ in heads}))


def test_alpha_one_changes_no_span_mass(llama):
    em = emphasize(llama, TEXT)
    sa = span_attention(llama, em, heads_for(llama), alpha=1.0)
    torch.testing.assert_close(sa.steered, sa.unsteered)


def test_span_attention_batch_with_left_padding_equals_rows_alone(llama):
    texts = [TEXT, "John is a *software engineer*."]
    batch = emphasize(llama, texts)
    assert not bool(batch.attention_mask.bool().all())  # really padded
    heads = heads_for(llama)
    sa_rows = [span_attention(llama, emphasize(llama, t), heads) for t in texts]
    sa = span_attention(llama, batch, heads)
    # the batch mean weights each row by its number of counted queries
    counts = []
    for b in range(2):
        km = batch.key_mask[b]
        first = int(km.nonzero()[0])
        counts.append(batch.tokens.shape[1] - first)
    w = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    for which in ("unsteered", "steered"):
        expected = w[0] * getattr(sa_rows[0], which) + w[1] * getattr(sa_rows[1], which)
        torch.testing.assert_close(getattr(sa, which), expected, atol=2e-5, rtol=1e-4)


def test_span_attention_defaults_to_default_heads(llama):
    sa = span_attention(llama, emphasize(llama, TEXT))
    assert sa.heads  # the interim default head set
    with pytest.raises(ValueError, match="out of range"):
        span_attention(llama, emphasize(llama, TEXT), [(99, 0)])


# ------------------------------------------------------------------------------------------------ patching
def runs(model, em, heads):
    with torch.inference_mode():
        base, base_cache = model.run_with_cache(em.tokens, names_filter=z_only)
        with steer(model, heads, em):
            steered, steered_cache = model.run_with_cache(em.tokens, names_filter=z_only)
    return base, base_cache, steered, steered_cache


def test_patching_all_steered_heads_recovers_steered_logits(tiny):
    em = emphasize(tiny, TEXT)
    heads = heads_for(tiny)
    base, base_cache, steered, steered_cache = runs(tiny, em, heads)
    assert (steered - base).abs().max() > 1e-3  # steering does something here
    with torch.inference_mode():
        patched = tiny.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, heads))
        nothing = tiny.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, []))
        with steer(tiny, heads, em):
            reverse = tiny.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(base_cache, heads))
    torch.testing.assert_close(patched, steered, atol=1e-5, rtol=1e-5)
    assert torch.equal(nothing, base)
    torch.testing.assert_close(reverse, base, atol=1e-5, rtol=1e-5)


def test_patching_some_heads_is_partial(llama):
    em = emphasize(llama, TEXT)
    heads = heads_for(llama)
    base, _, steered, steered_cache = runs(llama, em, heads)
    with torch.inference_mode():
        one = llama.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, heads[:1]))
    assert (one - base).abs().max() > 1e-4 and (one - steered).abs().max() > 1e-4


def test_patch_hook_rejects_other_tokens(llama):
    em = emphasize(llama, TEXT)
    _, _, _, cache = runs(llama, em, heads_for(llama))
    other = emphasize(llama, "A *short* one.")
    with pytest.raises(ValueError, match="same tokens"), torch.inference_mode():
        llama.run_with_hooks(other.tokens, fwd_hooks=head_patch_hooks(cache, [(1, 0)]))


def test_patch_steered_heads_matches_a_manual_loop(tiny):
    em = emphasize(tiny, TEXT)
    heads = heads_for(tiny)
    metric = last_token_metric()
    hp = patch_steered_heads(tiny, em, heads, metric)
    assert isinstance(hp, HeadPatching) and hp.heads == tuple(sorted(heads))
    base, base_cache, steered, steered_cache = runs(tiny, em, heads)
    assert hp.unsteered == pytest.approx(metric(base).item(), abs=1e-5)
    assert hp.steered == pytest.approx(metric(steered).item(), abs=1e-5)
    with torch.inference_mode():
        for i, head in enumerate(hp.heads):
            manual = tiny.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, [head]))
            assert hp.into_unsteered[i].item() == pytest.approx(metric(manual).item(), abs=1e-5)
            with steer(tiny, heads, em):
                manual_r = tiny.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(base_cache, [head]))
            assert hp.into_steered[i].item() == pytest.approx(metric(manual_r).item(), abs=1e-5)


def test_one_steered_head_carries_everything_and_others_nothing(llama):
    em = emphasize(llama, TEXT)
    head = (1, 2)
    # candidates: the steered head, plus heads of layers 0-1 that steering at layer 1 cannot change
    others = [(0, 0), (0, 3), (1, 1)]
    hp = patch_steered_heads(llama, em, [head], last_token_metric(), candidates=[head] + others)
    assert abs(hp.effect) > 1e-4
    idx = hp.heads.index(head)
    assert hp.recovered[idx].item() == pytest.approx(1.0, abs=1e-4)
    assert hp.removed[idx].item() == pytest.approx(1.0, abs=1e-4)
    for h in others:
        i = hp.heads.index(h)
        assert hp.recovered[i].item() == 0.0 and hp.removed[i].item() == 0.0
    assert hp.ranked()[0] == head
    grid = hp.grid(llama.cfg.n_layers, llama.cfg.n_heads)
    assert grid[1, 2].item() == pytest.approx(1.0, abs=1e-4) and torch.isnan(grid[2, 0])


def test_patching_refuses_padded_prompts(llama):
    em = emphasize(llama, [TEXT, "A *short* one."])
    with pytest.raises(ValueError, match="padded"):
        patch_steered_heads(llama, em, [(1, 0)], last_token_metric())


def test_cumulative_patching_goes_from_unsteered_to_steered(tiny):
    em = emphasize(tiny, TEXT)
    heads = heads_for(tiny)
    metric = last_token_metric()
    base, _, steered, _ = runs(tiny, em, heads)
    curve = cumulative_patching(tiny, em, heads, list(reversed(sorted(heads))), metric)
    assert [k for k, _ in curve] == list(range(len(heads) + 1))
    assert curve[0][1] == pytest.approx(metric(base).item(), abs=1e-5)
    assert curve[-1][1] == pytest.approx(metric(steered).item(), abs=1e-4)
    with pytest.raises(ValueError, match="every k"):
        cumulative_patching(tiny, em, heads, heads, metric, ks=[len(heads) + 1])


# ------------------------------------------------------------------------------------------ direct logit effect
def llama_with_norm_weights(backend):
    """A tiny Llama whose final RMSNorm weight is not 1 (the shared tiny models keep the init of 1)."""
    from pasta_lens.backends import bridge_class, hooked_from_hf
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama", seed=1)
    with torch.no_grad():
        hf.model.norm.weight.copy_(torch.linspace(-2.0, 3.0, hf.model.norm.weight.shape[0]))
    if backend == "hooked":  # unprocessed: the final norm's weight stays ln_final.w, not folded into W_U
        return hooked_from_hf(hf, tok, name="tiny-llama-normw")
    return bridge_class().boot_transformers("tiny-llama-normw", hf_model=hf, tokenizer=tok).eval()


@pytest.mark.parametrize("which", ["llama_with_norm_weights", "gpt2"])
def test_direct_effects_add_up_to_the_logit_difference(which, backend):
    model = llama_with_norm_weights(backend) if which != "gpt2" else tiny_model("gpt2", backend=backend)
    em = emphasize(model, TEXT)
    answer, contrast = 11, 23
    with torch.inference_mode():
        logits, cache = model.run_with_cache(em.tokens)
    dla = direct_logit_effect(model, cache, answer, contrast)
    assert dla.shape == (model.cfg.n_layers, model.cfg.n_heads)
    direction = logit_direction(model, answer, contrast)
    with torch.inference_mode():
        stack, labels = cache.decompose_resid(layer=None, pos_slice=-1, return_labels=True)
        parts = cache.apply_ln_to_stack(stack, layer=None, pos_slice=-1) @ direction  # [component, batch]
        ln_b = getattr(model.ln_final, "b", None)
        w_u = model.W_U
        const = (model.b_U[answer] - model.b_U[contrast])
        if ln_b is not None:
            const = const + ln_b @ (w_u[:, answer] - w_u[:, contrast])
        target = logits[0, -1, answer] - logits[0, -1, contrast]
        assert (parts.sum(0)[0] + const).item() == pytest.approx(target.item(), abs=1e-3)
        for layer in range(model.cfg.n_layers):
            attn = parts[labels.index(f"{layer}_attn_out"), 0]
            b_o = getattr(model.blocks[layer].attn, "b_O", None)  # None (or AttributeError) when bias-free
            if b_o is not None:
                b_part = cache.apply_ln_to_stack(b_o[None, None, :].expand(1, 1, -1), layer=None, pos_slice=-1)
                attn = attn - (b_part @ direction)[0, 0]
            assert dla[layer].sum().item() == pytest.approx(attn.item(), abs=1e-3)


def test_profiling_examples_work_like_emphases(llama):
    from pasta_lens.objectives import ProfilingExample, target_logprob

    em = emphasize(llama, TEXT)
    heads = heads_for(llama)
    n = em.tokens.shape[1]
    metric = target_logprob(n, torch.tensor([5, 9]), torch.tensor([7]))
    target = torch.tensor([[5, 9]])
    ex = ProfilingExample(tokens=torch.cat([em.tokens, target], 1), key_mask=em.key_mask, objective=metric)
    with_target = emphasize(llama, TEXT)  # the same prompt; the example adds two teacher-forced tokens
    sa_ex = span_attention(llama, ex, heads)
    sa_em = span_attention(llama, with_target, heads)
    before, after = sa_ex.of_heads()
    assert bool((after > before).all())
    # the first layer's unsteered mass differs only by the two extra query rows: close, not equal
    assert torch.allclose(sa_ex.unsteered[0], sa_em.unsteered[0], atol=0.2)
    hp = patch_steered_heads(llama, ex, heads, metric)
    curve = cumulative_patching(llama, ex, heads, hp.ranked(), metric)
    assert curve[0][1] == pytest.approx(hp.unsteered, abs=1e-5)
    assert curve[-1][1] == pytest.approx(hp.steered, abs=1e-4)
    with pytest.raises(ValueError, match="ProfilingExample"):
        span_attention(llama, em.tokens, heads)


# ------------------------------------------------------------------------------------ profiles are checked here too
def test_analysis_refuses_a_profile_from_other_weights(llama):
    from pasta_lens import HeadProfile
    from pasta_lens.fingerprint import weights_hash
    from tests.tiny import tiny_model

    other = tiny_model("llama", seed=1)
    profile = HeadProfile(model_name="tiny-llama", n_layers=3, n_heads=4, heads=((1, 0), (2, 3)),
                          weights_hash=weights_hash(llama))
    em = emphasize(other, TEXT)
    metric = last_token_metric()
    calls = [lambda **kw: span_attention(other, em, profile, **kw),
             lambda **kw: patch_steered_heads(other, em, profile, metric, **kw),
             lambda **kw: patch_steered_heads(other, em, profile.heads, metric, candidates=profile, **kw),
             lambda **kw: cumulative_patching(other, em, profile, profile.heads, metric, ks=[0], **kw)]
    for call in calls:
        with pytest.raises(ValueError, match="other weights"):
            call()
    transferred = span_attention(other, em, profile, allow_transfer=True)
    assert torch.equal(transferred.steered, span_attention(other, em, profile.heads).steered)
