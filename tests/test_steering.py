"""Invariants of PASTA steering on tiny random Llama (grouped-query) and GPT-2 bridges."""

import math

import pytest
import torch

from pasta_lens import emphasize, normalize_heads, pasta_hooks, steer
from pasta_lens.kernels import key_weights, rescale_rows
from tests.reference import additive_reference_hooks

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."
HEADS = [(0, 1), (1, 0), (1, 3)]


def run(model, em, hooks=()):
    with torch.inference_mode():
        return model.run_with_hooks(em.tokens, attention_mask=em.attention_mask, fwd_hooks=list(hooks))


def patterns(model, em, hooks=()):
    with torch.inference_mode(), model.hooks(fwd_hooks=list(hooks)):
        _, cache = model.run_with_cache(em.tokens, attention_mask=em.attention_mask,
                                        names_filter=lambda n: n.endswith("hook_pattern"))
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]


def span_mass(pattern, key_mask):
    """Attention mass on emphasised keys, averaged over the query rows that can see the span: [head]."""
    first = int(key_mask[0].nonzero()[0])
    return (pattern[:, :, first:] * key_mask[:, None, None, :]).sum(-1).mean(dim=(0, 2))


# --- head specs and alpha -------------------------------------------------------------------------------

def test_head_specs_are_equivalent():
    assert normalize_heads({20: [3, 0], 21: [5]}) == ((20, 0), (20, 3), (21, 5))
    assert normalize_heads([(21, 5), (20, 0), (20, 3), (20, 0)]) == ((20, 0), (20, 3), (21, 5))

    class Profile:
        heads = ((1, 2),)
    assert normalize_heads(Profile()) == ((1, 2),)


@pytest.mark.parametrize("heads,match", [({}, "empty"), ([], "empty"), ([(1, -1)], "pair"), ([(1,)], "pair"),
                                         ([("a", 1)], "pair"), ([(1.5, 0)], "pair")])
def test_bad_head_specs(heads, match):
    with pytest.raises(ValueError, match=match):
        normalize_heads(heads)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan"), {(0, 1): 2.0}])
def test_alpha_outside_0_1_is_an_error(llama, alpha):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        pasta_hooks([(0, 1)], em, alpha=alpha)


def test_per_head_alpha_must_cover_the_heads(llama):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="missing"):
        pasta_hooks([(0, 1), (1, 0)], em, alpha={(0, 1): 0.1})


def test_per_head_alpha_equals_separate_hooks(llama):
    em = emphasize(llama, PROMPT)
    mixed = run(llama, em, pasta_hooks([(0, 1), (1, 0)], em, alpha={(0, 1): 0.1, (1, 0): 0.001}))
    split = run(llama, em, pasta_hooks([(0, 1)], em, 0.1) + pasta_hooks([(1, 0)], em, 0.001))
    assert torch.allclose(mixed, split, atol=1e-6)


def test_hooks_one_per_layer_on_hook_pattern(llama):
    hooks = pasta_hooks({1: [3, 0], 0: [1]}, emphasize(llama, PROMPT))
    assert [name for name, _ in hooks] == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]


# --- the transform --------------------------------------------------------------------------------------

def test_alpha_one_is_a_noop(tiny):
    em = emphasize(tiny, PROMPT)
    assert torch.allclose(run(tiny, em, pasta_hooks(HEADS, em, alpha=1.0)), run(tiny, em), atol=1e-5)


@pytest.mark.parametrize("scale_position", ["exclude", "include"])
def test_parity_with_additive_log_alpha_reference(tiny, scale_position):
    em = emphasize(tiny, [PROMPT, "short *one* here", "*Two* spans, *both* emphasised."])
    ours = run(tiny, em, pasta_hooks(HEADS, em, 0.01, scale_position))
    ref = run(tiny, em, additive_reference_hooks(HEADS, em.key_mask, 0.01, scale_position))
    real = em.attention_mask.bool()
    assert (ours - ref).abs()[real].max() <= 1e-4
    assert (ours - run(tiny, em)).abs()[real].max() > 1e-2  # and steering did something


def test_unsteered_heads_are_bit_identical(llama):
    em = emphasize(llama, PROMPT)
    before = patterns(llama, em)
    after = patterns(llama, em, pasta_hooks([(1, 0)], em, 0.01))
    assert torch.equal(before[0], after[0])  # earlier layer untouched
    # Same layer: query heads 1 (same KV head as 0 under grouped-query attention), 2 and 3 untouched.
    assert torch.equal(before[1][:, 1:], after[1][:, 1:])
    assert not torch.allclose(before[1][:, 0], after[1][:, 0])


def test_rows_sum_to_one_and_padding_stays_zero(tiny):
    em = emphasize(tiny, [PROMPT, "a *b*"])
    for layer, pat in enumerate(patterns(tiny, em, pasta_hooks(HEADS, em, 0.001))):
        real_q = em.attention_mask.bool()[:, None, :, None]
        sums = pat.sum(-1)
        assert torch.allclose(sums[real_q[..., 0].expand_as(sums)], torch.ones(()), atol=1e-5)
        pad_keys = ~em.attention_mask.bool()
        assert (pat[1, :, -2:, :][:, :, pad_keys[1]] == 0).all()  # real queries of the padded row


def test_span_mass_rises_as_alpha_falls(tiny):
    em = emphasize(tiny, PROMPT)
    masses = []
    for alpha in [1.0, 0.5, 0.1, 0.01, 0.001]:
        pat = patterns(tiny, em, pasta_hooks(HEADS, em, alpha))
        masses.append(torch.stack([span_mass(pat[layer], em.key_mask)[head] for layer, head in HEADS]))
    for weaker, stronger in zip(masses, masses[1:]):
        assert (stronger > weaker).all()
    assert (masses[-1] > 0.9).all()


def test_include_suppresses_the_span(tiny):
    em = emphasize(tiny, PROMPT)
    base = patterns(tiny, em)
    sup = patterns(tiny, em, pasta_hooks(HEADS, em, 0.01, scale_position="include"))
    for layer, head in HEADS:
        assert span_mass(sup[layer], em.key_mask)[head] < span_mass(base[layer], em.key_mask)[head]


def test_union_of_spans_equals_or_of_masks(llama):
    two = emphasize(llama, "*Maria* is a nurse. *Answer in JSON.*")
    a, b = emphasize(llama, "*Maria* is a nurse. Answer in JSON."), emphasize(llama, "Maria is a nurse. *Answer in JSON.*")
    union = a.key_mask | b.key_mask
    assert torch.equal(run(llama, two, pasta_hooks(HEADS, two)), run(llama, two, pasta_hooks(HEADS, union)))
    # a union, not stacked penalties: tokens in both spans are not penalised twice
    w = key_weights(union, union.shape[1], torch.tensor([0.01]))
    assert sorted(w.unique().tolist()) == [pytest.approx(0.01), 1.0]


def test_generated_keys_are_not_rescaled():
    mask = torch.tensor([[True, False, False]])
    w = key_weights(mask, 5, torch.tensor([0.1, 0.5]))
    assert w.shape == (1, 2, 1, 5)
    assert torch.allclose(w[0, 0, 0], torch.tensor([1.0, 0.1, 0.1, 1.0, 1.0]))
    assert torch.allclose(w[0, 1, 0], torch.tensor([1.0, 0.5, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="emphasis.tokens"):
        key_weights(mask, 2, torch.tensor([0.1]))


def test_low_precision_patterns_are_rescaled_in_fp32():
    torch.manual_seed(0)
    pat32 = torch.softmax(torch.randn(2, 3, 4, 6) * 3, dim=-1)
    pat16 = pat32.to(torch.bfloat16)
    key_mask = torch.tensor([[False, True, True, False, False, False]] * 2)
    (_, hook), = pasta_hooks([(0, 1)], key_mask, 0.01)
    out = hook(pat16, None)
    assert out.dtype == torch.bfloat16
    expected = rescale_rows(pat16[:, 1:2].float(), key_weights(key_mask, 6, torch.tensor([0.01])))
    assert torch.equal(out[:, 1], expected[:, 0].to(torch.bfloat16))
    assert torch.equal(out[:, [0, 2]], pat16[:, [0, 2]])
    # the additive form in fp32 agrees to bf16 precision
    ref = torch.softmax(pat32.log() + torch.where(key_mask, 0.0, math.log(0.01))[:, None, None, :], dim=-1)
    assert torch.allclose(out[:, 1].float(), ref[:, 1], atol=1e-2)


def test_bool_key_mask_equals_emphasis(llama):
    em = emphasize(llama, PROMPT)
    assert torch.equal(run(llama, em, pasta_hooks(HEADS, em)), run(llama, em, pasta_hooks(HEADS, em.key_mask)))


def test_one_row_key_mask_broadcasts_over_the_batch(llama):
    em = emphasize(llama, PROMPT)
    tokens = em.tokens.repeat(3, 1)
    with torch.inference_mode():
        out = llama.run_with_hooks(tokens, fwd_hooks=pasta_hooks(HEADS, em))
    assert torch.allclose(out, run(llama, em, pasta_hooks(HEADS, em)).expand(3, -1, -1), atol=1e-5)


@pytest.mark.parametrize("bad,match", [(torch.zeros(1, 5, dtype=torch.bool), "no token"),
                                       (torch.ones(1, 5), "bool"), (torch.ones(5, dtype=torch.bool), "bool")])
def test_bad_key_masks(bad, match):
    with pytest.raises(ValueError, match=match):
        pasta_hooks(HEADS, bad)


def test_mismatched_batch_is_an_error(llama):
    em = emphasize(llama, [PROMPT, "a *b*"])
    with pytest.raises(ValueError, match="rows"), torch.inference_mode():
        llama.run_with_hooks(em.tokens[:1].repeat(3, 1), fwd_hooks=pasta_hooks(HEADS, em))


def test_batched_equals_one_by_one(tiny):
    texts = [PROMPT, "short *one* here", "*Two* spans, *both* emphasised."]
    em = emphasize(tiny, texts)
    batched = run(tiny, em, pasta_hooks(HEADS, em))
    for row, text in enumerate(texts):
        single = emphasize(tiny, text)
        alone = run(tiny, single, pasta_hooks(HEADS, single))
        n = single.tokens.shape[1]
        assert torch.allclose(batched[row, -n:], alone[0], atol=1e-4), row


# --- steer(): validation and hook lifetime --------------------------------------------------------------

def test_steer_equals_run_with_hooks(llama):
    em = emphasize(llama, PROMPT)
    with steer(llama, HEADS, em) as model, torch.inference_mode():
        inside = model(em.tokens)
    assert torch.equal(inside, run(llama, em, pasta_hooks(HEADS, em)))
    assert torch.equal(run(llama, em), llama(em.tokens).detach())  # and nothing stays behind


@pytest.mark.parametrize("heads", [[(3, 0)], [(0, 4)], {99: [0]}])
def test_steer_validates_heads_against_the_model(llama, heads):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="out of range"):
        with steer(llama, heads, em):
            pass


def test_no_hook_survives_an_exception_and_user_hooks_stay(llama):
    em = emphasize(llama, PROMPT)
    calls = []
    user_hook = ("blocks.0.attn.hook_pattern", lambda x, hook: calls.append(1))
    with llama.hooks(fwd_hooks=[user_hook]):
        with pytest.raises(RuntimeError, match="boom"):
            with steer(llama, HEADS, em):
                raise RuntimeError("boom")
        point = llama.hook_dict["blocks.1.attn.hook_pattern"]
        assert not point._forward_hooks  # the steering hook is gone
        with torch.inference_mode():
            llama(em.tokens)
        assert calls == [1]  # the user's hook is still there and still runs


def test_profile_objects_are_validated_before_hooks(llama):
    class Profile:
        heads = ((0, 1),)
        seen = []

        def validate_for(self, model, allow_transfer=False):
            self.seen.append(allow_transfer)
            if not allow_transfer:
                raise ValueError("profile was made for another model")

    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="another model"):
        with steer(llama, Profile(), em):
            pass
    with steer(llama, Profile(), em, allow_transfer=True):
        pass
    assert Profile.seen == [False, True]


# --- faults: tiny alphas, malformed heads, profiles without a model, runs on other tokens ----------------------

def test_alpha_below_the_floor_is_refused_and_the_floor_is_exact(tiny):
    from pasta_lens.plan import ALPHA_MIN

    em = emphasize(tiny, PROMPT)
    first = int(em.key_mask[0].nonzero()[0])
    # Why the floor exists: in fp32, 1e-46 is 0, and rows that see no emphasised key lose all their mass.
    raw = rescale_rows(torch.softmax(torch.randn(1, 1, 6, 6), -1).tril(),
                       key_weights(torch.tensor([[False, False, False, True, True, True]]), 6,
                                   torch.tensor([1e-46])))
    assert raw[0, 0, :3].sum(-1).max() == 0  # rows 0-2 see only keys 0-2, none emphasised
    for alpha in (1e-46, ALPHA_MIN / 10, {(0, 1): 1e-46, (1, 0): 0.1, (1, 3): 0.1}):
        with pytest.raises(ValueError, match="below the floor"):
            pasta_hooks(HEADS, em, alpha)
    base = patterns(tiny, em)
    steered = patterns(tiny, em, pasta_hooks(HEADS, em, ALPHA_MIN))
    ref = patterns(tiny, em, additive_reference_hooks(HEADS, em.key_mask, ALPHA_MIN))
    for layer, head in HEADS:
        rows = steered[layer][0, head]
        assert torch.allclose(rows.sum(-1), torch.ones(()), atol=1e-5)
        assert torch.allclose(rows[:first], base[layer][0, head, :first], atol=1e-6)  # rows before the span
        assert torch.allclose(rows, ref[layer][0, head], atol=1e-5)  # softmax(scores + log alpha) at the floor


@pytest.mark.parametrize("heads,match", [({1: 0}, r"layer 1 must be a list.*\{1: \[0\]\}"),
                                         ({1: "0"}, r"layer 1 must be a list"),
                                         (5, r"got int 5"), ("1:0", r"got str")])
def test_malformed_head_sets_name_the_fix(heads, match):
    with pytest.raises(ValueError, match=match):
        normalize_heads(heads)


def _profile_of(model, heads=((0, 1), (1, 3))):
    from pasta_lens import HeadProfile
    from pasta_lens.fingerprint import weights_hash

    return HeadProfile(model_name="tiny-llama", n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads,
                       heads=heads, weights_hash=weights_hash(model))


def test_resolve_heads_validates_profiles_and_plain_head_sets(llama, gpt2):
    from pasta_lens.plan import resolve_heads
    from tests.tiny import tiny_model

    profile = _profile_of(llama)
    assert resolve_heads(llama, profile) == ((0, 1), (1, 3))
    assert resolve_heads(llama, {1: [3, 0]}) == ((1, 0), (1, 3))
    with pytest.raises(ValueError, match="other weights"):
        resolve_heads(tiny_model("llama", seed=1), profile)
    assert resolve_heads(tiny_model("llama", seed=1), profile, allow_transfer=True) == profile.heads
    with pytest.raises(ValueError, match="3 layers x 4 heads"):
        resolve_heads(gpt2, profile, allow_transfer=True)
    with pytest.raises(ValueError, match="out of range"):
        resolve_heads(gpt2, [(2, 0)])


def test_pasta_hooks_with_a_profile_needs_the_model(llama):
    from tests.tiny import tiny_model

    em = emphasize(llama, PROMPT)
    profile = _profile_of(llama)
    with pytest.raises(ValueError, match=r"steer\(model, profile, em\).*profile\.heads"):
        pasta_hooks(profile, em)
    with pytest.raises(ValueError, match="other weights"):
        pasta_hooks(profile, em, model=tiny_model("llama", seed=1))
    with pytest.raises(ValueError, match="out of range"):
        pasta_hooks([(3, 0)], em, model=llama)
    checked = pasta_hooks(profile, em, model=llama)
    assert torch.equal(run(llama, em, checked), run(llama, em, pasta_hooks(profile.heads, em)))


def test_steer_refuses_a_run_on_other_tokens_than_the_emphasis(llama):
    em = emphasize(llama, PROMPT, chat=True)  # no BOS: the template brings its own
    with_bos = llama.to_tokens(em.text)  # one token longer: every key of the mask would be off by one
    assert with_bos.shape[1] == em.tokens.shape[1] + 1
    other = emphasize(llama, "The capital of *France* is Paris. " * 4)
    assert other.tokens.shape[1] > em.tokens.shape[1]  # so that no shape check can catch it
    with steer(llama, HEADS, em), torch.inference_mode():
        for tokens in (with_bos, other.tokens):
            with pytest.raises(ValueError, match="do not start with the emphasis"):
                llama(tokens)
        # a continuation (teacher forcing) is what the mask allows: its extra keys keep weight 1
        answer = torch.tensor([[5, 6, 7]])
        forced = llama(torch.cat([em.tokens, answer], 1))
    with torch.inference_mode():
        by_hand = llama.run_with_hooks(torch.cat([em.tokens, answer], 1), fwd_hooks=pasta_hooks(HEADS, em.key_mask))
    assert torch.equal(forced, by_hand)
