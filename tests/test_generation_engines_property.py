"""Property: the two generation engines give the same tokens for any steering request, and both are right.

Hypothesis draws the prompts (1-3, left-padded, each with one or two marked spans), the heads, the alphas (one
value or one per head, from 1e-4 to 1), the schedule, the scaled side, the number of new tokens and
``stop_at_eos``; the HF twin (:func:`pasta_lens.hf_engine.hf_generate_tokens`) and TransformerLens' loop with the
steering hooks must give the same tokens (with ``stop_at_eos=True`` up to each row's first EOS: the engines pad a
finished row differently). Three models: the tiny Llama, a tiny Llama that often picks EOS (so ``stop_at_eos``
decides the text), and a tiny Gemma 3 whose local layers' 8-token window is shorter than the prompts. A second,
smaller property checks both engines against the uncached additive reference (``tests/reference_generation.py``).

Bounded and deterministic: ``derandomize=True`` (the same examples on every run: CI cannot flake), no example
database, at most 16 + 4 examples (~20 s of CPU on 2 idle cores).
"""

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pasta_lens import emphasize, steer
from pasta_lens.generation import generate_tokens
from pasta_lens.hf_engine import hf_generate_tokens
from pasta_lens.plan import plan_from_spec
from tests.reference_generation import reference_generate, reference_hooks
from tests.test_generation_windows import windowed

WORDS = ("Maria is a nurse who lives in Paris Answer in JSON format with the name and occupation The capital of "
         "France Previously Eiffel Tower was Rome Currently John software engineer He writes code likes tea She "
         "professor history").split()
MODELS = ("llama", "llama-eos", "gemma3")
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=3)
def model_of(name):
    """The tiny models, built once here (private copies: the EOS edit never reaches the shared tiny Llama)."""
    from pasta_lens.backends import bridge_class
    from tests.tiny import tiny_hf_model

    if name == "gemma3":
        return windowed("gemma3")
    hf, tok = tiny_hf_model("llama")
    model = bridge_class().boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    model.eval()
    if name == "llama-eos":  # EOS's unembedding row becomes a scaled copy of a token the model often emits
        with torch.no_grad():
            often = int(generate_tokens(model, emphasize(model, "Maria is a *nurse*"), 4, stop_at_eos=False)[0, 1])
            hf.lm_head.weight[tok.eos_token_id] = hf.lm_head.weight[often] * 1.5
    return model


@st.composite
def marked_prompt(draw):
    words = draw(st.lists(st.sampled_from(WORDS), min_size=3, max_size=14))
    n_spans = draw(st.integers(1, 2))
    cuts = sorted(draw(st.lists(st.integers(0, len(words)), min_size=2 * n_spans, max_size=2 * n_spans,
                                unique=True)))
    pieces, last = [], 0
    for start, end in zip(cuts[::2], cuts[1::2]):
        pieces += words[last:start] + ["*" + " ".join(words[start:end]) + "*"]
        last = end
    return " ".join(pieces + words[last:])


@st.composite
def steering_request(draw):
    name = draw(st.sampled_from(MODELS))
    model = model_of(name)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    heads = draw(st.lists(st.sampled_from(all_heads), min_size=1, max_size=6, unique=True))
    alpha_value = st.floats(-4, 0).map(lambda e: float(10 ** e))
    alpha = draw(st.one_of(alpha_value, st.fixed_dictionaries({h: alpha_value for h in heads})))
    schedule = draw(st.one_of(st.sampled_from(["all", "prompt"]), st.integers(0, 3).map(lambda n: f"first:{n}"),
                              st.sampled_from([0.3, 0.5, 0.9]).map(lambda g: f"decay:{g}")))
    return dict(name=name, model=model, texts=draw(st.lists(marked_prompt(), min_size=1, max_size=3)),
                plan=plan_from_spec(heads, alpha, schedule, draw(st.sampled_from(["exclude", "include"]))),
                n_new=draw(st.integers(1, 8)), stop_at_eos=draw(st.booleans()))


def until_eos(row, eos):
    row = row.tolist()
    return row[:row.index(eos) + 1] if eos in row else row


def same_tokens(a, b, eos, stop_at_eos):
    if not stop_at_eos:
        return torch.equal(a, b)
    return [until_eos(r, eos) for r in a] == [until_eos(r, eos) for r in b]


def both_engines(r):
    model, plan = r["model"], r["plan"]
    em = emphasize(model, r["texts"])
    fast = hf_generate_tokens(model, em, plan, max_new_tokens=r["n_new"], stop_at_eos=r["stop_at_eos"])
    with steer(model, plan, em):
        hooks = generate_tokens(model, em, r["n_new"], stop_at_eos=r["stop_at_eos"])
    return em, fast, hooks


@settings(max_examples=16, **SETTINGS)
@given(steering_request())
def test_both_engines_give_the_same_tokens(r):
    em, fast, hooks = both_engines(r)
    eos = r["model"].tokenizer.eos_token_id
    assert same_tokens(fast, hooks, eos, r["stop_at_eos"]), (r["texts"], r["plan"].describe(), fast, hooks)


@settings(max_examples=4, **SETTINGS)
@given(steering_request())
def test_both_engines_equal_the_uncached_reference(r):
    r = {**r, "stop_at_eos": False}
    em, fast, hooks = both_engines(r)
    plan = r["plan"]
    ref = reference_generate(r["model"], em.tokens, em.attention_mask,
                             reference_hooks(plan.alphas, em.key_mask, str(plan.schedule), plan.scale_position),
                             r["n_new"])
    assert torch.equal(fast, ref) and torch.equal(hooks, ref), (r["texts"], plan.describe(), fast, hooks, ref)


def test_the_eos_model_stops_early_so_stop_at_eos_is_exercised():
    """Not vacuous: on the EOS-prone model the engines' stopping differs from never stopping, per row."""
    model = model_of("llama-eos")
    em = emphasize(model, ["Maria is a *nurse*", "The capital of *France* is"])
    full = hf_generate_tokens(model, em, None, max_new_tokens=8, stop_at_eos=False)
    assert (full == model.tokenizer.eos_token_id)[:, :-1].any()
