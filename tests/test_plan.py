"""One steering plan: the precedence rule decided once, and every consumer steering exactly what it says."""

import pytest
import torch

from pasta_lens import HeadProfile, SteeringPlan, emphasize, generate, pasta_hooks, resolve_plan, steer
from pasta_lens.analysis import patch_steered_heads, span_attention
from pasta_lens.fingerprint import weights_hash
from pasta_lens.generation import generate_tokens
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.plan import DEFAULT_ALPHA, head_alphas, plan_from_spec, spec_schedule
from pasta_lens.profiling import union_profiles
from pasta_lens.registry import default_profile
from pasta_lens.schedule import Schedule
from tests.reference import additive_reference_hooks

TEXT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks a lot."
HEADS = ((0, 1), (1, 0), (1, 3))


def profile_for(model, **fields):
    """A profile of ``model``'s own weights (so it is accepted), with the given fields."""
    base = dict(model_name="tiny", n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads, heads=HEADS,
                weights_hash=weights_hash(model))
    return HeadProfile(**{**base, **fields})


def logits_of(model, em, hooks):
    with torch.inference_mode():
        return model.run_with_hooks(em.tokens, attention_mask=em.attention_mask, fwd_hooks=hooks)


# ------------------------------------------------------------------------------------------- the precedence
def test_alpha_precedence_explicit_then_per_head_then_profile_alpha_then_default(llama):
    learned = profile_for(llama, head_alphas={(0, 1): 0.2, (1, 0): 0.05, (1, 3): 0.3})
    plain = profile_for(llama, alpha=0.05)
    assert resolve_plan(llama, HEADS).alphas == {h: DEFAULT_ALPHA for h in HEADS}
    assert resolve_plan(llama, plain).alphas == {h: 0.05 for h in HEADS}          # the profile's alpha
    assert resolve_plan(llama, learned).alphas == learned.head_alphas               # per-head beats alpha
    assert resolve_plan(llama, learned, alpha=0.1).alphas == {h: 0.1 for h in HEADS}  # explicit beats both
    assert resolve_plan(llama, plain, alpha={h: 0.3 for h in HEADS}).alphas == {h: 0.3 for h in HEADS}


def test_schedule_precedence_explicit_then_recorded_then_all(llama):
    recorded = profile_for(llama, provenance={"schedule": "first:2"})
    assert resolve_plan(llama, HEADS).schedule == Schedule()
    assert resolve_plan(llama, recorded).schedule == Schedule("first", n=2)
    assert resolve_plan(llama, recorded, schedule="prompt").schedule == Schedule("prompt")
    assert spec_schedule(recorded) == Schedule("first", n=2) and spec_schedule(HEADS, "all") == Schedule()


def test_a_profile_alpha_is_what_is_steered(llama):
    """A profile with alpha 0.05 and no per-head alphas steers at 0.05 everywhere (not at the default 0.01)."""
    profile = profile_for(llama, alpha=0.05)
    em = emphasize(llama, TEXT)
    steered = logits_of(llama, em, pasta_hooks(profile, em, model=llama))
    expected = logits_of(llama, em, additive_reference_hooks(HEADS, em.key_mask, 0.05))
    at_default = logits_of(llama, em, additive_reference_hooks(HEADS, em.key_mask, DEFAULT_ALPHA))
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=0)
    assert (steered - at_default).abs().max() > 1e-3  # the two strengths are told apart here
    with torch.inference_mode(), steer(llama, profile, em):
        torch.testing.assert_close(llama(em.tokens, attention_mask=em.attention_mask), expected, atol=1e-4, rtol=0)


def test_union_of_profiles_steers_each_part_at_its_own_plan(llama):
    a = profile_for(llama, heads=((0, 1), (1, 0)), alpha=0.05)
    b = profile_for(llama, heads=((1, 0), (1, 3)), head_alphas={(1, 0): 0.2, (1, 3): 0.02})
    union = union_profiles([a, b])
    assert resolve_plan(llama, union).alphas == {(0, 1): 0.05, (1, 0): 0.05, (1, 3): 0.02}


# ------------------------------------------------------------------------------------------------- the plan
def test_plan_validates_itself():
    with pytest.raises(ValueError, match="cover exactly"):
        SteeringPlan(HEADS, {(0, 1): 0.1})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        SteeringPlan(((0, 1),), {(0, 1): 2.0})
    with pytest.raises(ValueError, match="where='pattern'"):
        SteeringPlan(((0, 1),), {(0, 1): 0.1}, Schedule("prompt"), where="scores")
    with pytest.raises(ValueError, match="scale_position"):
        SteeringPlan(((0, 1),), {(0, 1): 0.1}, scale_position="inside")
    plan = SteeringPlan(((1, 0), (0, 2)), {(1, 0): 0.1, (0, 2): 0.01})
    assert plan.layers() == [(0, [2], [0.01]), (1, [0], [0.1])]
    assert plan.subset([(1, 0)]).alphas == {(1, 0): 0.1}
    with pytest.raises(ValueError, match="not in this plan"):
        plan.subset([(2, 2)])


def test_a_plan_is_never_resolved_twice(llama):
    plan = resolve_plan(llama, HEADS, alpha=0.2)
    em = emphasize(llama, TEXT)
    assert resolve_plan(llama, plan) is plan and plan_from_spec(plan) is plan
    for call in (lambda: resolve_plan(llama, plan, alpha=0.1), lambda: pasta_hooks(plan, em, schedule="prompt"),
                 lambda: resolve_plan(llama, plan, scale_position="include")):
        with pytest.raises(ValueError, match="already"):
            call()
    with pytest.raises(ValueError, match="out of range"):
        resolve_plan(llama, SteeringPlan(((9, 0),), {(9, 0): 0.1}))


def test_a_profile_needs_a_model_to_become_a_plan(llama):
    with pytest.raises(ValueError, match="no model"):
        plan_from_spec(profile_for(llama))


def test_the_plan_prints_itself(llama):
    learned = profile_for(llama, head_alphas={(0, 1): 0.2, (1, 0): 0.05, (1, 3): 0.3},
                          provenance={"schedule": "prompt"})
    text = resolve_plan(llama, learned).describe()
    assert text == "heads: 3 (profile 'tiny')   alpha: per head, 0.05-0.3   schedule: prompt"
    assert resolve_plan(llama, HEADS, 0.1, where="scores").describe() == (
        "heads: 3 (3 heads given)   alpha: 0.1   schedule: all   where: scores")


def test_head_alphas_keeps_a_subset_of_a_learned_profile(llama):
    learned = profile_for(llama, head_alphas={(0, 1): 0.2, (1, 0): 0.05, (1, 3): 0.3})
    assert head_alphas(((1, 0),), learned) == {(1, 0): 0.05}
    with pytest.raises(ValueError, match="do not cover"):
        head_alphas(((2, 2),), learned)


# ------------------------------------------------------------------------------------- consumers agree
def test_steer_with_the_default_profile_is_what_generate_does(llama):
    """``steer(model, default_profile(model)[0], em)`` + the model's generate gives ``generate(model, text)``'s
    tokens, on whichever engine ``generate`` picks (the plan carries the alphas and schedule to both)."""
    prompts = ["Maria is a nurse who lives in Paris and works at the old hospital. *Answer in JSON, please, and be "
               "brief.* Thanks a lot.", "The capital of *France* is the city of"]  # long enough for the mild
    em = emphasize(llama, prompts)  # interim steering (alpha 0.1, prompt only) to change the tiny model's tokens
    spec = default_profile(llama)[0]
    with steer(llama, spec, em):
        by_hand = generate_tokens(llama, em, 10, stop_at_eos=False)
    texts = [llama.tokenizer.decode(row, skip_special_tokens=True).strip() for row in by_hand]
    with torch.inference_mode():
        plain = generate_tokens(llama, em, 10, stop_at_eos=False)
    assert not torch.equal(plain, by_hand)  # the default steering changes these continuations
    for engine in ("auto", "hooks"):
        out = generate(llama, prompts, max_new_tokens=10, stop_at_eos=False, engine=engine)
        assert out == texts, engine


def test_analysis_steers_a_profile_with_its_recorded_schedule(llama):
    """A profile recorded with schedule "prompt" is analysed as generate() steers it: the teacher-forced answer
    rows are not steered."""
    em = emphasize(llama, TEXT)
    n = em.tokens.shape[1]
    target = torch.tensor([[5, 9, 11]])
    metric = target_logprob(n, target[0])
    ex = ProfilingExample(tokens=torch.cat([em.tokens, target], 1), key_mask=em.key_mask, objective=metric)
    profile = profile_for(llama, provenance={"schedule": "prompt"})

    def steered_metric(schedule):
        with torch.inference_mode(), steer(llama, HEADS, em.key_mask, 1e-3, schedule=schedule):
            return float(metric(llama(ex.tokens)))

    assert steered_metric("prompt") != pytest.approx(steered_metric("all"), abs=1e-4)  # told apart here
    hp = patch_steered_heads(llama, ex, profile, metric, alpha=1e-3)
    assert hp.steered == pytest.approx(steered_metric("prompt"), abs=1e-5)
    sa = span_attention(llama, ex, profile, alpha=1e-3)
    assert sa.heads == HEADS
