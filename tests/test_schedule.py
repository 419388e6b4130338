"""The steering schedule: parsing, the per-row exponent, and the invariants it must keep on tiny models.

Ground truth is computed another way: the expected per-row alpha from the spec's own definition in plain Python
(alpha ** (G ** t) for generated token t), and the expected row from a loop over keys.
"""

import argparse

import pytest
import torch

from pasta_lens import emphasize, generate, pasta_hooks, steer
from pasta_lens.cli import parse_schedule
from pasta_lens.generation import generate_tokens
from pasta_lens.schedule import Schedule, query_positions

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.*"
HEADS = [(0, 1), (1, 0), (1, 3)]
SCHEDULES = ["all", "prompt", "first:0", "first:2", "decay:0.5", "decay:1"]


def row_exponent(spec: str, position: int, n_prompt: int) -> float:
    """The spec's definition, written independently of pasta_lens.schedule."""
    t = max(0, position - n_prompt + 1)  # 0 on prompt rows; the row of generated token t
    kind, _, value = spec.partition(":")
    if kind == "all" or t == 0:
        return 1.0
    if kind == "prompt":
        return 0.0
    if kind == "first":
        return 1.0 if t <= int(value) else 0.0
    return float(value) ** t


# --- parsing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["all", "prompt", "first:0", "first:4", "decay:0.5", "decay:1"])
def test_parse_round_trips(spec):
    s = Schedule.parse(spec)
    assert str(s) == spec and Schedule.parse(str(s)) == s and Schedule.parse(s) is s
    assert hash(s) == hash(Schedule.parse(spec))  # frozen: usable as a key


def test_parse_defaults_and_normalises():
    assert Schedule.parse(None) == Schedule() == Schedule.parse(" ALL ")
    assert Schedule.parse("first:3") == Schedule("first", n=3)
    assert Schedule.parse("decay:0.25").gamma == 0.25


@pytest.mark.parametrize("bad, match", [
    ("sometimes", "Bad schedule"), ("first", "Bad schedule"), ("first:x", "Bad schedule"),
    ("first:-1", "N >= 0"), ("first:1.5", "Bad schedule"), ("decay:0", "0 < G <= 1"), ("decay:2", "0 < G <= 1"),
    ("decay:nan", "0 < G <= 1"), ("prompt:3", "Bad schedule"), (3, "a string"),
])
def test_bad_schedules_name_the_accepted_forms(bad, match):
    with pytest.raises(ValueError, match=match):
        Schedule.parse(bad)


def test_constructor_validates():
    with pytest.raises(ValueError, match="Unknown schedule"):
        Schedule("never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n only applies"):
        Schedule("prompt", n=2)
    with pytest.raises(ValueError, match="gamma only applies"):
        Schedule("first", n=2, gamma=0.5)


def test_cli_type_turns_errors_into_usage_errors():
    assert parse_schedule("first:4") == Schedule("first", n=4)
    with pytest.raises(argparse.ArgumentTypeError, match="first:N"):
        parse_schedule("first:")


# --- the exponent and the hook ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SCHEDULES + ["first:5", "decay:0.3"])
def test_exponents_follow_the_definition(spec):
    n_prompt, n_keys = 5, 12
    positions = query_positions(n_keys, n_keys)
    assert positions.tolist() == list(range(12))
    got = Schedule.parse(spec).exponents(positions, n_prompt)
    want = torch.tensor([row_exponent(spec, p, n_prompt) for p in range(n_keys)])
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    # a decode step (one query row, the last position) sees the same exponent as that row of the prefill
    assert Schedule.parse(spec).exponents(query_positions(1, 9), n_prompt).tolist() == [got[8].item()]


@pytest.mark.parametrize("spec", SCHEDULES)
@pytest.mark.parametrize("n_queries", [12, 1, 3])
def test_hook_rows_match_a_per_row_reference(spec, n_queries):
    """Each row equals PASTA with alpha_row = alpha ** e(row), computed key by key; e = 0 rows are untouched."""
    torch.manual_seed(0)
    n_prompt, n_keys, alpha = 6, 12, 0.05
    mask = torch.tensor([[False, False, True, True, False, False], [False, True, False, False, False, True]])
    pattern = torch.rand(2, 4, n_queries, n_keys).softmax(-1)
    (name, hook), = pasta_hooks({0: [1, 3]}, mask, alpha, schedule=spec)
    out = hook(pattern, None)
    for b in range(2):
        for h in range(4):
            for q in range(n_queries):
                pos = n_keys - n_queries + q
                row = pattern[b, h, q]
                if h not in (1, 3) or row_exponent(spec, pos, n_prompt) == 0.0:
                    assert torch.equal(out[b, h, q], row), (b, h, q)  # bit-identical
                    continue
                a_row = alpha ** row_exponent(spec, pos, n_prompt)
                w = torch.tensor([a_row if (k < n_prompt and not mask[b, k]) else 1.0 for k in range(n_keys)])
                want = row * w / (row * w).sum()
                assert torch.allclose(out[b, h, q], want, atol=1e-6), (b, h, q)
    assert torch.allclose(out.sum(-1), torch.ones(2, 4, n_queries), atol=1e-5)


def test_all_and_decay_one_equal_the_default_bit_for_bit(tiny):
    em = emphasize(tiny, [PROMPT, "The capital of *France* is"])
    with torch.inference_mode():
        default = tiny.run_with_hooks(em.tokens, attention_mask=em.attention_mask, fwd_hooks=pasta_hooks(HEADS, em))
        for spec in ("all", "decay:1"):
            got = tiny.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                      fwd_hooks=pasta_hooks(HEADS, em, schedule=spec))
            assert torch.equal(got, default), spec


def _patterns_around_hooks(model, em, tokens, spec):
    """(before, after) the PASTA hook at every steered layer, on ``tokens`` (prompt + continuation).

    With ``spec=None`` no PASTA hook is added: both are the unsteered run's patterns.
    """
    before, after = {}, {}
    hooks = []
    for name, fn in pasta_hooks(HEADS, em, 0.01, schedule=spec or "all"):
        hooks += [(name, lambda p, hook, n=name: before.__setitem__(n, p.clone()))]
        hooks += [(name, fn)] if spec else []
        hooks += [(name, lambda p, hook, n=name: after.__setitem__(n, p.clone()))]
    mask = torch.cat([em.attention_mask, torch.ones(tokens.shape[0], tokens.shape[1] - em.tokens.shape[1],
                                                    dtype=em.attention_mask.dtype)], dim=1)
    with torch.inference_mode():
        model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=hooks)
    return before, after


@pytest.mark.parametrize("spec", ["prompt", "first:2", "decay:0.5"])
def test_unsteered_rows_are_bit_identical_and_rows_sum_to_one(tiny, spec):
    em = emphasize(tiny, [PROMPT, "The capital of *France* is"])
    n_prompt = em.tokens.shape[1]
    continuation = torch.randint(5, 300, (2, 5), generator=torch.Generator().manual_seed(1))
    tokens = torch.cat([em.tokens, continuation], dim=1)  # teacher-forced "generated" tokens 1..5
    before, after = _patterns_around_hooks(tiny, em, tokens, spec)
    e = [row_exponent(spec, p, n_prompt) for p in range(tokens.shape[1])]
    assert 0.0 in e or spec.startswith("decay")
    for name in before:
        layer = int(name.split(".")[1])
        steered_heads = [h for (l, h) in HEADS if l == layer]
        for h in range(before[name].shape[1]):
            for q, eq in enumerate(e):
                same = torch.equal(after[name][:, h, q], before[name][:, h, q])
                if h not in steered_heads or eq == 0.0:
                    assert same, (name, h, q)
                elif q >= n_prompt - 1:  # a steered row after the span (it sees keys on both sides)
                    assert not same, (name, h, q)
        assert torch.allclose(after[name].sum(-1)[:, :, n_prompt - 3:], torch.ones(1), atol=1e-5)
    # the first steered layer sees the unsteered run's input: there its unsteered rows are the unsteered pattern
    _, plain = _patterns_around_hooks(tiny, em, tokens, None)
    first = min(before, key=lambda n: int(n.split(".")[1]))
    for q, eq in enumerate(e):
        if eq == 0.0 or q >= n_prompt - 1:
            assert torch.equal(after[first][:, :, q], plain[first][:, :, q]) == (eq == 0.0), q


# --- generation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SCHEDULES)
def test_cached_equals_uncached_for_every_schedule(tiny, spec):
    em = emphasize(tiny, [PROMPT, "The capital of *France* is"])
    with steer(tiny, HEADS, em, schedule=spec):
        cached = generate_tokens(tiny, em, 10, use_past_kv_cache=True, stop_at_eos=False)
        uncached = generate_tokens(tiny, em, 10, use_past_kv_cache=False, stop_at_eos=False)
    assert cached.shape == (2, 10) and torch.equal(cached, uncached)


@pytest.mark.parametrize("spec", ["prompt", "first:2", "decay:0.5"])
def test_batched_equals_one_by_one_for_every_schedule(llama, spec):
    texts = [PROMPT, "The capital of *France* is", "*Two* spans, *both* here."]
    em = emphasize(llama, texts)  # left-padded: the rows have different prompt lengths
    with steer(llama, HEADS, em, schedule=spec):
        batched = generate_tokens(llama, em, 8, stop_at_eos=False)
    for row, text in enumerate(texts):
        single = emphasize(llama, text)
        with steer(llama, HEADS, single, schedule=spec):
            alone = generate_tokens(llama, single, 8, stop_at_eos=False)
        assert torch.equal(batched[row], alone[0]), row


def test_prompt_keeps_the_first_token_of_all_then_departs(tiny):
    """'prompt' is chosen by the same steered prefill as 'all' (same first token), then steers nothing more."""
    em = emphasize(tiny, [PROMPT, "The capital of *France* is", "*Two* spans, *both* here."])
    runs = {}
    for spec in ("all", "prompt", "first:0", "first:3"):
        with steer(tiny, HEADS, em, 1e-4, schedule=spec):
            runs[spec] = generate_tokens(tiny, em, 12, stop_at_eos=False)
    with torch.inference_mode():
        plain = generate_tokens(tiny, em, 12, stop_at_eos=False)
    assert not torch.equal(plain[:, 0], runs["all"][:, 0])  # steering changes the first token on this model
    assert torch.equal(runs["prompt"][:, 0], runs["all"][:, 0])
    assert not torch.equal(runs["prompt"], runs["all"])  # ... and the rest departs from 'all'
    assert torch.equal(runs["first:0"], runs["prompt"])
    # first:3 steers the rows of generated tokens 1..3, so tokens 1..4 are those of 'all'
    assert torch.equal(runs["first:3"][:, :4], runs["all"][:, :4])
    assert not torch.equal(runs["first:3"], runs["all"])


def test_generate_passes_the_schedule(llama):
    em = emphasize(llama, PROMPT)
    with steer(llama, HEADS, em, schedule="prompt"):
        by_hand = generate_tokens(llama, em, 6)
    text = generate(llama, PROMPT, heads=HEADS, max_new_tokens=6, schedule="prompt")
    assert text == llama.tokenizer.decode(by_hand[0], skip_special_tokens=True).strip()
    with pytest.raises(ValueError, match="Bad schedule"):
        generate(llama, PROMPT, heads=HEADS, max_new_tokens=2, schedule="sometimes")


@pytest.mark.slow
def test_prompt_schedule_on_smollm2_keeps_the_first_token_then_departs(smollm2):
    """On the real model with the shipped profile, steering changes the JSON answer; 'prompt' starts like 'all'
    (same steered prefill), then its unsteered generated rows take another path."""
    from pasta_lens import load_profile
    from pasta_lens.tasks import Rendering, get_task
    from pasta_lens.tasks.base import emphasis_of

    task = get_task("json")
    ex = task.examples("validation", 1)[0]
    em = emphasis_of(smollm2, [task.render(smollm2, task.queries(ex, "default")[0].markup, Rendering("none", ()))])
    heads = load_profile("smollm2-135m-instruct-metric").heads  # 12 heads at 0.01
    with torch.inference_mode():
        plain = generate_tokens(smollm2, em, 24, stop_at_eos=False)
    runs = {}
    for spec in ("all", "prompt"):
        with steer(smollm2, heads, em, schedule=spec):
            runs[spec] = generate_tokens(smollm2, em, 24, stop_at_eos=False)
    assert not torch.equal(plain[:, 0], runs["all"][:, 0])  # steering changes the answer from its first token
    assert torch.equal(runs["prompt"][:, 0], runs["all"][:, 0])
    assert not torch.equal(runs["prompt"], runs["all"])


def test_a_profile_is_steered_with_its_recorded_schedule_unless_one_is_given(tiny):
    """schedule=None (the default of pasta_hooks / steer / generate) means the profile's recorded schedule."""
    from pasta_lens import HeadProfile
    from pasta_lens.fingerprint import weights_hash
    from pasta_lens.plan import spec_schedule as resolve_schedule

    profile = HeadProfile(model_name="tiny", heads=HEADS, n_layers=tiny.cfg.n_layers, n_heads=tiny.cfg.n_heads,
                          weights_hash=weights_hash(tiny), provenance={"schedule": "prompt"})
    plain = HeadProfile(model_name="tiny", heads=HEADS, n_layers=tiny.cfg.n_layers, n_heads=tiny.cfg.n_heads,
                        weights_hash=weights_hash(tiny))
    assert resolve_schedule(profile) == Schedule("prompt") and resolve_schedule(profile, "all") == Schedule()
    assert resolve_schedule(plain) == resolve_schedule(HEADS) == resolve_schedule({1: [0]}) == Schedule()
    texts = [PROMPT, "The capital of *France* is", "*Two* spans, *both* here."]
    em = emphasize(tiny, texts)

    def run(heads, **kwargs):
        with steer(tiny, heads, em, 1e-4, **kwargs):
            return generate_tokens(tiny, em, 12, stop_at_eos=False)

    by_hand = {spec: run(HEADS, schedule=spec) for spec in ("prompt", "all")}
    assert not torch.equal(by_hand["prompt"], by_hand["all"])  # the two schedules are told apart here
    assert torch.equal(run(profile), by_hand["prompt"])
    assert torch.equal(run(profile, schedule="all"), by_hand["all"])  # an explicit schedule wins
    assert torch.equal(run(plain), by_hand["all"])
    with tiny.hooks(fwd_hooks=pasta_hooks(profile, em, 1e-4, model=tiny)):
        with torch.inference_mode():
            hooked = generate_tokens(tiny, em, 12, stop_at_eos=False)
    assert torch.equal(hooked, by_hand["prompt"])
    decoded = [tiny.tokenizer.decode(row, skip_special_tokens=True).strip() for row in by_hand["prompt"]]
    assert generate(tiny, texts, profile, alpha=1e-4, max_new_tokens=12, stop_at_eos=False) == decoded
