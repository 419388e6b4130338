"""Invariants every steering method of pasta_lens.methods keeps, on tiny random Llama (grouped-query) and GPT-2
models, on both backends: no-op settings change nothing, unsteered heads are bit-identical, patterns stay
distributions, KV-cached generation equals uncached, a left-padded batch equals its rows alone, no hook survives
an exception; plus each method's own contract (schedules, key/value groups, SPA's doubled batch)."""

import functools

import pytest
import torch

from pasta_lens import emphasize, generate, methods, steer
from pasta_lens.generation import decode_new, generate_tokens, method_tokens
from pasta_lens.methods.fit import key_point
from tests.tiny import tiny_model

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."
PROMPTS = [PROMPT, "The capital of *France* is"]
NAMES = ("pasta", "instaboost", "guide", "spotlight", "seka", "prism_delta", "spa")
STRONG = {"pasta": {"alpha": 0.05}, "instaboost": {"factor": 5.0}, "guide": {"delta": 2.0, "schedule": "all"},
          "spotlight": {"target": 0.6}, "seka": {"gain_pos": 2.0, "gain_neg": 1.0}, "prism_delta": {"gain": 2.0},
          "spa": {"strength": 2.0}}
NOOP = {"instaboost": {"factor": 1.0}, "guide": {"delta": 0.0}, "spotlight": {"target": 1e-9},
        "seka": {"gain_pos": 0.0, "gain_neg": 0.0}, "prism_delta": {"gain": 0.0}, "spa": {"strength": 1.0}}


def arch_of(model):
    return str(model.cfg.model_name).split("-")[-1]


@functools.lru_cache(maxsize=None)
def projections(name, arch, backend):
    """Fitted once per tiny model; min_diff=0 so that every head is steered."""
    return methods.fit(name, tiny_model(arch, backend=backend), n=12, min_diff=0.0, batch_size=4)


def params(name, model, base=STRONG):
    out = dict(base[name])
    if name in ("seka", "prism_delta"):
        backend = "hooked" if type(model).__name__ == "HookedTransformer" else "bridge"
        out["projections"] = projections(name, arch_of(model), backend)
    return out


def logits(model, em, name=None, heads="all", **kw):
    if name is None:
        with torch.inference_mode():
            return model(em.tokens, attention_mask=em.attention_mask)
    return methods.run(model, em.tokens, em, name, heads, attention_mask=em.attention_mask, **kw)


def patterns(model, em, fwd=()):
    with torch.inference_mode(), model.hooks(fwd_hooks=list(fwd)):
        _, cache = model.run_with_cache(em.tokens, attention_mask=em.attention_mask,
                                        names_filter=lambda n: n.endswith("hook_pattern"))
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]


# --- the registry ---------------------------------------------------------------------------------------------

def test_available_is_the_public_contract():
    import pasta_lens

    assert pasta_lens.methods.available() == methods.available() == NAMES


def test_spec_strings_parse_by_parameter_type():
    assert methods.parse_spec("instaboost:factor=5,schedule=prompt") == ("instaboost", {"factor": 5.0,
                                                                                      "schedule": "prompt"})
    assert methods.parse_spec("spa:modulated=false")[1] == {"modulated": False}
    assert methods.parse_spec("seka:gain_neg=none")[1] == {"gain_neg": None}
    with pytest.raises(ValueError, match="takes factor="):
        methods.parse_spec("instaboost:alpha=0.1")
    with pytest.raises(ValueError, match="Unknown steering method"):
        methods.parse_spec("pastaa")


@pytest.mark.parametrize("name,bad,match", [("instaboost", {"factor": 0}, "> 0"),
                                            ("spotlight", {"target": 1.5}, "share"),
                                            ("guide", {"delta": float("nan")}, "finite"),
                                            ("spotlight", {"granularity": "head"}, "granularity"),
                                            ("instaboost", {"alpha": 0.1}, "no parameter"),
                                            ("seka", {}, "fitted projections"), ("spa", {"strength": "x"}, "number")])
def test_bad_parameters_name_the_fix(llama, name, bad, match):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match=match):
        methods.hooks(name, llama, em, **bad)


def test_a_parameter_given_twice_is_an_error(llama):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="both"):
        methods.hooks("instaboost:factor=3", llama, em, factor=5)
    with pytest.raises(ValueError, match="PASTA's"):
        with steer(llama, "all", em, alpha=0.1, method="instaboost"):
            pass


# --- invariants -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NOOP))
def test_neutral_strength_is_bit_identical(tiny, name):
    em = emphasize(tiny, PROMPTS)
    assert torch.equal(logits(tiny, em, name, **params(name, tiny, NOOP)), logits(tiny, em))


@pytest.mark.parametrize("name", NAMES)
def test_each_method_changes_the_logits(tiny, name):
    em = emphasize(tiny, PROMPT)
    assert (logits(tiny, em, name, **params(name, tiny)) - logits(tiny, em)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["pasta", "instaboost", "guide", "spotlight", "seka", "prism_delta"])
def test_unsteered_heads_are_bit_identical(llama, name):
    """Layer 1's query heads 0 and 1 share key/value head 0 (4 query heads, 2 kv heads): steer them only."""
    em = emphasize(llama, PROMPT)
    before = patterns(llama, em)
    after = patterns(llama, em, methods.hooks(name, llama, em, {1: [0, 1]}, **params(name, llama)))
    assert torch.equal(after[0], before[0])
    assert torch.equal(after[1][:, 2:], before[1][:, 2:])
    assert not torch.equal(after[1][:, :2], before[1][:, :2])


@pytest.mark.parametrize("name", ["seka", "prism_delta"])
def test_key_edits_refuse_half_a_key_value_group(llama, name):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="list all or none"):
        methods.hooks(name, llama, em, {1: [0]}, **params(name, llama))


@pytest.mark.parametrize("name,extra", [("instaboost", {}), ("guide", {}), ("spotlight", {}),
                                        ("spotlight", {"granularity": "row"})])
def test_patterns_stay_distributions(tiny, name, extra):
    em = emphasize(tiny, PROMPTS)
    for pattern in patterns(tiny, em, methods.hooks(name, tiny, em, **params(name, tiny), **extra)):
        real = pattern[1:, :, em.tokens.shape[1] - int(em.attention_mask[1].sum()):]  # padded row: real queries
        for p in (pattern[:1], real):
            assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
            assert (p >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_cached_generation_equals_uncached(tiny, name):
    em = emphasize(tiny, PROMPTS)
    kw = dict(params=params(name, tiny), stop_at_eos=False)
    cached = method_tokens(tiny, em, name, "all", 10, use_past_kv_cache=True, **kw)
    uncached = method_tokens(tiny, em, name, "all", 10, use_past_kv_cache=False, **kw)
    assert cached.shape == (2, 10) and torch.equal(cached, uncached)


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_batch_equals_rows_alone(tiny, name):
    texts = PROMPTS + ["*Two* spans, *both* here."]
    em = emphasize(tiny, texts)
    batched = method_tokens(tiny, em, name, "all", 8, params=params(name, tiny), stop_at_eos=False)
    batched_logits = logits(tiny, em, name, **params(name, tiny))
    for row, text in enumerate(texts):
        alone = emphasize(tiny, text)
        n = alone.tokens.shape[1]
        assert torch.equal(batched[row], method_tokens(tiny, alone, name, "all", 8, params=params(name, tiny),
                                                       stop_at_eos=False)[0]), row
        assert torch.allclose(batched_logits[row, -n:], logits(tiny, alone, name, **params(name, tiny))[0],
                              atol=1e-4), row


@pytest.mark.parametrize("name", NAMES)
def test_no_hook_survives_an_exception(llama, name):
    em = emphasize(llama, PROMPT)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(llama, "all", em, method=name, method_params=params(name, llama)):
            raise RuntimeError("boom")
    assert not [hp.name for hp in llama.hook_points() if hp._forward_hooks]


@pytest.mark.parametrize("name", ["instaboost", "guide", "spotlight"])
def test_prompt_schedule_leaves_continuation_rows_bit_identical(llama, name):
    em = emphasize(llama, PROMPT)
    n = em.tokens.shape[1]
    longer = emphasize(llama, PROMPT + " More words follow here.")
    assert torch.equal(longer.tokens[:, :n], em.tokens)
    fwd = methods.hooks(name, llama, em, **{**params(name, llama), "schedule": "prompt"})
    with torch.inference_mode(), llama.hooks(fwd_hooks=fwd):
        _, steered = llama.run_with_cache(longer.tokens, names_filter="blocks.0.attn.hook_pattern")
    with torch.inference_mode():
        _, plain = llama.run_with_cache(longer.tokens, names_filter="blocks.0.attn.hook_pattern")
    a, b = steered["blocks.0.attn.hook_pattern"], plain["blocks.0.attn.hook_pattern"]
    assert torch.equal(a[:, :, n:], b[:, :, n:]) and not torch.equal(a[:, :, :n], b[:, :, :n])


@pytest.mark.parametrize("name", ["seka", "prism_delta", "spa"])
def test_methods_without_per_row_strength_refuse_schedules(llama, name):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="only schedule='all'"):
        methods.hooks(name, llama, em, **params(name, llama), schedule="prompt")


# --- each method's arithmetic, checked another way -------------------------------------------------------------

def test_guide_equals_instaboost_at_exp_delta(tiny):
    """softmax(s + delta [k in E]) = A e^delta / sum: the scores edit and the pattern edit agree."""
    em = emphasize(tiny, PROMPTS)
    a = logits(tiny, em, "guide", delta=1.3, schedule="all")
    b = logits(tiny, em, "instaboost", factor=float(torch.tensor(1.3).exp()))
    real = em.attention_mask.bool()  # padding positions' rows are nobody's output
    assert torch.allclose(a[real], b[real], atol=2e-5)


def test_spotlight_row_share_reaches_t_over_t_plus_1_minus_p(llama):
    em = emphasize(llama, PROMPT)
    target = 0.6
    span = em.key_mask[0]
    before = patterns(llama, em)[0]
    fwd = methods.hooks("spotlight", llama, em, {0: [0, 1, 2, 3]}, target=target, granularity="row")
    after = patterns(llama, em, fwd)[0]
    p, q = before[..., span].sum(-1), after[..., span].sum(-1)
    raised = (p > 0) & (p < target)
    assert raised.any()
    assert torch.allclose(q[raised], target / (target + 1 - p[raised]), atol=1e-5)
    assert torch.equal(after[~raised], before[~raised])


def test_spa_is_the_contrast_of_two_runs(tiny):
    """SPA's doubled batch gives s + (w - 1)(s - s_aux), s_aux computed here with anchors masked by hand."""
    em = emphasize(tiny, PROMPTS)
    span = em.key_mask

    def hide(scores, hook):
        return scores.masked_fill(span[:, None, None, :scores.shape[-1]], torch.finfo(scores.dtype).min)

    main = logits(tiny, em)
    with torch.inference_mode(), tiny.hooks(fwd_hooks=[(f"blocks.{i}.attn.hook_attn_scores", hide)
                                                       for i in range(tiny.cfg.n_layers)]):
        aux = tiny(em.tokens, attention_mask=em.attention_mask)
    spa = logits(tiny, em, "spa", strength=1.7, modulated=False)
    assert torch.allclose(spa, main + 0.7 * (main - aux), atol=1e-4)


def test_spa_generation_feeds_the_copy_the_main_stream_tokens(tiny):
    """The authors' loop: at every step both streams read the tokens chosen from the contrast (greedy, uncached
    here, anchors hidden by hand); the doubled-batch generation must pick the same tokens."""
    em = emphasize(tiny, PROMPT)
    span = em.key_mask

    def hide(scores, hook):
        keys = torch.zeros(scores.shape[-1], dtype=torch.bool)
        keys[: span.shape[1]] = span[0]
        return scores.masked_fill(keys, torch.finfo(scores.dtype).min)

    hidden = [(f"blocks.{i}.attn.hook_attn_scores", hide) for i in range(tiny.cfg.n_layers)]
    tokens = em.tokens
    with torch.inference_mode():
        for _ in range(8):
            s = tiny(tokens)[:, -1]
            with tiny.hooks(fwd_hooks=hidden):
                s_aux = tiny(tokens)[:, -1]
            pick = (s + 1.0 * (s - s_aux)).argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, pick], dim=1)
    new = method_tokens(tiny, em, "spa", "all", 8, params={"strength": 2.0, "modulated": False}, stop_at_eos=False)
    assert torch.equal(new, tokens[:, em.tokens.shape[1]:])


def test_spa_asks_for_the_doubled_batch(llama):
    em = emphasize(llama, PROMPT)
    with steer(llama, "all", em, method="spa"):
        with pytest.raises(ValueError, match="spa_batch"):
            llama(em.tokens)
        assert llama(methods.spa_batch(em.tokens)).shape[0] == 2
    with pytest.raises(ValueError, match="heads must be 'all'"):
        methods.hooks("spa", llama, em, {1: [0]})


# --- steer / generate -------------------------------------------------------------------------------------------

def test_steer_and_generate_take_method_names(llama):
    em = emphasize(llama, PROMPT)
    with steer(llama, "all", em, method="instaboost", method_params={"factor": 3}):
        with torch.inference_mode():
            inside = llama(em.tokens)
    assert torch.equal(inside, logits(llama, em, "instaboost", factor=3.0))
    text = generate(llama, PROMPT, method="guide:delta=2", max_new_tokens=6)
    assert text == decode_new(llama, method_tokens(llama, em, "guide", params={"delta": 2.0}, max_new_tokens=6))[0]
    assert generate(llama, PROMPT, method="guide:delta=2", steered=False, max_new_tokens=6) == decode_new(
        llama, generate_tokens(llama, em, 6))[0]
    with pytest.raises(ValueError, match="engine='hooks'"):
        generate(llama, PROMPT, method="instaboost", engine="hf")
    by_spec = generate(llama, PROMPT, method="pasta:alpha=0.1", heads={1: [0, 3]}, max_new_tokens=6)
    by_args = generate(llama, PROMPT, heads={1: [0, 3]}, alpha=0.1, max_new_tokens=6)
    assert by_spec == by_args == generate(llama, PROMPT, heads={1: [0, 3]}, alpha=0.1, max_new_tokens=6,
                                          engine="hooks")
    with pytest.raises(ValueError, match="PASTA's"):
        generate(llama, PROMPT, method="instaboost", alpha=0.1)


def test_pasta_through_the_registry_is_pasta_hooks(llama):
    from pasta_lens import pasta_hooks

    em = emphasize(llama, PROMPT)
    direct = llama.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({1: [0, 3]}, em, alpha=0.1))
    assert torch.equal(logits(llama, em, "pasta", {1: [0, 3]}, alpha=0.1), direct.detach())


def test_key_point_needs_a_hook_after_the_key_norm():
    from types import SimpleNamespace

    normed = SimpleNamespace(hook_dict={"blocks.0.attn.hook_k_normed": None}, cfg=SimpleNamespace(use_qk_norm=True))
    hooked = SimpleNamespace(hook_dict={"blocks.0.attn.hook_k": None}, cfg=SimpleNamespace(use_qk_norm=True))
    plain = SimpleNamespace(hook_dict={"blocks.0.attn.hook_k": None}, cfg=SimpleNamespace(use_qk_norm=False))
    assert key_point(normed) == "hook_k_normed" and key_point(plain) == "hook_k"
    with pytest.raises(ValueError, match="TransformerBridge"):
        key_point(hooked)


# --- the fitted artefact ----------------------------------------------------------------------------------------

def test_projections_round_trip_and_refuse_other_models(tmp_path):
    from pasta_lens.methods import load_projections

    llama = tiny_model("llama")
    proj = methods.fit("prism_delta", llama, n=8, min_diff=0.0, values=True, command="pytest")
    path = proj.save(tmp_path / "prism.safetensors")
    loaded = load_projections(path, llama)
    assert loaded.header() == proj.header() and loaded.settings["n_triplets"] == 8
    assert all(torch.equal(loaded.tensors[k], proj.tensors[k]) for k in proj.tensors)
    assert set(proj.tensors) == {"diff", "norm_diffs", "value_diff", "value_norm_diffs"}
    with pytest.raises(ValueError, match="other weights"):
        load_projections(path, tiny_model("llama", seed=1))
    load_projections(path, tiny_model("llama", seed=1), allow_transfer=True)
    with pytest.raises(ValueError, match="this model has"):
        load_projections(path, tiny_model("gpt2"))
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="fitted for 'prism_delta'"):
        methods.hooks("seka", llama, em, projections=path)
    keys_only = logits(llama, em, "prism_delta", projections=path, gain=1.0)
    with_values = logits(llama, em, "prism_delta", projections=path, gain=1.0, gain_v=1.0)
    assert (keys_only - with_values).abs().max() > 1e-4
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_projections(tmp_path / "junk.safetensors")


def test_values_need_value_projections(llama):
    em = emphasize(llama, PROMPT)
    with pytest.raises(ValueError, match="values=True"):
        methods.hooks("prism_delta", llama, em, **params("prism_delta", llama), gain_v=0.5)


def test_heads_below_min_diff_are_not_steered(llama):
    """A min_diff above every head's ||H+ - H-|| / N zeroes every projection: no hook, the model unchanged."""
    proj = methods.fit("seka", llama, n=6, min_diff=1e9)
    assert all(float(t.abs().sum()) == 0 for k, t in proj.tensors.items() if k != "norm_diffs")
    assert methods.hooks("seka", llama, emphasize(llama, PROMPT), projections=proj) == []
